"""What ca12 reads from a run directory is data from strangers: the checks that keep it data.

Run directories, checkpoints, `pbt.json` and `config.yaml` files are shared between people, so
loading one may only ever *read* values (the threat model is in docs/ARCHITECTURE.md, "Run
directories are data"). Checkpoints are unpickled with PyTorch's safe loader (ca12.run.rundir);
this module checks the run config they carry, before OmegaConf or Hydra ever see it:

- no interpolation: a string holding `${...}` (`${oc.env:WANDB_API_KEY}`, `${oc.decode:...}`, a
  reference to another key) is refused, so nothing is resolved from the environment or elsewhere;
- no code: Hydra's instantiation keys (`_target_`, `_args_`, `_partial_`...) appear nowhere but as
  the class of a top-level `callbacks.<name>` entry, and that class must be one ca12 or Lightning
  ships (`ALLOWED_CALLBACKS`) or one the user's own command names (`+callbacks.NAME._target_=...`):
  a saved run never makes ca12 import a module of its choosing;
- plain values only: strings, numbers, booleans, None, lists and string-keyed mappings;
- a checkpoint being written holds only what the safe loader rebuilds (`unsafe_entry`), so a
  state that could not be read back fails the run at its first save, not at its resume.

Written by hand: OmegaConf and Hydra treat every config as trusted (Hydra's own target blocklist
says it is no security boundary), and no library offers a "data only" mode for them.
"""

from __future__ import annotations

import functools
import json
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from ca12.errors import UsageError

# ca12's callbacks a config names (conf/callbacks/) -> their module in callbacks/ (which imports
# this table: it is declared here, at the bottom of the imports, so both read one list).
CONFIGURABLE_CALLBACKS = {"FramesProgressBar": "progress", "EvaluationCallback": "evaluation", "IterationCheckpoint": "checkpoint"}


def callback_paths(classes: Mapping[str, str]) -> dict[str, str]:
    """Every dotted path a config may name one of ca12's callback `classes` (class -> its module
    in callbacks/) by -> the class: `ca12.callbacks[.<module>].NAME`, and `callbacks[.<module>].NAME`,
    which run directories written before callbacks/ installed as `ca12.callbacks` (2026-12-07) say."""
    return {
        path: name
        for name, module in classes.items()
        for package in ("ca12.callbacks", "callbacks")
        for path in (f"{package}.{name}", f"{package}.{module}.{name}")
    }


# Callback classes a saved run may name: ca12's own under each of their paths, and Lightning's that
# take plain-valued arguments only and write nothing outside the run.
ALLOWED_CALLBACKS = frozenset(
    [*callback_paths(CONFIGURABLE_CALLBACKS)]
    + [
        f"lightning.pytorch.callbacks.{name}"
        for name in (
            "LearningRateMonitor",
            "EarlyStopping",
            "ModelSummary",
            "RichModelSummary",
            "Timer",
            "DeviceStatsMonitor",
            "TQDMProgressBar",
            "RichProgressBar",
        )
    ]
)

_PLAIN = (type(None), bool, int, float, str)


def _is_hydra_key(key: Any) -> bool:
    return isinstance(key, str) and len(key) > 2 and key.startswith("_") and key.endswith("_")


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def hydra_keys(value: Any, path: str = ""):
    """Dotted paths of Hydra's instantiation keys (`_target_`, `_args_`, `_partial_`...) in the
    plain container `value`: each is a place where Hydra would build an object or call code."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if _is_hydra_key(key):
                yield _join(path, key)
            yield from hydra_keys(item, _join(path, key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from hydra_keys(item, f"{path}[{index}]")


def is_callback_class_key(path: str) -> bool:
    """`callbacks.<name>._target_`: the one place a run config names a class."""
    parts = path.split(".")
    return len(parts) == 3 and parts[0] == "callbacks" and parts[2] == "_target_"


def _walk(value: Any, path: str):
    """(dotted path, key or None, value) of every node below `value`, refusing what is not plain."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise UsageError(f"{path or 'the config'} has a key of type {type(key).__name__} ({key!r}); a run config's keys are strings")
            where = _join(path, key)
            yield where, key, item
            yield from _walk(item, where)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield f"{path}[{index}]", None, item
            yield from _walk(item, f"{path}[{index}]")
    elif type(value) not in _PLAIN:
        raise UsageError(f"'{path}' holds a {type(value).__name__}; a run config holds plain values only")


