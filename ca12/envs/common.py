"""What every env family shares, kept apart from the registry (ca12/envs/__init__.py) so a
family module never imports back from the registry that imports it: the checks of a family's
task kwargs (the common keys they leave out are `EnvConfig`'s, in ca12/envs/catalog.py), the
return counters, and the spec / reset / output plumbing of ca12's own batched torch envs
(generic, memory, matrix), whose agents sit in groups following TorchRL's multi-agent
convention, and the seeded generator of those that draw at random (`SeededTorchEnv`)."""

from __future__ import annotations

import weakref
from typing import Callable, Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Categorical, Composite, TensorSpec, Unbounded
from torchrl.envs import EnvBase, RewardScaling, RewardSum, SerialEnv, Transform, TransformedEnv
from torchrl.envs.batched_envs import BatchedEnvBase

from ca12.envs.catalog import COMMON_KEYS
from ca12.errors import UsageError
from ca12.seeding import register_rng_source


def task_kwargs(cfg: DictConfig) -> dict:
    """The env config's task-specific kwargs (everything that is not a common key), as plain
    resolved values."""
    return OmegaConf.to_container(OmegaConf.create({k: v for k, v in cfg.items() if k not in COMMON_KEYS}), resolve=True)


def family_kwargs(cfg: DictConfig, tasks: Sequence[str], allowed: Sequence[str]) -> dict:
    """The task kwargs of `cfg` after checking its task and their names (one-line `UsageError`s).

    Args:
        cfg: the env section (`cfg.family`, `cfg.task`, kwargs).
        tasks: the family's tasks.
        allowed: the kwargs the family takes.
    """
    if cfg.task not in tasks:
        raise UsageError(f"unknown {cfg.family} task '{cfg.task}'; choose one of: {', '.join(sorted(tasks))}")
    kwargs = task_kwargs(cfg)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise UsageError(f"{cfg.family}/{cfg.task} does not take {', '.join(unknown)}; it takes {', '.join(allowed)}")
    return kwargs


def vectorized_kwargs(cfg: DictConfig, vectorizations: Sequence[str], allowed: Sequence[str] | None) -> tuple[str, dict]:
    """(`env.vectorization`, task kwargs) of a family that batches its worlds in several ways
    (`vectorizations`, the first the default), with one-line `UsageError`s for an unknown
    vectorisation or kwarg. `allowed`: the kwargs the task's constructor takes (None: any)."""
    kwargs = task_kwargs(cfg)
    vectorization = kwargs.pop("vectorization", vectorizations[0])
    if vectorization not in vectorizations:
        raise UsageError(f"env.vectorization must be one of {', '.join(vectorizations)}, got '{vectorization}'")
    unknown = sorted(set(kwargs) - set(allowed)) if allowed is not None else []
    if unknown:
        takes = ", ".join(allowed) if allowed else "no kwargs"
        raise UsageError(f"{cfg.family}/{cfg.task} does not take {', '.join(unknown)}; it takes {takes}")
    return vectorization, kwargs


def make_discrete(cfg: DictConfig, seed: int, env_class: type, tasks: Sequence[str], allowed: Sequence[str], acts: str) -> TransformedEnv:
    """A family's own discrete-action torch env (`env_class(num_envs=, max_steps=, device=, seed=,
    **kwargs)`) as the env section says, with return counters; one-line `UsageError`s for an
    unknown task or kwarg and for continuous actions (`acts` says what an action does)."""
    kwargs = family_kwargs(cfg, tasks, allowed)
    if cfg.continuous_actions:
        raise UsageError(f"{cfg.family}/{cfg.task} has discrete actions ({acts}); set env.continuous_actions=false")
    return with_return_counters(env_class(num_envs=cfg.num_envs, max_steps=cfg.max_steps, device=cfg.device, seed=seed, **kwargs))


class HideObservation(Transform):
    """Zeroes some features of groups' observations, at reset and at every step: an ablation
    that cuts what an agent could read there (`env.hide_observation`; e.g. MPE's speaker-listener
    with the listener's message features hidden is the same game without communication).

    Args:
        features: group -> indices of its observation's last dim (negative ones count from the end).
    """

    def __init__(self, features: dict[str, list[int]]):
        self.features = {group: list(indices) for group, indices in features.items()}
        keys = [(group, "observation") for group in self.features]
        super().__init__(in_keys=keys, out_keys=keys)

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        for group, indices in self.features.items():
            obs = tensordict.get((group, "observation"))
            tensordict.set((group, "observation"), obs.index_fill(-1, torch.tensor(indices, device=obs.device), 0.0))
        return tensordict

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return self._call(tensordict_reset)


