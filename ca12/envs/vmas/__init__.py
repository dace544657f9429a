"""VMAS scenarios through TorchRL's `VmasEnv` (vectorised, on `env.device`)."""

from __future__ import annotations

import os
import warnings
from functools import partial

import torch
import vmas
from omegaconf import DictConfig
from tensordict import TensorDictBase
from torchrl.data import Composite
from torchrl.envs import EnvBase
from torchrl.envs.libs.vmas import VmasEnv
from vmas.simulator.environment.environment import Environment

from ca12.envs.catalog import vmas_tasks  # VMAS's scenarios and ca12's (ca12/envs/vmas/tasks.py), listed without importing VMAS
from ca12.envs.common import task_kwargs, with_return_counters
from ca12.envs.vmas import swarm
from ca12.envs.vmas.host_reads import STATIC, NoHostReads
from ca12.envs.vmas.tasks import SCENARIOS
from ca12.errors import UsageError
from ca12.seeding import numpy_state_from_plain, numpy_state_to_plain, register_rng_source

# VMAS's own source files (its installed package folder): a host read is attributed to the innermost
# frame in them, never to ca12's files (ca12/envs/vmas/ has "vmas" in its path too).
VMAS_SOURCES = os.path.dirname(vmas.__file__) + os.sep

# VMAS draws resets from one random state shared by all its envs in a process (kept apart from
# the global generators); checkpoints and evaluation isolation must cover it too.
_VMAS_RNG = Environment.vmas_random_state  # [torch state, numpy state, python state], replaced in place


def _get_vmas_rng() -> list:
    """A copy of VMAS's state with its NumPy part as plain values (checkpoints hold no ndarrays)."""
    return [_VMAS_RNG[0].clone(), numpy_state_to_plain(_VMAS_RNG[1]), _VMAS_RNG[2]]


def _set_vmas_rng(state: list) -> None:
    _VMAS_RNG[:] = [state[0].clone(), numpy_state_from_plain(state[1]), state[2]]


register_rng_source("vmas", _get_vmas_rng, _set_vmas_rng)


def _is_vmas_object(value) -> bool:
    return type(value).__module__.startswith("vmas.")


def _world_attributes(env: Environment) -> tuple[list[tuple[object, str]], list[tuple[object, str, object]]]:
    """Every attribute reachable from a VMAS env (the env, its world, every entity's state,
    action, sensors and dynamics, the scenario's own attributes), split into
    (owner, name) of the tensors with one row per world, and (owner, name, value) of the rest."""
    per_world, shared, seen, stack = [], [], set(), [env, env.scenario]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        for name, value in vars(obj).items():
            if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == env.num_envs:
                per_world.append((obj, name))
                continue
            shared.append((obj, name, value))
            if isinstance(value, (list, tuple)):
                stack.extend(v for v in value if _is_vmas_object(v))
            elif isinstance(value, dict):
                stack.extend(v for v in value.values() if _is_vmas_object(v))
            elif _is_vmas_object(value) and hasattr(value, "__dict__"):
                stack.append(value)
    return per_world, shared


def reset_worlds_where(env: Environment, mask: torch.Tensor) -> None:
    """Reset the worlds of `env` where `mask` (one bool per world) is set, in one vectorised reset.

    VMAS resets either every world or one (`reset_at(index)`); TorchRL's `VmasEnv` resets a partial
    batch by looping over the worlds, reading the mask one element at a time: on CUDA, a host sync
    per world and a few hundred kernel launches per done world, every step some episodes end (tasks
    with terminations, e.g. balance). Neither library offers a masked reset, so this one is
    written here: every per-world tensor is copied, all worlds are reset at once (VMAS's own
    vectorised reset, its random state included), and the worlds outside `mask` get their copy back.
    Attributes shared by all worlds (python values, objects, tensors without a world dimension)
    that the full reset rebinds get their old value back: `reset_at` never runs a scenario's
    all-worlds branch (e.g. speaker-listener draws its goal landmark there, for every world).
    """
    per_world, shared = _world_attributes(env)
    tensors = [(obj, name, getattr(obj, name).clone()) for obj, name in per_world]
    env.reset(return_observations=False)
    keep = ~mask.reshape(-1)  # the worlds that get their state back
    merged = {}  # id -> (tensor, result): attributes that shared a tensor still share one
    for obj, name, before in tensors:
        after = getattr(obj, name)
        if not isinstance(after, torch.Tensor) or after.shape != before.shape:
            continue  # replaced by something of another shape: the reset's value stands
        if id(after) not in merged:
            kept = keep.to(after.device).view(-1, *[1] * (after.dim() - 1))
            merged[id(after)] = (after, torch.where(kept, before, after))
        setattr(obj, name, merged[id(after)][1])
    for obj, name, before in shared:
        if getattr(obj, name, None) is not before:
            setattr(obj, name, before)


