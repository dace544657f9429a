"""VMAS scenarios through TorchRL's `VmasEnv` (vectorised, on `env.device`)."""

from __future__ import annotations

import warnings

import vmas
from omegaconf import DictConfig
from torchrl.envs import EnvBase
from torchrl.envs.libs.vmas import VmasEnv
from vmas.simulator.environment.environment import Environment

from ca12.envs.common import task_kwargs, with_return_counters
from ca12.errors import UsageError
from ca12.seeding import numpy_state_from_plain, numpy_state_to_plain, register_rng_source

# VMAS draws resets from one random state shared by all its envs in a process (kept apart from
# the global generators); checkpoints and evaluation isolation must cover it too.
_VMAS_RNG = Environment.vmas_random_state  # [torch state, numpy state, python state], replaced in place


def _get_vmas_rng() -> list:
    """A copy of VMAS's state with its NumPy part as plain values (checkpoints hold no ndarrays)."""
    return [_VMAS_RNG[0].clone(), numpy_state_to_plain(_VMAS_RNG[1]), _VMAS_RNG[2]]


def _set_vmas_rng(state: list) -> None:
    _VMAS_RNG[:] = [state[0].clone(), numpy_state_from_plain(state[1]), state[2]]


register_rng_source("vmas", _get_vmas_rng, _set_vmas_rng)


def tasks() -> list[str]:
    return sorted(vmas.scenarios)


def make(cfg: DictConfig, seed: int) -> EnvBase:
    """A `VmasEnv` with `cfg.num_envs` parallel worlds and a per-agent episode-return counter.

    Scenario kwargs are every key of `cfg` that is not a common env key; a kwarg the scenario
    does not consume is refused (VMAS itself only warns).
    """
    if cfg.task not in vmas.scenarios:
        raise UsageError(f"unknown vmas task '{cfg.task}'; choose one of: {', '.join(tasks())}")
    kwargs = task_kwargs(cfg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = VmasEnv(
            scenario=cfg.task,
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
    return with_return_counters(env)


def render(env: EnvBase, env_index: int = 0):
    """One RGB frame (H x W x 3 uint8) of world `env_index`; works headless."""
    return env.base_env._env.render(mode="rgb_array", env_index=env_index, visualize_when_rgb=False)
