"""Reading ca12 checkpoints at the boundary: a missing, truncated or foreign file is a
`UsageError` with one line, never a deep traceback.

A checkpoint may come from elsewhere, so it is unpickled with PyTorch's safe loader
(`weights_only=True`) and nothing in it can run code. That loader accepts only tensors, numbers,
strings, containers and a few torch types, so everything ca12 saves (RNG states, replay buffers,
collector counters, the config) is kept in such plain values; `unsafe_entry` finds what is not.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from ca12.errors import UsageError

# Exact types `torch.load(weights_only=True)` rebuilds without being told of them. Exact, not
# isinstance: subclasses such as `numpy.float64` (a float) or `MemoryMappedTensor` (a tensor)
# pickle through their own classes, which the safe loader refuses.
_PLAIN_LEAVES = (type(None), bool, int, float, complex, str, bytes, torch.Size, torch.dtype, torch.device, torch.Tensor, torch.nn.Parameter)
_PLAIN_CONTAINERS = (dict, OrderedDict, list, tuple, set)


def unsafe_entry(obj: Any, where: str = "checkpoint") -> str | None:
    """The path and type of the first value in `obj` that the safe loader would refuse, or None.

    Checked when a checkpoint is written, so a state that cannot be read back fails the run at
    its first save rather than at its resume.
    """
    kind = type(obj)
    if kind in _PLAIN_LEAVES:
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


def read_checkpoint(path: str | Path, mmap: bool = False) -> dict:
    """A whole Lightning checkpoint written by `ca12.fit`, checked to be one.

    Its `ca12` section holds `run_config` (the resolved run config), `frames`, `iterations`
    and `wandb_id`; `state_dict` holds the module's weights. Read with `weights_only=True`: a
    file holding anything but plain values is refused before any of it is built. `mmap`: map
    its tensors rather than read them (a look at a large file).
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no checkpoint file at '{path}'")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # truncated zip, not a torch file, a class the safe loader refuses...
        raise UsageError(f"'{path}' is not a readable checkpoint ({type(exc).__name__}){_other_checkpoint_hint(path)}") from None
    section = checkpoint.get("ca12") if isinstance(checkpoint, dict) else None
    if not isinstance(section, dict) or "run_config" not in section:
        raise UsageError(f"'{path}' is not a ca12 checkpoint (no ca12 run config inside)")
    for name in ("frames", "iterations"):
        if type(section.get(name, 0)) is not int or section.get(name, 0) < 0:
            raise UsageError(f"'{path}': its ca12 {name} is {section.get(name)!r}, not a count")
    wandb_id = section.get("wandb_id")
    if wandb_id is not None and not (isinstance(wandb_id, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,128}", wandb_id)):
        # W&B names the run's folders after it: a checkpoint is data from anyone (ca12/untrusted.py)
        raise UsageError(f"'{path}': its W&B run id {wandb_id!r} is not one (letters, digits, - and _)")
    if not isinstance(checkpoint.get("state_dict", {}), dict):
        raise UsageError(f"'{path}' is not a ca12 checkpoint (its state_dict is not a mapping)")
    return checkpoint


def _other_checkpoint_hint(path: Path) -> str:
    """Where a checkpoint cannot be read (a disk filled up, a copy cut short), the newest other
    one beside it, for the user to resume or evaluate instead."""
    numbered = (p for p in path.parent.glob("iter_*.ckpt") if p.name != path.name and p.stem.removeprefix("iter_").isdigit())
    others = sorted(numbered, key=lambda p: int(p.stem.removeprefix("iter_")))
    return f"; the newest other checkpoint beside it is '{others[-1]}': pass that path instead" if others else ""


def run_dir_of(checkpoint_path: Path) -> Path:
    """`<run-dir>/checkpoints/<name>.ckpt` -> `<run-dir>`."""
    parent = checkpoint_path.resolve().parent
    return parent.parent if parent.name == "checkpoints" else parent
