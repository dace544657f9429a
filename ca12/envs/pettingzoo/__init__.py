"""PettingZoo parallel envs (`--env pettingzoo/<env>`) through TorchRL's `PettingZooWrapper`:
the Multi-Particle Environments of MPE2 (simple_spread, simple_speaker_listener,
simple_reference, simple_adversary, simple_tag, ...), named without their version suffix: a
name maps to the newest version the installed mpe2 has (`simple_spread` -> `simple_spread_v3`).

Layout: TorchRL's default group map, agents named `<kind>_<i>` grouped by kind:
simple_spread {"agent": 3}, simple_reference {"agent": 2}, simple_speaker_listener
{"speaker": 1, "listener": 1}. Per group `(group, "observation")` [B, n, obs], `(group,
"action")` [B, n] (discrete, categorical) or [B, n, 5] (`env.continuous_actions=true`, Box
[0, 1]), `(group, "reward")` [B, n, 1], a `RewardSum` writing `(group, "episode_reward")`, and
env-level `done`/`terminated`/`truncated` [B, 1] (TorchRL's `done_on_any` for parallel envs:
the env is done when any agent is; MPE agents all stop together). The wrapper also writes the
agents' own flags `(group, "done")` ... [B, n, 1]; ca12's algorithms read the env-level ones.
`env.max_steps` is MPE's `max_cycles`: episodes are cut there (`truncated`, not `terminated`).

Task kwargs (env keys that are not common keys) go to the scenario's constructor (`env.N=5`
for simple_spread, `env.local_ratio=0.5`, ...); a name it does not take is refused in one line.

Vectorisation (`env.vectorization`), PettingZoo having no vector API:
* `batched` (default): `BatchedParallelEnv`, the `env.num_envs` raw PettingZoo worlds stepped in
  one loop that fills one batch of tensors, with the specs `PettingZooWrapper` gives;
* `serial` / `parallel`: one `PettingZooWrapper` per world in TorchRL's `SerialEnv` /
  `ParallelEnv` (one process per world).
Most of a wrapped step is TorchRL's per-world TensorDict work, several times MPE's own step,
which `batched` pays once per batch instead of once per world. Measured with
benchmarks/gym_vectorisation.py: see docs/benchmarks.md. All three give the same rollout for the
same seed and actions (tested). Seeding and checkpoints as for `gym/...`: world i's NumPy
generator is seeded through `set_seed` (TorchRL's seed chain: world i+1 gets `seed_generator` of
world i's seed) and registered with `ca12.seeding`.
"""

from __future__ import annotations

import importlib
import inspect
import os
from functools import partial
from types import ModuleType

import numpy as np
import torch
from omegaconf import DictConfig
from tensordict import TensorDict, TensorDictBase
from torchrl._utils import seed_generator
from torchrl.envs import EnvBase, ParallelEnv, PettingZooWrapper, SerialEnv

from ca12.envs.catalog import PETTINGZOO_CLASSIC, mpe_newest_versions
from ca12.envs.catalog import check_pettingzoo_task as check_task  # its task list and checks live in the catalog (start-up)
from ca12.envs.common import register_numpy_rng, vectorized_kwargs, with_return_counters
from ca12.envs.pettingzoo import turn_based
from ca12.errors import UsageError

# How `env.num_envs` worlds step together; the first is the default.
VECTORIZATIONS = ("batched", "serial", "parallel")
# Constructor arguments ca12 sets from the common env keys (or never: rendering).
_SET_BY_CA12 = ("max_cycles", "continuous_actions", "render_mode")

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # mpe2 imports pygame, which prints a banner


def _scenario(task: str) -> ModuleType:
    return importlib.import_module(mpe_newest_versions()[task])


def scenario_kwargs(task: str) -> tuple[str, ...]:
    """The constructor arguments of the scenario a user may set (`env.<kwarg>=...`)."""
    parameters = inspect.signature(_scenario(task).raw_env).parameters
    return tuple(name for name in parameters if name not in _SET_BY_CA12)


