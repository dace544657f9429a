"""Environment registry: `make_env(cfg.env, seed)` -> a batched TorchRL `EnvBase`.

A family is a module that builds its envs (`make(cfg, seed)`, ca12/envs/<family>.py) and an entry
in `ca12.envs.catalog.FAMILIES` that lists its tasks, documents its keys and refuses a task it
cannot build; `--env family/task` picks one. Every env returned here follows TorchRL's
multi-agent key convention: `(group, "observation")`, `(group, "action")`, `(group, "reward")`,
env-level `done`/`terminated`, and carries a `RewardSum` transform that writes
`(group, "episode_reward")`.

Listing, key docs and task checks read the catalog only; what builds or inspects an env imports
the family's module (torch, TorchRL, the env library), so importing this package stays light
(docs/ARCHITECTURE.md, "What may be imported at start-up"). Its re-exports (`AgentLayout`,
`EnvConfig`, ...) are imported when first used.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Callable

from omegaconf import DictConfig, OmegaConf

from ca12.envs.catalog import FAMILIES
from ca12.errors import UsageError

if TYPE_CHECKING:
    import torch
    from torchrl.envs import EnvBase

# Names this package re-exports -> the module that defines them, imported on first use.
_REEXPORTS = {
    "COMMON_KEYS": "ca12.envs.catalog",
    "EnvConfig": "ca12.envs.catalog",
    "hide_observation": "ca12.envs.common",
    "scale_rewards": "ca12.envs.common",
    "task_kwargs": "ca12.envs.common",
    "AgentLayout": "ca12.envs.layout",
    "Group": "ca12.envs.layout",
}


def __getattr__(name: str):
    if name in _REEXPORTS:
        return getattr(import_module(_REEXPORTS[name]), name)
    raise AttributeError(f"module 'ca12.envs' has no attribute '{name}'")


def env_families() -> list[str]:
    return sorted(FAMILIES)


def _family(family: str):
    if family not in FAMILIES:
        raise UsageError(f"unknown env family '{family}'; choose one of: {', '.join(env_families())}")
    return FAMILIES[family]


def _family_module(family: str):
    return import_module(_family(family).module)


def family_tasks(family: str) -> list[str]:
    return list(_family(family).tasks())


def family_key_docs(family: str) -> dict[str, str]:
    """One-line docs of the keys a family reads besides the common ones."""
    return dict(_family(family).key_docs)


def check_task(family: str, task: str) -> None:
    """Refuse, in one line, a task `family` does not know: the family's own check when it has
    one (it can name a missing package and suggest a close id), else its task list."""
    entry = _family(family)
    if entry.check_task is not None:
        entry.check_task(task)
        return
    tasks = list(entry.tasks())
    if task not in tasks:
        raise UsageError(f"unknown {family} task '{task}'; choose one of: {', '.join(tasks)}")


def env_device(configured: str, process_device: torch.device | None = None) -> torch.device:
    """The device an env steps on: `env.device`, where a bare "cuda" means this process's GPU
    (under DDP each rank passes its own device as `process_device`)."""
    import torch

    if configured == "cuda" and process_device is not None and process_device.type == "cuda":
        return process_device
    return torch.device(configured)


def make_env(
    cfg: DictConfig, seed: int, process_device: torch.device | None = None, transforms: list | None = None, training: bool = False
) -> EnvBase:
    """Build the batched env described by `cfg` (a composed `env` section), seeded.

    `env.device: cuda` (no index) means "this process's GPU": under DDP each rank passes its
    own device as `process_device` and samples there. `transforms` are what the acting policy
    needs on the env (recurrent policies: `InitTracker` and hidden-state primers); copies are
    appended, so one list serves many envs. `training=True` (the envs a learner collects from)
    applies `env.reward_scale` and `env.curriculum`; evaluation and the Python API see the env's
    own rewards and configured parameters.
    """
    from ca12.envs.common import hide_observation, scale_rewards

    device = env_device(cfg.device, process_device)
    if str(device) != cfg.device:
        cfg = OmegaConf.merge(cfg, {"device": str(device)})
    builder: Callable[[DictConfig, int], EnvBase] = _family_module(cfg.family).make
    env = builder(cfg, seed)
    if cfg.get("hide_observation"):
        env = hide_observation(env, OmegaConf.to_container(cfg.hide_observation))
    if training and cfg.get("curriculum"):
        from ca12.envs.curriculum import add_curriculum

        env = add_curriculum(env, OmegaConf.to_container(cfg.curriculum), f"curriculum/{cfg.family}/{cfg.task}/{device}/{seed}")
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


def family_renders(family: str) -> bool:
    """Whether `family` can draw its worlds (its module's `render`): a video is refused before any
    episode runs where it cannot."""
    return getattr(_family_module(family), "render", None) is not None


def render_frame(cfg: DictConfig, env: EnvBase, env_index: int = 0):
    """An RGB frame of one world of `env`, or None when the family cannot render."""
    render = getattr(_family_module(cfg.family), "render", None)
    return None if render is None else render(env, env_index)
