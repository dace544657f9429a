"""Lightning callbacks ca12 runs with: progress in frames, atomic per-iteration checkpoints,
a clean stop on signals, and evaluation episodes.

The Trainer's list comes from the run config's `callbacks` section (conf/callbacks/): entries
`NAME: {_target_: CLASS, ARG: VALUE, ...}` in their order, checked by `check_callbacks` when the
config is validated and built by `make_callbacks`; `ca12.fit` appends `GracefulStop` last.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Mapping

from callbacks.checkpoint import GracefulStop, IterationCheckpoint
from callbacks.evaluation import EvaluationCallback
from callbacks.progress import FramesProgressBar

__all__ = ["EvaluationCallback", "FramesProgressBar", "GracefulStop", "IterationCheckpoint", "check_callbacks", "make_callbacks"]


def _arguments(entry) -> list[str]:
    """An entry's constructor arguments (Hydra's own keys, `_target_`, `_args_`..., left out)."""
    return [name for name in entry if not (name.startswith("_") and name.endswith("_"))]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _callback_class(name: str, entry) -> type:
    """The class `callbacks.<name>._target_` names, imported (not instantiated) and checked to
    be a `lightning.pytorch.Callback`; a one-line `UsageError` otherwise."""
    from lightning.pytorch import Callback
    from lightning.pytorch.callbacks import ModelCheckpoint
    from omegaconf import OmegaConf

    from ca12.errors import UsageError

    if not OmegaConf.is_dict(entry) or "_target_" not in entry:
        raise UsageError(f"callbacks.{name} has no _target_ (the Lightning Callback class to build); remove an entry with ~callbacks.{name}")
    path = entry._target_
    module_name, _, attr = path.rpartition(".") if isinstance(path, str) else ("", "", "")
    if not module_name or not attr:
        raise UsageError(f"callbacks.{name}._target_ must be a dotted class path such as lightning.pytorch.callbacks.LearningRateMonitor, got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or whatever the module raised while importing
        raise UsageError(f"callbacks.{name}._target_: cannot import '{module_name}' ({_first_line(exc)})") from None
    found = getattr(module, attr, None)
    if found is None:
        raise UsageError(f"callbacks.{name}._target_: module '{module_name}' has no '{attr}'")
    if not (inspect.isclass(found) and issubclass(found, Callback)):
        raise UsageError(f"callbacks.{name}._target_: '{path}' is not a lightning.pytorch.Callback subclass")
    if issubclass(found, ModelCheckpoint):
        raise UsageError(f"callbacks.{name}: ca12 writes its own checkpoints (callbacks.checkpoint, checkpoint.every_n_iters); Lightning's ModelCheckpoint cannot be added")
    return found


def check_callbacks(section) -> Any:
    """The `callbacks` section's structure, before anything is built or written: a mapping of
    entries, each with a `_target_` that imports as a Callback subclass and only arguments its
    constructor takes (values are the constructor's to check). Returns the section."""
    from omegaconf import OmegaConf

    from ca12.errors import UsageError

    if not OmegaConf.is_dict(section):
        raise UsageError("callbacks must map names to {_target_: CLASS, ARGUMENT: VALUE}, e.g. +callbacks.lr_monitor._target_=lightning.pytorch.callbacks.LearningRateMonitor")
    from lightning.pytorch.callbacks import ProgressBar

    bars = []
    for name, entry in section.items():
        cls = _callback_class(name, entry)
        if issubclass(cls, ProgressBar):
            bars.append(name)
            if len(bars) > 1:  # Lightning takes one progress bar
                raise UsageError(f"callbacks.{bars[0]} and callbacks.{name} are both progress bars; Lightning takes one: remove one with ~callbacks.NAME")
        parameters = inspect.signature(cls).parameters
        if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            continue
        takes = [p.name for p in parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        for arg in _arguments(entry):
            if arg not in takes:
                raise UsageError(f"callbacks.{name}: {cls.__name__} takes no argument '{arg}'; it takes: {', '.join(takes) or 'none'}")
    return section


def make_callbacks(section, runtime: Mapping[type, Mapping[str, Any]] | None = None) -> list:
    """The `callbacks` section's entries as callback objects, in the section's order.

    Each entry is built with `hydra.utils.instantiate` (arguments as plain Python values) after
    its class was imported and checked (`check_callbacks`).

    Args:
        section: the run config's `callbacks` (NAME -> {_target_, arguments}).
        runtime: arguments only the run knows (an evaluator, directories), by class: an entry whose
            class is (a subclass of) a key gets them. Such an argument cannot be set in the config.

    Raises:
        UsageError: one line naming the entry, for a bad class or arguments the constructor refused.
    """
    from hydra.utils import instantiate

    from ca12.errors import UsageError

    check_callbacks(section)
    built = []
    for name, entry in section.items():
        cls = _callback_class(name, entry)
        given = {arg: value for base, args in (runtime or {}).items() if issubclass(cls, base) for arg, value in args.items()}
        for arg in _arguments(entry):
            if arg in given:
                raise UsageError(f"callbacks.{name}.{arg} is given by ca12.fit at run time; it cannot be configured")
        try:
            built.append(instantiate(entry, _convert_="all", **given))
        except Exception as exc:  # Hydra wraps what the constructor raised in a multi-line message
            raise UsageError(f"callbacks.{name} ({entry._target_}): {_first_line(exc.__cause__ or exc)}") from None
    return built