def one_world(task: str, group_map: dict | None, device: str, kwargs: dict) -> PettingZooWrapper:
    """One world of the scenario (module level, so `ParallelEnv` workers can unpickle a partial)."""
    return PettingZooWrapper(_scenario(task).parallel_env(**kwargs), group_map=group_map, categorical_actions=True, device=device)


class BatchedParallelEnv(EnvBase):
    """`num_envs` worlds of a PettingZoo parallel env as one TorchRL env [num_envs], stepped in
    one Python loop that writes every world's observations, rewards and flags into one batch of
    tensors. Same keys and specs as `PettingZooWrapper` (taken from a probe world), env-level
    flags true when any agent's is, as its `done_on_any` default for parallel envs.

    Written by hand because neither library offers it: PettingZoo has no vector API,
    SuperSuit's vector envs need every agent to share one observation and action space, and
    TorchRL batches only whole wrapped envs, paying its per-world TensorDict work each step.
    Covers envs whose agents all live until the episode ends and carry no action masks or infos
    (MPE2's); anything else is refused when it shows.

    Args:
        make_world: builds one raw PettingZoo parallel env.
        num_envs: worlds.
        device: where the tensors live (the worlds step on the CPU).
    """

    def __init__(self, make_world, num_envs: int, device: str = "cpu"):
        super().__init__(device=device, batch_size=torch.Size([num_envs]))
        self.worlds = [make_world() for _ in range(num_envs)]
        probe = PettingZooWrapper(make_world(), categorical_actions=True, device=device)
        if probe.use_mask or any(
            key[-1] in ("info", "action_mask", "mask") for key in probe.observation_spec.keys(True, True) if isinstance(key, tuple)
        ):
            raise UsageError("env.vectorization=batched covers PettingZoo envs without masks or infos; use env.vectorization=serial")
        self.group_map = {group: list(agents) for group, agents in probe.group_map.items()}
        self.full_observation_spec = probe.full_observation_spec.expand(num_envs, *probe.full_observation_spec.shape).clone()
        self.full_action_spec = probe.full_action_spec.expand(num_envs, *probe.full_action_spec.shape).clone()
        self.full_reward_spec = probe.full_reward_spec.expand(num_envs, *probe.full_reward_spec.shape).clone()
        self.full_done_spec = probe.full_done_spec.expand(num_envs, *probe.full_done_spec.shape).clone()
        probe.close()
        self._observations = self.full_observation_spec.zero()

    def set_seed(self, seed: int | None = None, static_seed: bool = False) -> int | None:
        """Seeds world i as TorchRL's `SerialEnv` of wrappers would: world i + 1 gets
        `seed_generator` of world i's seed (all the same one with `static_seed`); returns the
        next seed of the chain."""
        for world in self.worlds:
            world.reset(seed=seed)
            if seed is not None and not static_seed:
                seed = seed_generator(seed)
        return seed

    def _set_seed(self, seed: int | None) -> None:  # EnvBase's abstract hook; set_seed does the work
        self.set_seed(seed)

    def _write_observations(self, index: int, observations: dict) -> None:
        for group, agents in self.group_map.items():
            target = self._observations.get((group, "observation"))
            target[index] = torch.from_numpy(np.stack([np.asarray(observations[agent], dtype=np.float32) for agent in agents]))

    def _flags(self, group_flags: dict[str, np.ndarray] | None = None) -> TensorDictBase:
        """Env-level and per-group done/terminated/truncated (all false without `group_flags`)."""
        n = self.batch_size[0]
        out = {}
        for name in ("terminated", "truncated"):
            per_group = {
                g: torch.from_numpy(group_flags[g][name]) if group_flags else torch.zeros(n, len(a), 1, dtype=torch.bool)
                for g, a in self.group_map.items()
            }
            for group, flag in per_group.items():
                out[(group, name)] = flag
            out[name] = torch.stack([f.flatten(1).any(-1) for f in per_group.values()], -1).any(-1, keepdim=True)
        out["done"] = out["terminated"] | out["truncated"]
        for group in self.group_map:
            out[(group, "done")] = out[(group, "terminated")] | out[(group, "truncated")]
        return TensorDict(out, batch_size=self.batch_size).to(self.device)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        reset = tensordict.get("_reset", None) if tensordict is not None else None
        for i, world in enumerate(self.worlds):
            if reset is None or reset[i].any():
                observations, _ = world.reset(**kwargs)
                self._write_observations(i, observations)
        return self._observations.clone().to(self.device).update(self._flags())

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        actions = {group: tensordict.get((group, "action")).cpu().numpy() for group in self.group_map}
        n = self.batch_size[0]
        rewards = {g: np.zeros((n, len(a), 1), np.float32) for g, a in self.group_map.items()}
        flags = {g: {f: np.zeros((n, len(a), 1), bool) for f in ("terminated", "truncated")} for g, a in self.group_map.items()}
        for i, world in enumerate(self.worlds):
            step = {agent: actions[group][i, index] for group, agents in self.group_map.items() for index, agent in enumerate(agents)}
            observations, reward, terminated, truncated, _ = world.step(step)
            if len(observations) < len(step):
                raise RuntimeError("an agent left a PettingZoo world before its episode ended: use env.vectorization=serial")
            self._write_observations(i, observations)
            for group, agents in self.group_map.items():
                for index, agent in enumerate(agents):
                    rewards[group][i, index, 0] = reward[agent]
                    flags[group]["terminated"][i, index, 0] = terminated[agent]
                    flags[group]["truncated"][i, index, 0] = truncated[agent]
        out = self._observations.clone().to(self.device).update(self._flags(flags))
        for group, reward in rewards.items():
            out.set((group, "reward"), torch.from_numpy(reward).to(self.device))
        return out

    def close(self, *, raise_if_closed: bool = True) -> None:
        for world in self.worlds:
            world.close()
        super().close(raise_if_closed=raise_if_closed)


