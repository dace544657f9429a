"""Algorithm registry: `--algo NAME` is the module `ca12.algos.NAME`, which names its
LightningModule `ALGORITHM`, and the config `conf/algo/NAME.yaml`."""

from __future__ import annotations

from importlib import import_module

from ca12.errors import UsageError


def algo_class(name: str):
    """The LightningModule class registered under `name`."""
    from ca12.config import algo_names

    if name not in algo_names():
        raise UsageError(f"unknown algorithm '{name}'; choose one of: {', '.join(algo_names())}")
    return import_module(f"ca12.algos.{name}").ALGORITHM
