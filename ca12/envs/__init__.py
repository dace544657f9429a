"""Environment registry: `make_env(cfg.env, seed)` -> a batched TorchRL `EnvBase`.

A family registers a builder and the list of tasks it knows; `--env family/task` picks one.
Every env returned here follows TorchRL's multi-agent key convention: `(group, "observation")`,
`(group, "action")`, `(group, "reward")`, env-level `done`/`terminated`, and carries a
`RewardSum` transform that writes `(group, "episode_reward")`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Callable

import torch
from omegaconf import DictConfig, OmegaConf
from torchrl.envs import EnvBase

from ca12.errors import UsageError

# family -> module that defines `make(cfg, seed) -> EnvBase` and `tasks() -> list[str]`.
_FAMILIES: dict[str, str] = {"vmas": "ca12.envs.vmas", "matrix": "ca12.envs.matrix", "generic": "ca12.envs.generic"}

# Keys of an env config that are not passed to the env's own constructor as kwargs.
COMMON_KEYS = ("family", "task", "num_envs", "max_steps", "device", "continuous_actions")


def env_families() -> list[str]:
    return sorted(_FAMILIES)


def _family_module(family: str):
    if family not in _FAMILIES:
        raise UsageError(f"unknown env family '{family}'; choose one of: {', '.join(env_families())}")
    return import_module(_FAMILIES[family])


def family_tasks(family: str) -> list[str]:
    return list(_family_module(family).tasks())


def task_kwargs(cfg: DictConfig) -> dict:
    """The env config's task-specific kwargs (everything that is not a common key)."""
    return {key: value for key, value in cfg.items() if key not in COMMON_KEYS}


def make_env(cfg: DictConfig, seed: int, process_device: torch.device | None = None) -> EnvBase:
    """Build the batched env described by `cfg` (a composed `env` section), seeded.

    `env.device: cuda` (no index) means "this process's GPU": under DDP each rank passes its
    own device as `process_device` and samples there.
    """
    if cfg.device == "cuda" and process_device is not None and process_device.type == "cuda":
        cfg = OmegaConf.merge(cfg, {"device": str(process_device)})
    builder: Callable[[DictConfig, int], EnvBase] = _family_module(cfg.family).make
    return builder(cfg, seed)


def make_spec_env(cfg: DictConfig, seed: int) -> EnvBase:
    """A one-world env on the CPU, to read specs from when building networks."""
    return make_env(OmegaConf.merge(cfg, {"num_envs": 1, "device": "cpu"}), seed)


def render_frame(cfg: DictConfig, env: EnvBase, env_index: int = 0):
    """An RGB frame of one world of `env`, or None when the family cannot render."""
    render = getattr(_family_module(cfg.family), "render", None)
    return None if render is None else render(env, env_index)


def agent_group(env: EnvBase) -> str:
    """The single agent group of a multi-agent env (ca12's PPO family trains one group)."""
    groups = list(getattr(env, "group_map", {}) or {})
    if len(groups) != 1:
        raise UsageError(f"this algorithm trains exactly one agent group; the env has groups {groups}")
    return groups[0]