def batched_env(task: str, num_envs: int, vectorization: str = VECTORIZATIONS[0], device: str = "cpu", **kwargs) -> EnvBase:
    """`num_envs` worlds of the scenario as one TorchRL env [num_envs], with `group_map` set.

    TorchRL's batched envs build their worlds lazily and cannot say their group map before;
    one world built here gives it, and every world gets it explicitly.
    """
    if vectorization == "batched":
        return BatchedParallelEnv(partial(_scenario(task).parallel_env, **kwargs), num_envs, device)
    probe = one_world(task, None, device, kwargs)
    group_map = dict(probe.group_map)
    probe.close()
    batched = SerialEnv if vectorization == "serial" else ParallelEnv
    env = batched(num_envs, partial(one_world, task, group_map, device, kwargs))
    env.group_map = group_map
    return env


def make(cfg: DictConfig, seed: int) -> EnvBase:
    """`cfg.num_envs` worlds of the MPE2 scenario `cfg.task`, seeded, with return counters.

    Raises:
        UsageError: unknown env, missing package, unknown kwarg or vectorisation.
    """
    check_task(cfg.task)
    if cfg.task in PETTINGZOO_CLASSIC:  # turn-based games: one seat moves at a time (turn_based.py)
        return turn_based.make(cfg, seed)
    vectorization, kwargs = vectorized_kwargs(cfg, VECTORIZATIONS, scenario_kwargs(cfg.task))
    env = batched_env(
        cfg.task,
        cfg.num_envs,
        vectorization,
        cfg.device,
        max_cycles=cfg.max_steps,
        continuous_actions=bool(cfg.continuous_actions),
        **kwargs,
    )
    env.set_seed(seed)
    register_numpy_rng(env, f"pettingzoo/{cfg.task}/{cfg.device}/{seed}")
    return with_return_counters(env)