def hide_observation(env: EnvBase, features: dict[str, list[int]]) -> TransformedEnv:
    """`env` with `HideObservation(features)` appended, after one-line checks that every group
    exists and every index is within its observation."""
    groups = list(env.group_map)
    for group, indices in features.items():
        if group not in groups:
            raise UsageError(f"env.hide_observation names group '{group}'; the env's groups are: {', '.join(groups)}")
        size = env.full_observation_spec[group, "observation"].shape[-1]
        bad = [i for i in indices if not -size <= i < size]
        if bad or not indices:
            raise UsageError(f"env.hide_observation.{group} must list feature indices in [-{size}, {size}) of its observation, got {list(indices)}")
    features = {
        group: sorted({i % env.full_observation_spec[group, "observation"].shape[-1] for i in indices}) for group, indices in features.items()
    }
    env = env if isinstance(env, TransformedEnv) else TransformedEnv(env)
    env.append_transform(HideObservation(features))
    return env


def scale_rewards(env: EnvBase, scale: float) -> TransformedEnv:
    """`env` with every group's reward multiplied by `scale` (TorchRL's `RewardScaling`), after the
    return counters: `(group, "episode_reward")` stays the unscaled return."""
    env = env if isinstance(env, TransformedEnv) else TransformedEnv(env)
    env.append_transform(RewardScaling(loc=0.0, scale=scale, in_keys=[(g, "reward") for g in env.group_map]))
    return env


def with_return_counters(env: EnvBase) -> TransformedEnv:
    """`env` with a `RewardSum` writing `(group, "episode_reward")` for every agent group (what
    the rollout and evaluation return metrics read)."""
    groups = list(env.group_map)
    return TransformedEnv(env, RewardSum(in_keys=[(g, "reward") for g in groups], out_keys=[(g, "episode_reward") for g in groups]))


def set_group_specs(env: EnvBase, groups: dict[str, tuple[TensorSpec, TensorSpec]]) -> None:
    """Set `env`'s specs from each group's observation and action specs.

    Args:
        groups: name -> (observation spec [B, k, ...], action spec [B, k, ...]), k agents; each
            group also gets a reward [B, k, 1], and the env done/terminated/truncated [B, 1].
    """
    b = env.batch_size[0]
    observation, action, reward = {}, {}, {}
    for name, (obs_spec, act_spec) in groups.items():
        shape = tuple(obs_spec.shape[:2])  # (B, k)
        observation[name] = Composite(observation=obs_spec, shape=shape)
        action[name] = Composite(action=act_spec, shape=shape)
        reward[name] = Composite(reward=Unbounded(shape=(*shape, 1), device=env.device), shape=shape)
    env.full_observation_spec = Composite(observation, shape=(b,))
    env.full_action_spec = Composite(action, shape=(b,))
    env.full_reward_spec = Composite(reward, shape=(b,))
    flag = Categorical(2, shape=(b, 1), dtype=torch.bool, device=env.device)
    env.full_done_spec = Composite(done=flag.clone(), terminated=flag.clone(), truncated=flag.clone(), shape=(b,))