def check_plain_config(config: Mapping, where: str) -> None:
    """Refuse (one-line `UsageError` naming `where` and the key) a saved config that holds anything
    but plain values: an interpolation, a Hydra instantiation key outside a top-level callback
    entry's `_target_`, or a value of another type. The callback classes are `check_callback_classes`'s."""
    if not isinstance(config, Mapping):
        raise UsageError(f"{where}: the run config is a {type(config).__name__}, not a mapping")
    for path, key, value in _walk(config, ""):
        if key is not None and "${" in key:
            raise UsageError(f"{where}: the key '{path}' holds an interpolation; a saved run config is data and ca12 resolves nothing in it")
        if isinstance(value, str) and "${" in value:
            raise UsageError(f"{where}: '{path}' holds an interpolation ({value!r}); a saved run config is data and ca12 resolves nothing in it")
    for path in hydra_keys(config):
        if not is_callback_class_key(path):
            raise UsageError(f"{where}: '{path}' would make ca12 build an object; a saved run config may name a class only as a callback's _target_")


def user_callbacks(overrides: Iterable[str]) -> tuple[dict[str, str], set[str]]:
    """The callback classes the user's own command names (`[+]callbacks.NAME._target_=CLASS`) and
    the entries it removes (`~callbacks.NAME`): these need no allowlist, the user chose them."""
    named, removed = {}, set()
    for text in overrides:
        key, sep, value = text.lstrip("+").partition("=")
        parts = key.split(".")
        if key.startswith("~callbacks.") and len(parts) == 2:
            removed.add(parts[1])
        elif sep and is_callback_class_key(key):
            named[parts[1]] = value.strip()
    return named, removed


def check_callback_classes(config: Mapping, where: str, overrides: Iterable[str] = ()) -> None:
    """Refuse a saved config whose `callbacks.<name>._target_` is neither in `ALLOWED_CALLBACKS`
    nor named (or removed) by the user's command `overrides`: importing a module runs its code."""
    overrides = list(overrides)
    if any(text.partition("=")[0].strip() == "callbacks" for text in overrides):
        return  # `callbacks=OPTION`: the saved section is replaced by one of conf/callbacks/
    named, removed = user_callbacks(overrides)
    section = config.get("callbacks") or {}
    if not isinstance(section, Mapping):
        raise UsageError(f"{where}: 'callbacks' is a {type(section).__name__}, not a mapping of callbacks")
    for name, entry in section.items():
        target = entry.get("_target_") if isinstance(entry, Mapping) else None
        if target is None or target in ALLOWED_CALLBACKS or name in removed or named.get(name) == target:
            continue
        raise UsageError(
            f"{where}: callbacks.{name} names the class '{target}', which neither ca12 nor Lightning ships; a saved run may not make "
            f"ca12 import code: if you trust it, name it yourself (+callbacks.{name}._target_={target}) or drop it (~callbacks.{name})"
        )


# Env factories (`--env module:function`, ca12/envs/user.py) the user's own command or Python call
# named in this process: path -> the object given from Python (None: imported by its path).
# Building such an env imports and calls that code, so a path read from a file (a saved run, a
# population, a sweep) is built only when it is here.
_NAMED_ENV_FACTORIES: dict[str, Any] = {}
_FACTORY_PATH = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*")


def is_env_factory(env: str) -> bool:
    """Whether an `--env` value names a factory (`module:attribute`, or `user/module:attribute`)."""
    return ":" in env


def check_env_factory_path(path: str) -> None:
    if not _FACTORY_PATH.fullmatch(path):
        raise UsageError(f"env factory '{path}': expected an import path MODULE:ATTRIBUTE, e.g. my_package.envs:make_env")


def name_env_factory(factory: Any) -> str:
    """Record that the user named `factory` (an import path, or a function or class from Python,
    recorded under `module:qualname`); returns its path."""
    if isinstance(factory, str):
        path = factory.removeprefix("user/")
        check_env_factory_path(path)
        _NAMED_ENV_FACTORIES.setdefault(path, None)
        return path
    if not callable(factory):
        raise UsageError(f"env: a {type(factory).__name__} is neither FAMILY/TASK, MODULE:FUNCTION nor a function that builds an env")
    path = f"{factory.__module__}:{factory.__qualname__}".replace("<", "").replace(">", "")
    check_env_factory_path(path)
    _NAMED_ENV_FACTORIES[path] = factory
    return path


