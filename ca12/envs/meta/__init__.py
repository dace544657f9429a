"""Meta-RL task families (ca12/meta/tasks.py) as batched TorchRL envs: `--env meta/<task>`.

Each world draws its own task at every reset, from the env's own generator, and hides it: an
algorithm that does not adapt faces the task distribution as one partially observed env, which
is what the evaluation of an unadapted (meta-)policy measures. `--algo maml` reads the same
section to build the family and samples its tasks itself (ca12/algos/maml.py).

Tasks (conf/env/meta/*.yaml):
    * `navigation`: 2-D point navigation to a hidden per-task goal (Finn et al. 2017, sec. 5.3);
      continuous velocity actions, or `env.continuous_actions=false` for 5 unit moves.
    * `agents`: the same with teams of `agent_counts` agents that must spread around the goal
      (a crowding penalty); the env plays the largest count, MAML's rollouts every count.
    * `opponent`: a repeated `ca12.game_theory` classic (`env.game`) against a hidden per-task
      mixed strategy; discrete actions.
Group "agents": observation [B, n, obs_dim], action [B, n] (discrete) or [B, n, 2] in [-1, 1],
reward [B, n, 1]; env-level done flags (`truncated` for navigation's time limit, `terminated`
for the game's last round).
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from tensordict import TensorDictBase
from torchrl.data import Bounded, Categorical, Unbounded
from torchrl.envs import EnvBase

from ca12.envs.catalog import META_TASKS as TASKS  # task -> the kwargs it takes (the catalog lists tasks and documents kwargs: start-up)
from ca12.envs.common import SeededTorchEnv, check_integers, family_kwargs, group_output, reset_mask, set_group_specs, with_return_counters
from ca12.errors import UsageError
from ca12.meta.tasks import Navigation, Opponent, TaskFamily


def _positive(name: str, value, minimum: float = 0.0, strict: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (value <= minimum if strict else value < minimum):
        raise UsageError(f"env.{name} must be a number {'>' if strict else '>='} {minimum}, got {value!r}")
    return float(value)


def make_family(cfg: DictConfig) -> TaskFamily:
    """The task family an env section describes (`--env meta/<task>` and its kwargs).

    Raises:
        UsageError: unknown task or kwarg, a value out of range, continuous actions for a game.
    """
    kwargs = family_kwargs(cfg, TASKS, TASKS.get(cfg.task, ()))
    missing = sorted(set(TASKS[cfg.task]) - set(kwargs))
    if missing:
        raise UsageError(f"meta/{cfg.task} needs env.{missing[0]} (conf/env/meta/{cfg.task}.yaml gives it)")
    if cfg.task == "opponent":
        if cfg.continuous_actions:
            raise UsageError("meta/opponent is a matrix game with discrete actions; set env.continuous_actions=false")
        return Opponent(cfg.max_steps, str(kwargs["game"]))
    counts = kwargs["agent_counts"]
    if not isinstance(counts, list) or not counts:
        raise UsageError(f"env.agent_counts must be a non-empty list of agent counts, got {counts!r}")
    check_integers(*(("agent_counts", count, 1) for count in counts))
    return Navigation(
        cfg.max_steps,
        bool(cfg.continuous_actions),
        goal_range=_positive("goal_range", kwargs["goal_range"]),
        max_speed=_positive("max_speed", kwargs["max_speed"]),
        agent_counts=sorted(set(counts)),
        start_radius=_positive("start_radius", kwargs["start_radius"], strict=False),
        crowd_radius=_positive("crowd_radius", kwargs["crowd_radius"], strict=False),
        crowd_penalty=_positive("crowd_penalty", kwargs["crowd_penalty"], strict=False),
    )


class MetaTaskEnv(SeededTorchEnv):
    """A task family's worlds as a TorchRL env, each world with a task of its own drawn at reset
    (the largest agent count of the family).

    Args:
        family: the task family (`make_family`).
        num_envs: parallel worlds (the env's batch size).
        device: where the worlds live.
        seed: seed of the env's own generator (tasks and the game opponents' draws).
    """

    def __init__(self, family: TaskFamily, num_envs: int, device: torch.device | str, seed: int):
        super().__init__("meta", num_envs, device, seed)
        self.family, self.n_agents = family, max(family.counts)
        self.group_map = {"agents": [f"agent_{i}" for i in range(self.n_agents)]}
        self._task = family.sample_count(num_envs, self.n_agents, self._rng)  # [B]
        self._state = family.reset(self._task)
        b, n = num_envs, self.n_agents
        observation = Unbounded(shape=(b, n, family.obs_dim), device=self.device)
        if family.discrete:
            action = Categorical(family.action_dim, shape=(b, n), dtype=torch.int64, device=self.device)
        else:
            action = Bounded(-1.0, 1.0, shape=(b, n, family.action_dim), device=self.device)
        set_group_specs(self, {"agents": (observation, action)})

    def _out(self, reward: torch.Tensor | None = None) -> TensorDictBase:
        agents = {"observation": self.family.observe(self._state, self._task)} | ({} if reward is None else {"reward": reward})
        done = (self._state["t"] >= self.family.horizon).unsqueeze(-1)  # [B, 1]
        return group_output(self, {"agents": agents}, done, ends_by=self.family.ends_by)

    def _reset(self, tensordict: TensorDictBase | None, **kwargs) -> TensorDictBase:
        mask = reset_mask(self, tensordict)  # [B]
        # Draw for every world whatever the mask, so the stream does not depend on which reset.
        task = self.family.sample_count(self.batch_size[0], self.n_agents, self._rng)
        self._task = torch.where(mask, task, self._task)
        self._state = torch.where(mask, self.family.reset(self._task), self._state)
        return self._out()

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get(("agents", "action"))
        self._state, reward = self.family.step(self._state, self._task, action, self._rng)
        return self._out(reward)


def make(cfg: DictConfig, seed: int) -> EnvBase:
    """`MetaTaskEnv` of the family the env section describes, seeded, with return counters."""
    return with_return_counters(MetaTaskEnv(make_family(cfg), cfg.num_envs, cfg.device, seed))
