"""Algorithm registry: `--algo NAME` is the module `ca12.algos.NAME`, which names its
LightningModule `ALGORITHM`, and the config `conf/algo/NAME.yaml`."""

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
