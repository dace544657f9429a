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

from ca12.envs.common import COMMON_KEYS, EnvConfig, hide_observation, scale_rewards, task_kwargs  # noqa: F401  (re-exported)
from ca12.envs.layout import AgentLayout, Group  # noqa: F401  (re-exported)
from ca12.errors import UsageError

# family -> module that defines `make(cfg, seed) -> EnvBase` and its tasks: `tasks() -> list[str]`, or
# a constant `TASKS` (names, or a dict keyed by them) when they are fixed.
_FAMILIES: dict[str, str] = {
    "vmas": "ca12.envs.vmas", "matrix": "ca12.envs.matrix", "generic": "ca12.envs.generic", "memory": "ca12.envs.memory",
    "gym": "ca12.envs.gym", "pettingzoo": "ca12.envs.pettingzoo", "comm": "ca12.envs.comm",
    "market": "ca12.envs.market", "meta": "ca12.envs.meta",
    "grid": "ca12.envs.grid",
    "traffic": "ca12.envs.traffic",
    "sumo": "ca12.envs.sumo",
}



def env_families() -> list[str]:
    return sorted(_FAMILIES)


def _family_module(family: str):
    if family not in _FAMILIES:
        raise UsageError(f"unknown env family '{family}'; choose one of: {', '.join(env_families())}")
    return import_module(_FAMILIES[family])


def _tasks(module) -> list[str]:
    return list(module.tasks()) if hasattr(module, "tasks") else sorted(module.TASKS)


def family_tasks(family: str) -> list[str]:
    return _tasks(_family_module(family))


def family_key_docs(family: str) -> dict[str, str]:
    """One-line docs of the keys a family reads besides the common ones (its `KEY_DOCS`)."""
    return dict(getattr(_family_module(family), "KEY_DOCS", {}))


def check_task(family: str, task: str) -> None:
    """Refuse, in one line, a task `family` does not know: the family's own `check_task` when it
    has one (it can name a missing package and suggest a close id), else its task list."""
    module = _family_module(family)
    if hasattr(module, "check_task"):
        module.check_task(task)
        return
    tasks = _tasks(module)
    if task not in tasks:
        raise UsageError(f"unknown {family} task '{task}'; choose one of: {', '.join(tasks)}")


def env_device(configured: str, process_device: torch.device | None = None) -> torch.device:
    """The device an env steps on: `env.device`, where a bare "cuda" means this process's GPU
    (under DDP each rank passes its own device as `process_device`)."""
    if configured == "cuda" and process_device is not None and process_device.type == "cuda":
        return process_device
    return torch.device(configured)


def make_env(cfg: DictConfig, seed: int, process_device: torch.device | None = None, transforms: list | None = None,
             training: bool = False) -> EnvBase:
    """Build the batched env described by `cfg` (a composed `env` section), seeded.

    `env.device: cuda` (no index) means "this process's GPU": under DDP each rank passes its
    own device as `process_device` and samples there. `transforms` are what the acting policy
    needs on the env (recurrent policies: `InitTracker` and hidden-state primers); copies are
    appended, so one list serves many envs. `training=True` (the envs a learner collects from)
    applies `env.reward_scale`; evaluation and the Python API see the env's own rewards.
    """
    device = env_device(cfg.device, process_device)
    if str(device) != cfg.device:
        cfg = OmegaConf.merge(cfg, {"device": str(device)})
    builder: Callable[[DictConfig, int], EnvBase] = _family_module(cfg.family).make
    env = builder(cfg, seed)
    if cfg.get("hide_observation"):
        env = hide_observation(env, OmegaConf.to_container(cfg.hide_observation))
    if training and cfg.get("reward_scale", 1.0) != 1.0:
        env = scale_rewards(env, cfg.reward_scale)
    for transform in transforms or []:
        env.append_transform(transform.clone())
    return env


def make_spec_env(cfg: DictConfig, seed: int) -> EnvBase:
    """A one-world env on the CPU, to read specs from when building networks."""
    return make_env(OmegaConf.merge(cfg, {"num_envs": 1, "device": "cpu"}), seed)


def family_baselines(family: str) -> dict[str, Callable]:
    """The classical policies a family offers for comparison (its module's `BASELINES`: name ->
    factory(env) -> policy, a callable tensordict -> tensordict); empty when it offers none."""
    return dict(getattr(_family_module(family), "BASELINES", {}))


def render_frame(cfg: DictConfig, env: EnvBase, env_index: int = 0):
    """An RGB frame of one world of `env`, or None when the family cannot render."""
    render = getattr(_family_module(cfg.family), "render", None)
    return None if render is None else render(env, env_index)
