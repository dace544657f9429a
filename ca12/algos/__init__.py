"""Algorithm registry: `--algo NAME` is the module `ca12.algos.NAME`, which names its
LightningModule `ALGORITHM`, the config `conf/algo/NAME.yaml`, and the schema of its keys
`ca12.algos.schemas.SCHEMAS[NAME]`. An algorithm that trains only on an env family of its own
has its env in `OWN_ENVS` (maml: meta/navigation): the env of a run without `--env`.

Only `algo_class` imports an algorithm's module (torch, TorchRL, Lightning): the names, schemas and
default envs are known without it, so listing and checking a config stay light.
"""

from __future__ import annotations

from importlib import import_module

from ca12.algos.schemas import SCHEMAS
from ca12.errors import UsageError
from ca12.paths import group_options


def _checked(name: str) -> str:
    names = group_options("algo")
    if name not in names:
        raise UsageError(f"unknown algorithm '{name}'; choose one of: {', '.join(names)}")
    return name


def algo_class(name: str):
    """The LightningModule class registered under `name`."""
    return import_module(f"ca12.algos.{_checked(name)}").ALGORITHM


def algo_schema(name: str) -> type:
    """The schema of `name`'s `algo` section (ca12/algos/schemas.py), without importing the algorithm."""
    return SCHEMAS[_checked(name)]


DEFAULT_ENV = "vmas/navigation"  # the env of a run without --env, unless the algorithm has its own
# Algorithms that train only on an env family of their own -> the env of a run without --env.
OWN_ENVS = {"maml": "meta/navigation"}  # maml trains only on the meta/ task families


def default_env(name: str | None) -> str:
    """The env `--algo name` runs on without `--env`: its `OWN_ENVS` entry, else vmas/navigation
    (also for no algorithm (resume) or an unknown one, refused later with its own message)."""
    return OWN_ENVS.get(name, DEFAULT_ENV)
