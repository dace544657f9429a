"""Lightning callbacks ca12 runs with: progress in frames, atomic per-iteration checkpoints,
a clean stop on signals, and evaluation episodes.

The Trainer's list comes from the run config's `callbacks` section (conf/callbacks/): entries
`NAME: {_target_: CLASS, ARG: VALUE, ...}` in their order, checked by `check_callbacks` when the
config is validated and built by `make_callbacks`; `ca12.fit` appends `GracefulStop` last.
"""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any, Mapping

from omegaconf import OmegaConf

from ca12.errors import UsageError
from ca12.untrusted import CONFIGURABLE_CALLBACKS, callback_paths, hydra_keys, is_callback_class_key

if TYPE_CHECKING:
    from ca12.callbacks.checkpoint import GracefulStop, IterationCheckpoint
    from ca12.callbacks.evaluation import EvaluationCallback
    from ca12.callbacks.progress import FramesProgressBar

__all__ = ["EvaluationCallback", "FramesProgressBar", "GracefulStop", "IterationCheckpoint", "check_callbacks", "make_callbacks"]

# ca12's callback classes -> their module, imported on first use: `check_callbacks` runs when a
# config is validated, which needs no Lightning (docs/ARCHITECTURE.md, "What may be imported at
# start-up").
_CLASSES = {**CONFIGURABLE_CALLBACKS, "GracefulStop": "checkpoint", "ConfigHyperparameters": "hyperparameters"}
_PATHS = callback_paths(_CLASSES)  # every path a config may name them by -> the class
# What `check_callbacks` needs of those conf/callbacks/ names, known without importing them: class
# -> (a progress bar?, its constructor's arguments). tests/run/test_startup.py holds it to the classes.
OWN_CALLBACKS = {
    "FramesProgressBar": (True, ("total_frames", "return_key", "every_percent")),
    "EvaluationCallback": (False, ("evaluator", "every_n_iters", "video_dir")),
    "IterationCheckpoint": (False, ("dirpath", "every_n_iters", "keep", "every_s")),
}


def __getattr__(name: str):
    if name in _CLASSES:
        return getattr(importlib.import_module(f"ca12.callbacks.{_CLASSES[name]}"), name)
    raise AttributeError(f"module 'ca12.callbacks' has no attribute '{name}'")


def own_class_name(target: Any) -> str | None:
    """The name of the ca12 callback class a `_target_` names (under any of the paths
    `untrusted.callback_paths` lists), else None."""
    return _PATHS.get(target) if isinstance(target, str) else None


def _own_callback(entry) -> tuple[str, bool, tuple[str, ...]] | None:
    """(class name, a progress bar?, constructor arguments) of an entry naming one of ca12's own
    callbacks (`own_class_name`), else None."""
    name = own_class_name(entry.get("_target_") if isinstance(entry, Mapping) else None)
    return (name, *OWN_CALLBACKS[name]) if name in OWN_CALLBACKS else None


