"""Single-agent Gym tasks (`--env gym/<id>`) through TorchRL's `GymEnv`, entering ca12 as a team
of one (`ca12.envs.single_agent.as_agent_group`): every algorithm, checkpoint, evaluation and
metric works on them unchanged. `env.num_envs` copies step in one `SerialEnv` (in process).

This is the minimal family the agent layout needs; the Gymnasium family with its vectorisation
choices is built on it by the advanced-policy-methods issue.
"""

from __future__ import annotations

from functools import partial

from omegaconf import DictConfig
from torchrl.envs import EnvBase, GymEnv, SerialEnv

from ca12.envs.common import task_kwargs
from ca12.envs.single_agent import as_agent_group
from ca12.errors import UsageError


def _registry() -> list[str]:
    try:
        import gym
    except ImportError:  # the family is listed without tasks when gym is missing
        return []
    return sorted(gym.envs.registry.keys())


def tasks() -> list[str]:
    return _registry()


def make(cfg: DictConfig, seed: int) -> EnvBase:
    """`cfg.num_envs` copies of the Gym task `cfg.task` as one agent group named "agent"."""
    if not _registry():
        raise UsageError("gym/... envs need the gym package: pip install gym")
    if cfg.task not in tasks():
        raise UsageError(f"unknown gym task '{cfg.task}'")
    kwargs = task_kwargs(cfg)
    make_one = partial(GymEnv, cfg.task, device=cfg.device, categorical_action_encoding=True, **kwargs)
    env = SerialEnv(cfg.num_envs, make_one)
    env.set_seed(seed)
    return as_agent_group(env, group="agent")
