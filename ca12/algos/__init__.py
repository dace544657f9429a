"""Algorithm registry: `--algo NAME` is the module `ca12.algos.NAME`, which names its
LightningModule `ALGORITHM`, and the config `conf/algo/NAME.yaml`. A module that trains only on
an env family of its own names it `DEFAULT_ENV` (maml: meta/navigation): the env of a run
without `--env`."""

from __future__ import annotations

from importlib import import_module

from ca12.errors import UsageError
from ca12.paths import group_options


def algo_class(name: str):
    """The LightningModule class registered under `name`."""
    names = group_options("algo")
    if name not in names:
        raise UsageError(f"unknown algorithm '{name}'; choose one of: {', '.join(names)}")
    return import_module(f"ca12.algos.{name}").ALGORITHM


DEFAULT_ENV = "vmas/navigation"  # the env of a run without --env, unless the algorithm names its own


def default_env(name: str | None) -> str:
    """The env `--algo name` runs on without `--env`: the module's `DEFAULT_ENV`, else vmas/navigation."""
    if name is None or name not in group_options("algo"):
        return DEFAULT_ENV  # no algorithm (resume) or an unknown one, refused later with its own message
    return getattr(import_module(f"ca12.algos.{name}"), "DEFAULT_ENV", DEFAULT_ENV)