def _inspected(name: str, entry) -> tuple[str, bool, list[str] | None]:
    """(class name, a progress bar?, constructor arguments; None: it takes **kwargs) of any other
    entry's class, imported (`_callback_class`)."""
    from lightning.pytorch.callbacks import ProgressBar

    cls = _callback_class(name, entry)
    parameters = inspect.signature(cls).parameters
    takes = [p.name for p in parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return cls.__name__, issubclass(cls, ProgressBar), None if any(p.kind is p.VAR_KEYWORD for p in parameters.values()) else takes


def _arguments(entry) -> list[str]:
    """An entry's constructor arguments (its `_target_` left out)."""
    return [name for name in entry if name != "_target_"]


def _check_plain_arguments(name: str, entry) -> None:
    """A callback is built as `CLASS(**arguments)` with plain values: Hydra's other keys (`_args_`,
    `_partial_`, `_recursive_`...) and a `_target_` nested in an argument, which Hydra's recursive
    instantiation would call, are refused, wherever the entry came from."""
    found = next((path for path in hydra_keys({"callbacks": {name: OmegaConf.to_container(entry)}}) if not is_callback_class_key(path)), None)
    if found:
        raise UsageError(
            f"{found}: a callback takes plain-valued arguments only (ca12 builds CLASS(**arguments), never an object named in its arguments)"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _callback_class(name: str, entry) -> type:
    """The class `callbacks.<name>._target_` names, imported (not instantiated) and checked to
    be a `lightning.pytorch.Callback`; a one-line `UsageError` otherwise."""
    from lightning.pytorch import Callback
    from lightning.pytorch.callbacks import ModelCheckpoint

    if not OmegaConf.is_dict(entry) or "_target_" not in entry:
        raise UsageError(f"callbacks.{name} has no _target_ (the Lightning Callback class to build); remove an entry with ~callbacks.{name}")
    path = entry._target_
    own = own_class_name(path)
    if own:  # one of ca12's own, under any of its paths
        path = f"ca12.callbacks.{_CLASSES[own]}.{own}"
    module_name, _, attr = path.rpartition(".") if isinstance(path, str) else ("", "", "")
    if not module_name or not attr:
        raise UsageError(
            f"callbacks.{name}._target_ must be a dotted class path such as lightning.pytorch.callbacks.LearningRateMonitor, got {path!r}"
        )
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
        raise UsageError(
            f"callbacks.{name}: ca12 writes its own checkpoints (callbacks.checkpoint, checkpoint.every_n_iters); "
            "Lightning's ModelCheckpoint cannot be added"
        )
    return found


def check_callbacks(section) -> Any:
    """The `callbacks` section's structure, before anything is built or written: a mapping of
    entries, each with a `_target_` that imports as a Callback subclass and only arguments its
    constructor takes (values are the constructor's to check). ca12's own classes are checked
    from `OWN_CALLBACKS`, without importing them. Returns the section."""
    if not OmegaConf.is_dict(section):
        raise UsageError(
            "callbacks must map names to {_target_: CLASS, ARGUMENT: VALUE}, "
            "e.g. +callbacks.lr_monitor._target_=lightning.pytorch.callbacks.LearningRateMonitor"
        )
    bars = []
    for name, entry in section.items():
        class_name, progress_bar, takes = _own_callback(entry) or _inspected(name, entry)
        if progress_bar:
            bars.append(name)
            if len(bars) > 1:  # Lightning takes one progress bar
                raise UsageError(
                    f"callbacks.{bars[0]} and callbacks.{name} are both progress bars; Lightning takes one: remove one with ~callbacks.NAME"
                )
        _check_plain_arguments(name, entry)
        if takes is None:  # **kwargs: the constructor checks its arguments itself
            continue
        for arg in _arguments(entry):
            if arg not in takes:
                raise UsageError(f"callbacks.{name}: {class_name} takes no argument '{arg}'; it takes: {', '.join(takes) or 'none'}")
    return section


def make_callbacks(section, runtime: Mapping[type, Mapping[str, Any]] | None = None) -> list:
    """The `callbacks` section's entries as callback objects, in the section's order.

    Each entry is built as `CLASS(**arguments)`, its arguments as plain Python values, after its
    class was imported and checked (`check_callbacks`); not with Hydra's `instantiate`, whose
    recursion would call a `_target_` nested anywhere in the arguments (a saved run's config is
    data from anyone: ca12/untrusted.py).

    Args:
        section: the run config's `callbacks` (NAME -> {_target_, arguments}).
        runtime: arguments only the run knows (an evaluator, directories), by class: an entry whose
            class is (a subclass of) a key gets them. Such an argument cannot be set in the config.

    Raises:
        UsageError: one line naming the entry, for a bad class or arguments the constructor refused.
    """
    check_callbacks(section)
    built = []
    for name, entry in section.items():
        cls = _callback_class(name, entry)
        given = {arg: value for base, args in (runtime or {}).items() if issubclass(cls, base) for arg, value in args.items()}
        for arg in _arguments(entry):
            if arg in given:
                raise UsageError(f"callbacks.{name}.{arg} is given by ca12.fit at run time; it cannot be configured")
        try:
            arguments = OmegaConf.to_container(entry, resolve=True)
            arguments.pop("_target_")
            built.append(cls(**arguments, **given))
        except Exception as exc:  # keep the constructor's complaint to its first line
            raise UsageError(f"callbacks.{name} ({entry._target_}): {_first_line(exc)}") from None
    return built
