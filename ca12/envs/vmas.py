"""VMAS scenarios through TorchRL's `VmasEnv` (vectorised, on `env.device`)."""

from __future__ import annotations

import warnings

import vmas
from omegaconf import DictConfig, OmegaConf
from torchrl.envs import EnvBase, RewardSum, TransformedEnv
from torchrl.envs.libs.vmas import VmasEnv

from ca12.errors import UsageError


def tasks() -> list[str]:
    return sorted(vmas.scenarios)


def make(cfg: DictConfig, seed: int) -> EnvBase:
    """A `VmasEnv` with `cfg.num_envs` parallel worlds and a per-agent episode-return counter.

    Scenario kwargs are every key of `cfg` that is not a common env key; a kwarg the scenario
    does not consume is refused (VMAS itself only warns).
    """
    from ca12.envs import task_kwargs

    if cfg.task not in vmas.scenarios:
        raise UsageError(f"unknown vmas task '{cfg.task}'; choose one of: {', '.join(tasks())}")
    kwargs = OmegaConf.to_container(OmegaConf.create(task_kwargs(cfg)), resolve=True)
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
    (group,) = env.group_map  # VMAS puts agents of one kind in one group
    return TransformedEnv(env, RewardSum(in_keys=[(group, "reward")], out_keys=[(group, "episode_reward")]))
