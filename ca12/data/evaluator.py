"""Evaluation episodes: mean and std of episode return (overall and per agent), optionally
rendered to a GIF.

Evaluation never touches the training run's random stream: it builds its env and samples its
actions inside `isolated_rng`, and reseeds its env (and torch) with a fixed seed every time, so
the same weights always give the same result, in the training callback and in
`python -m ca12.evaluate` alike.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from ca12.envs import AgentLayout, make_env, make_spec_env, render_frame
from ca12.errors import UsageError
from ca12.sections import MAX_SEED
from ca12.seeding import isolated_rng

# Evaluation seeds sit far from training seeds (seed + rank) so the episodes are new ones; they
# wrap around at MAX_SEED, so a run seeded near the top of the range still evaluates.
EVAL_SEED_OFFSET = 1_000_003


@dataclass
class EvalResult:
    episode_reward_mean: float
    episode_reward_std: float
    per_agent_reward_mean: list[float]
    episodes: int
    frames: list[np.ndarray] = field(default_factory=list, repr=False)
    # The env's episode statistics (`("stats", name)`, e.g. the traffic junction's success),
    # each world's first episode read at its end: name -> (mean, std over episodes).
    stats: dict[str, tuple[float, float]] = field(default_factory=dict)
    # With `run(trace=True)`: world 0's first episode step by step, "reward" (its agents' mean
    # reward) and each statistic, up to and including its first done step.
    trace: dict[str, list[float]] = field(default_factory=dict, repr=False)

    def metrics(self, prefix: str = "eval") -> dict[str, float]:
        out = {f"{prefix}/episode_reward_mean": self.episode_reward_mean, f"{prefix}/episode_reward_std": self.episode_reward_std}
        out.update({f"{prefix}/agent_{i}_reward_mean": r for i, r in enumerate(self.per_agent_reward_mean)})
        out.update({f"{prefix}/{name}_mean": mean for name, (mean, _) in self.stats.items()})
        return out


class Evaluator:
    """Runs `episodes` episodes in parallel (one env world each) with a given policy.

    Args:
        env_cfg: the run's `env` section; `num_envs` is replaced by `episodes`.
        groups: the agent groups whose returns count (the trained ones; None: all).
        transforms: what the policy needs on the env (see `RLModule.env_transforms`).
        episodes: how many episodes (parallel worlds).
        seed: the run's seed; evaluation uses `seed + EVAL_SEED_OFFSET` (wrapped at MAX_SEED).
        deterministic: act with the distribution's mode instead of sampling.
    """

    def __init__(
        self, env_cfg: DictConfig, episodes: int, seed: int, deterministic: bool, groups: list[str] | None = None, transforms: list | None = None
    ):
        self.env_cfg = OmegaConf.merge(env_cfg, {"num_envs": episodes})
        self.episodes = episodes
        self.seed = (seed + EVAL_SEED_OFFSET) % (MAX_SEED + 1)
        self.deterministic = deterministic
        self.groups = None if groups is None else list(groups)
        self.transforms = transforms or []
        self._env: EnvBase | None = None

    @property
    def env(self) -> EnvBase:
        if self._env is None:
            with isolated_rng():
                self._env = make_env(self.env_cfg, self.seed, transforms=self.transforms)
        return self._env

    @torch.no_grad()
    def run(self, policy, render: bool = False, trace: bool = False) -> EvalResult:
        """`policy`: a module (its parameters' device is where it acts) or any callable
        tensordict -> tensordict (a baseline's rule, acting on the env's device). `trace`: keep
        world 0's first episode step by step (`EvalResult.trace`). A module acts in eval mode
        (`eval_mode`): DIAL's messages are bits, dropout and message noise are off (unless a
        module keeps them, `noisy_eval`), and its modes are put back afterwards."""
        with eval_mode(policy):
            return self._run(policy, render, trace)

    def _run(self, policy, render: bool, trace: bool) -> EvalResult:
        env = self.env
        groups = [g.name for g in AgentLayout.from_env(env).select(self.groups)]
        frames: list[np.ndarray] = []
        callback = (lambda e, td: frames.append(render_frame(self.env_cfg, e, 0))) if render else None
        exploration = ExplorationType.DETERMINISTIC if self.deterministic else ExplorationType.RANDOM
        with isolated_rng(), set_exploration_type(exploration):
            env.set_seed(self.seed)
            torch.manual_seed(self.seed)
            td = env.rollout(
                self.env_cfg.max_steps,
                policy=_OnDevice(policy, env.device),
                callback=callback,
                break_when_any_done=False,
                auto_cast_to_device=True,
            )
        reward = torch.cat([td["next", g, "reward"] for g in groups], -2)  # [E, T, n_agents, 1], the evaluated groups' agents
        done = td["next", "done"]  # [E, T, 1]
        # Count each world's first episode only: steps up to and including its first done.
        ended_before = (done.long().cumsum(1) - done.long()) > 0  # [E, T, 1]
        per_agent = (reward * (~ended_before).unsqueeze(-1)).sum(1).squeeze(-1)  # [E, n_agents]
        team = per_agent.mean(-1)  # [E]
        episode_stats = td["next", "stats"] if ("next", "stats") in td.keys(include_nested=True) else {}
        first_end = (done & ~ended_before).squeeze(-1)  # [E, T]: each world's first done step
        stats = {}
        for name, value in episode_stats.items():
            at_end = value.squeeze(-1)[first_end].double()  # [worlds whose first episode ended]
            stats[name] = (float(at_end.mean()), float(at_end.std(unbiased=False)))
        steps = {}
        if trace:
            first = ~ended_before[0, :, 0]  # world 0's steps up to its first done
            steps["reward"] = reward[0].mean((-2, -1))[first].tolist()
            steps.update({name: value[0].squeeze(-1)[first].double().tolist() for name, value in episode_stats.items()})
        return EvalResult(
            episode_reward_mean=float(team.mean()),
            episode_reward_std=float(team.std(unbiased=False)),
            per_agent_reward_mean=per_agent.mean(0).tolist(),
            episodes=self.episodes,
            frames=[f for f in frames if f is not None],
            stats=stats,
            trace=steps,
        )


def check_rollout_fits(env_cfg: DictConfig, episodes: int, seed: int) -> None:
    """Refuse, before its worlds are built, an evaluation whose rollout cannot fit in memory.

    `Evaluator.run` keeps every step of every world, so one world's step (as a one-world env's
    `fake_tensordict` holds it: observations, actions, rewards and flags, now and next) times
    `max_steps` times `episodes` is a lower bound on what it allocates. It is compared with all
    the memory of the device the env steps on (the GPU's, or the host's RAM): no cap of ours, only
    what cannot fit at all, which would otherwise fail once the worlds are built, or thrash.

    Raises:
        UsageError: with the bytes a world-step takes and the memory there is.
    """
    with isolated_rng():
        one = make_spec_env(env_cfg, seed)
    try:
        step = one.fake_tensordict()
    finally:
        one.close()
    per_step = sum(t.numel() * t.element_size() for t in step.values(True, True) if isinstance(t, torch.Tensor))
    needed = per_step * env_cfg.max_steps * episodes
    device = torch.device(env_cfg.device)
    if device.type == "cuda" and torch.cuda.is_available():
        memory, where = torch.cuda.get_device_properties(device).total_memory, f"the GPU's {device}"
    else:
        memory, where = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine's RAM"
    if needed > memory:
        raise UsageError(
            f"{episodes} episodes need at least {needed / 2**30:.3g} GiB ({per_step} bytes a step x {env_cfg.max_steps} steps x one env world "
            f"an episode), more than {where} {memory / 2**30:.3g} GiB: lower --episodes"
        )


@contextmanager
def eval_mode(policy):
    """`policy` (when it is a module) in eval mode for the block, each submodule's own mode put
    back after it: an evaluation in the middle of training must act as the deployed policy does
    and leave training as it was."""
    if not isinstance(policy, torch.nn.Module):
        yield
        return
    modes = [(module, module.training) for module in policy.modules()]
    policy.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


class _OnDevice(torch.nn.Module):
    """Lets a policy that lives on the training device act in an env on another device."""

    def __init__(self, policy, env_device: torch.device):
        super().__init__()
        self.policy = policy
        self.env_device = env_device

    def forward(self, td):
        parameters = self.policy.parameters() if isinstance(self.policy, torch.nn.Module) else iter(())
        device = next(parameters, torch.empty(0, device=self.env_device)).device  # a rule-based baseline has none: it acts where the env is
        return self.policy(td.to(device)).to(self.env_device)


def save_gif(frames: list[np.ndarray], path: str | Path, fps: int = 20) -> Path:
    """Write RGB frames as an animated GIF (Pillow)."""
    from PIL import Image

    if not frames:
        raise ValueError("no frames to write: this env cannot render")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(np.asarray(frame, dtype=np.uint8)) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


@torch.no_grad()
def success_rate(policy: torch.nn.Module, env: EnvBase, deterministic: bool = True) -> float:
    """Success rate of `policy` over one episode in each of `env`'s worlds (reset first), read from
    the env's `("stats", "success")` at the last step (comm/traffic_junction's), acting
    with its mode (`deterministic`) or sampling, in eval mode as every evaluation does."""
    steps = env.base_env.max_steps if hasattr(env, "base_env") else env.max_steps
    exploration = ExplorationType.DETERMINISTIC if deterministic else ExplorationType.RANDOM
    with eval_mode(policy), set_exploration_type(exploration):
        rollout = env.rollout(steps, policy=policy, break_when_any_done=False)
    return float(rollout["next", "stats", "success"][:, steps - 1].mean())