# What VMAS's step reads from the device, by the function that reads it, and the answer that
# lets it run without the read (ca12/envs/vmas/host_reads.py). Checked by tests/envs/test_vmas_capture.py:
# a step under these answers gives the step without them (to rounding), but for one reward below.
VMAS_HOST_READS = {
    # "any pair of these entities within reach in any world?": a shortcut that skips collision
    # work; the collision force of a pair out of reach is an exact zero (masked with `torch.where`
    # on the distance), so doing the work always changes no state. Navigation's contact penalty
    # is the exception: its band is 0.005 wider than this reach, so VMAS skips a penalty due in a
    # step where no pair overlaps in any world, and under this answer it is paid.
    "collides": True,
    # "any box not hollow?": also a shortcut whose branch selects with `torch.where`.
    "_box_sphere_vectorized_collision": True,
    "_box_line_vectorized_collision": True,
    # "is the world's gravity zero?": a setting fixed when the world is built.
    "_apply_gravity": STATIC,
    # `assert not action.isnan().any()` and the action-range assert: the acting policy's actions
    # come from its spec's bounds, and the NaN guard stops a run whose weights are not finite.
    "_set_action": False,
    # `assert torch.all(0 <= action < n)` of a discrete action: the policy samples from its spec.
    "_check_discrete_action": True,
}


class CapturedState:
    """Keeps a VMAS env's state in the same tensors from step to step, so that a CUDA graph
    captured once steps the current state on every replay.

    VMAS rebinds its state to new tensors at every step (`state.pos = pos + vel * dt`); a graph
    reads the tensors it saw at capture, so after a replay the next replay would read stale
    state. `anchor()` (called at the end of the captured step, and after every eager change such
    as a reset) copies each rebound tensor into the one the graph reads and rebinds it back.
    """

    def __init__(self, env: Environment):
        self.env = env
        self.anchors: dict[tuple[int, str], tuple[object, str, torch.Tensor]] = {}
        self.mode = NoHostReads(VMAS_HOST_READS, package=VMAS_SOURCES)
        self.anchor()

    def anchor(self) -> None:
        per_world, shared = _world_attributes(self.env)
        tensors = per_world + [(obj, name) for obj, name, value in shared if isinstance(value, torch.Tensor)]
        for obj, name in tensors:
            value, slot = getattr(obj, name), (id(obj), name)
            if slot not in self.anchors:
                self.anchors[slot] = (obj, name, value)
                continue
            anchor = self.anchors[slot][2]
            if value is anchor:
                continue
            if value.shape != anchor.shape or value.dtype != anchor.dtype:
                raise RuntimeError(
                    f"VMAS replaced {type(obj).__name__}.{name} {tuple(anchor.shape)} by a tensor of another shape or dtype {tuple(value.shape)}"
                )
            anchor.copy_(value)
            setattr(obj, name, anchor)


