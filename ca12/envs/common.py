"""What every env family shares, kept apart from the registry (ca12/envs/__init__.py) so a
family module never imports back from the registry that imports it."""

from __future__ import annotations

import weakref

from omegaconf import DictConfig

from ca12.seeding import register_rng_source

# Keys of an env config that are not passed to the env's own constructor as kwargs.
COMMON_KEYS = ("family", "task", "num_envs", "max_steps", "device", "continuous_actions")


def task_kwargs(cfg: DictConfig) -> dict:
    """The env config's task-specific kwargs (everything that is not a common key)."""
    return {key: value for key, value in cfg.items() if key not in COMMON_KEYS}


# Live envs per registered generator name (weak: a dead env is dropped, not kept alive).
_LIVE: dict[str, list[weakref.ref]] = {}


def _live_envs(name: str) -> list:
    envs = [env for env in (ref() for ref in _LIVE.get(name, [])) if env is not None]
    _LIVE[name] = [weakref.ref(env) for env in envs]
    return envs


def register_env_rng(env, family: str, seed: int) -> None:
    """Make checkpoints capture the generator `env._rng` of a family's own torch env.

    Registered with `ca12.seeding.register_rng_source` under `<family>/<device>/<seed>`. The name
    depends only on (family, device, seed), so a resumed run (a fresh process, or a second run in
    the same process) finds the training env under the same name as the saved one. Envs built
    with the same seed on the same device (fit's one-world spec env and the training env) share
    the name: capture reads the newest live one, restore sets them all.

    Args:
        env: an env with a `torch.Generator` in `env._rng` and a `device`.
        family: the env family's registry name ("generic", "memory", ...).
        seed: the seed the env's generator was built with.
    """
    name = f"{family}/{env.device}/{seed}"
    _LIVE[name] = [weakref.ref(e) for e in _live_envs(name)] + [weakref.ref(env)]

    def get_state():
        envs = _live_envs(name)
        return envs[-1]._rng.get_state() if envs else None

    def set_state(state) -> None:
        if state is None:
            return
        for live in _live_envs(name):
            live._rng.set_state(state)

    register_rng_source(name, get_state, set_state)