def mean_at_episode_ends(value: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
    """Mean of `value` [..., T, 1] over the steps where an episode ended (`done`), NaN when none
    did; no host sync (an env's episode statistics, e.g. the traffic junction's success)."""
    done = done.float()
    n_done = done.sum()
    nan = torch.full((), float("nan"), device=done.device)
    return torch.where(n_done > 0, (value * done).sum() / n_done.clamp(min=1), nan)


def check_integers(*checks: tuple) -> None:
    """One-line `UsageError` for the first `(key, value, least)` or `(key, value, least, why)`
    whose value is not an integer (bool is not) of at least `least`: the size checks of ca12's
    own torch envs ("env.n_cues must be an integer >= 2 (why), got 1")."""
    for name, value, low, *why in checks:
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise UsageError(f"env.{name} must be an integer >= {low}{why[0] if why else ''}, got {value!r}")


def reset_mask(env: EnvBase, tensordict: TensorDictBase | None) -> torch.Tensor:
    """Which worlds a reset applies to, [B] bool (all of them when no `_reset` is given)."""
    b = env.batch_size[0]
    if tensordict is not None and "_reset" in tensordict.keys():
        return tensordict.get("_reset").reshape(b)
    return torch.ones(b, dtype=torch.bool, device=env.device)


def place(env: EnvBase, mask: torch.Tensor, pos: torch.Tensor, goal: torch.Tensor) -> None:
    """Start the worlds in `mask` [B] of a goal-reaching env (`_pos` [B, n, d], `_goal` [B, d],
    `_t` [B]) at `pos` and `goal`, at step 0; the others keep theirs."""
    b = mask.shape[0]
    env._pos = torch.where(mask.view(b, 1, 1), pos, env._pos)
    env._goal = torch.where(mask.view(b, 1), goal, env._goal)
    env._t = torch.where(mask, torch.zeros_like(env._t), env._t)


def group_output(env: EnvBase, groups: dict[str, dict[str, torch.Tensor]], done: torch.Tensor, ends_by: str) -> TensorDictBase:
    """A reset's or step's output: each group's entries ([B, k, ...]) and the done flags.

    Args:
        groups: name -> {"observation": ..., "reward": ...} (no reward at reset).
        done: [B, 1].
        ends_by: "terminated" (the task ends the episode) or "truncated" (a time limit cuts it);
            the other flag stays false.
    """
    b = env.batch_size[0]
    never = torch.zeros_like(done)
    return TensorDict(
        {
            **{name: TensorDict(entries, batch_size=(b, entries["observation"].shape[1])) for name, entries in groups.items()},
            "done": done.clone(),
            "terminated": done.clone() if ends_by == "terminated" else never,
            "truncated": done.clone() if ends_by == "truncated" else never,
        },
        batch_size=env.batch_size,
        device=env.device,
    )


# Live envs per registered generator name (weak: a dead env is dropped, not kept alive).
_LIVE: dict[str, list[weakref.ref]] = {}


def _live_envs(name: str) -> list:
    envs = [env for env in (ref() for ref in _LIVE.get(name, [])) if env is not None]
    _LIVE[name] = [weakref.ref(env) for env in envs]
    return envs


def register_rng(env, name: str, get_state: Callable, set_state: Callable) -> None:
    """Register `env`'s random state with `ca12.seeding` under `name`, which must depend only on
    what a resumed run rebuilds the same. Envs sharing a name (fit's one-world spec env and the
    training env) are all restored; capture reads the newest live one."""
    _LIVE[name] = [weakref.ref(e) for e in _live_envs(name)] + [weakref.ref(env)]

    def capture():
        envs = _live_envs(name)
        return get_state(envs[-1]) if envs else None

    def restore(state) -> None:
        if state is not None:
            for live in _live_envs(name):
                set_state(live, state)

    register_rng_source(name, capture, restore)


def register_env_rng(env, family: str, seed: int) -> None:
    """Make checkpoints capture the generator `env._rng` of a family's own torch env, under
    `<family>/<device>/<seed>` (a resumed run, a fresh process or a second run in the same
    process, finds the training env under the same name as the saved one).

    Args:
        env: an env with a `torch.Generator` in `env._rng` and a `device`.
        family: the env family's registry name ("generic", "memory", ...).
        seed: the seed the env's generator was built with.
    """
    register_rng(env, f"{family}/{env.device}/{seed}", lambda e: e._rng.get_state(), lambda e, state: e._rng.set_state(state))


def numpy_worlds(env: EnvBase) -> list:
    """The unwrapped Gymnasium / PettingZoo envs stepping in this process inside `env`, in world
    order (none for `ParallelEnv` and async vector envs: their worlds live in other processes)."""
    while isinstance(env, TransformedEnv):
        env = env.base_env
    if isinstance(env, SerialEnv):
        return [world for sub in (vars(env).get("_envs") or []) for world in numpy_worlds(sub)]
    if isinstance(env, BatchedEnvBase):  # a ParallelEnv: asking would query its workers
        return []
    if hasattr(env, "worlds"):  # the pettingzoo family's BatchedParallelEnv
        return [world.unwrapped for world in env.worlds]
    inner = getattr(env, "_env", None)
    if inner is None:
        return []
    if hasattr(inner, "envs"):  # a SyncVectorEnv
        return [world.unwrapped for world in inner.envs]
    return [] if hasattr(inner, "num_envs") else [inner.unwrapped]


def register_numpy_rng(env: EnvBase, name: str) -> None:
    """Make checkpoints capture the NumPy generators (`np_random`) of `env`'s worlds (Gymnasium,
    PettingZoo: one generator per world, see `numpy_worlds`), under `name` (family, task,
    device, seed)."""

    def get_state(live) -> list:
        return [world.np_random.bit_generator.state for world in numpy_worlds(live)]

    def set_state(live, state: list) -> None:
        for world, world_state in zip(numpy_worlds(live), state):
            world.np_random.bit_generator.state = world_state

    register_rng(env, name, get_state, set_state)


class SeededTorchEnv(EnvBase):
    """Base of a family's batched torch env that draws from its own generator `self._rng`, never
    torch's global one: seeded by the constructor's `seed` and by `set_seed`, and registered with
    `register_env_rng` so checkpoints capture it.

    Args:
        family: the env family's registry name ("generic", "memory", ...).
        num_envs: parallel worlds (the env's batch size).
        device: where the worlds live.
        seed: seed of the env's generator.
    """

    def __init__(self, family: str, num_envs: int, device: torch.device | str, seed: int):
        super().__init__(device=device, batch_size=torch.Size([num_envs]))
        self._rng = torch.Generator(device=self.device)
        self._rng.manual_seed(seed)
        register_env_rng(self, family, seed)

    def _set_seed(self, seed: int | None) -> None:
        if seed is not None:
            self._rng.manual_seed(seed)