def name_env_factories_in(argv: Iterable[str]) -> None:
    """Record the factories a command line's `--env` values name (comma lists: a sweep's)."""
    argv = list(argv)
    for i, text in enumerate(argv):
        value = argv[i + 1] if text == "--env" and i + 1 < len(argv) else text.partition("=")[2] if text.startswith("--env=") else None
        for env in (value or "").split(","):
            if is_env_factory(env):
                name_env_factory(env.strip())


def named_env_factory(path: str) -> Any:
    """The object the user gave from Python for `path` (None: import it by its path)."""
    return _NAMED_ENV_FACTORIES.get(path)


def check_env_factory(env_section: Mapping, where: str) -> None:
    """Refuse an env built by a factory that the user's own command did not name: the path came
    from a file (a saved run, a population, a sweep), and building its env would run its code."""
    if env_section.get("family") != "user":
        return
    path = str(env_section.get("task"))
    check_env_factory_path(path)
    if path not in _NAMED_ENV_FACTORIES:
        raise UsageError(f"{where}: the env is built by {path}, code ca12 runs only when your own command names it: if you trust it, --env {path}")


def check_override_texts(texts: Iterable[str], where: str) -> None:
    """Overrides read from a file (a population's `pbt.json`) are data too: no interpolation, and a
    callback class only from `ALLOWED_CALLBACKS`."""
    for text in texts:
        if not isinstance(text, str):
            raise UsageError(f"{where}: an override is a {type(text).__name__} ({text!r}), not KEY=VALUE text")
        if "${" in text:
            raise UsageError(
                f"{where}: the override {text!r} holds an interpolation; overrides saved in a file are data and ca12 resolves nothing in them"
            )
        named, _ = user_callbacks([text])
        for name, target in named.items():
            if target not in ALLOWED_CALLBACKS:
                raise UsageError(
                    f"{where}: the override {text!r} names the class '{target}', which neither ca12 nor Lightning ships; "
                    f"a saved population may not make ca12 import code"
                )
        key = text.lstrip("+~").partition("=")[0]
        if any(_is_hydra_key(part) for part in key.split(".")) and not is_callback_class_key(key):
            raise UsageError(f"{where}: the override {text!r} would make ca12 build an object; overrides saved in a file set values only")


def read_config_file(path: str | Path) -> dict:
    """A run directory's `config.yaml` as plain data (YAML's safe loader, then
    `check_plain_config`), without OmegaConf: nothing in it is resolved."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UsageError(f"'{path}' is not a readable run config ({type(exc).__name__})") from None
    check_plain_config(config, str(path))
    return config


def read_json_file(path: str | Path, what: str) -> Any:
    """A JSON file of a run directory (`what` names it in the error), one line when it is not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"'{path}' is not a readable {what} ({type(exc).__name__})") from None


# --- what a checkpoint may hold ---------------------------------------------------------------
# Exact types `torch.load(weights_only=True)` rebuilds without being told of them. Exact, not
# isinstance: subclasses such as `numpy.float64` (a float) or `MemoryMappedTensor` (a tensor)
# pickle through their own classes, which the safe loader refuses.
@functools.cache
def _plain_leaves() -> tuple[type, ...]:
    import torch

    return (type(None), bool, int, float, complex, str, bytes, torch.Size, torch.dtype, torch.device, torch.Tensor, torch.nn.Parameter)


_PLAIN_CONTAINERS = (dict, OrderedDict, list, tuple, set)


def unsafe_entry(obj: Any, where: str = "checkpoint") -> str | None:
    """The path and type of the first value in `obj` that the safe loader would refuse, or None.

    Checked when a checkpoint is written, so a state that cannot be read back fails the run at
    its first save rather than at its resume.
    """
    kind = type(obj)
    if kind in _plain_leaves():
        return None
    if kind not in _PLAIN_CONTAINERS:
        return f"{where}: {kind.__module__}.{kind.__qualname__}"
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    for key, value in items:
        found = unsafe_entry(key, f"{where} key") if isinstance(obj, dict) else None
        found = found or unsafe_entry(value, f"{where}[{key!r}]")
        if found:
            return found
    return None