class BatchResetVmasEnv(VmasEnv):
    """TorchRL's `VmasEnv` with the done worlds of a partial reset reset together
    (`reset_worlds_where`) instead of one by one, and the time limit reported as a truncation;
    everything else is `VmasEnv`'s.

    Time limits: VMAS folds its step counter into one done flag (`scenario.done() or steps >=
    max_steps`) and `VmasEnv` copies that flag into `terminated`, so every world cut at
    `env.max_steps` would look like a terminal state and no value target would bootstrap there.
    Here VMAS's done is read in its two parts: `terminated` is the scenario's own end (e.g.
    balance's dropped package, dispersion's eaten food), `truncated` the step counter at the
    limit, and `done` either; a world that ends for real at the limit step is both.

    `captured_state()` returns the env's `CapturedState` (built on first use): what
    `ca12.data.cuda_graph_collector.CapturedCollector` needs to step it in a CUDA graph.
    """

    def _make_specs(self, env: Environment) -> None:
        super()._make_specs(env)
        flag = self.full_done_spec_unbatched["done"]
        self.full_done_spec_unbatched = Composite(done=flag.clone(), terminated=flag.clone(), truncated=flag.clone(), device=self.device)
        # VMAS's step and reset read their done flag through `_done`: read it here in its parts.
        self._done_parts = None
        env._done = partial(_split_done, env, self)

    def _with_done_parts(self, out: TensorDictBase) -> TensorDictBase:
        terminated, truncated = self._done_parts
        out.set("terminated", self.read_done(terminated))
        out.set("truncated", self.read_done(truncated))
        return out

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        return self._with_done_parts(super()._step(tensordict))

    def captured_state(self) -> CapturedState:
        if getattr(self, "_captured_state", None) is None:
            self._captured_state = CapturedState(self._env)
        return self._captured_state

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        mask = tensordict.get("_reset", None) if tensordict is not None else None
        if mask is None or bool(mask.all()):
            return self._with_done_parts(super()._reset(**kwargs))  # a full reset
        reset_worlds_where(self._env, mask)
        # VmasEnv's observation read-out, with its full reset turned off for this call.
        self._env.reset = lambda **_: None
        try:
            return self._with_done_parts(super()._reset(**kwargs))
        finally:
            del self._env.reset


def _split_done(env: Environment, owner: BatchResetVmasEnv) -> torch.Tensor:
    """VMAS's `_done` (installed on `env` by `BatchResetVmasEnv`): the scenario's end and the time
    limit kept apart on `owner._done_parts` (each [B] bool), their union returned to VMAS."""
    terminated = env.scenario.done().clone()
    truncated = env.steps >= env.max_steps if env.max_steps is not None else torch.zeros_like(terminated)
    owner._done_parts = (terminated, truncated)
    return terminated | truncated


def make(cfg: DictConfig, seed: int) -> EnvBase:
    """A `VmasEnv` with `cfg.num_envs` parallel worlds, done worlds reset in one batch
    (`BatchResetVmasEnv`), a per-agent episode-return counter, and for the swarm tasks
    (flocking, dispersion, discovery) their episode statistics (`swarm.SwarmStats`).

    Scenario kwargs are every key of `cfg` that is not a common env key; a kwarg the scenario
    does not consume is refused (VMAS itself only warns).
    """
    if cfg.task not in vmas_tasks():
        raise UsageError(f"unknown vmas task '{cfg.task}'; choose one of: {', '.join(vmas_tasks())}")
    kwargs = task_kwargs(cfg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = BatchResetVmasEnv(
            scenario=SCENARIOS[cfg.task](continuous_actions=cfg.continuous_actions) if cfg.task in SCENARIOS else cfg.task,
            num_envs=cfg.num_envs,
            continuous_actions=cfg.continuous_actions,
            max_steps=cfg.max_steps,
            device=cfg.device,
            seed=seed,
            **kwargs,
        )
    for warning in caught:
        text = str(warning.message)
        if "passed but not used" in text:
            raise UsageError(f"vmas/{cfg.task} does not take {text.split(' passed')[0].split(': ', 1)[-1]}")
    env = with_return_counters(env)
    return swarm.with_stats(env, cfg.task) if cfg.task in swarm.STATS else env


# `python -m ca12.evaluate --baseline NAME --env vmas/<task>`: the swarm tasks' rules (ca12/envs/vmas/swarm.py).
BASELINES = swarm.BASELINES


def render(env: EnvBase, env_index: int = 0):
    """One RGB frame (H x W x 3 uint8) of world `env_index`; works headless."""
    return env.base_env._env.render(mode="rgb_array", env_index=env_index, visualize_when_rgb=False)
