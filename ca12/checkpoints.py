"""Reading ca12 checkpoints at the boundary: a missing, truncated or foreign file is a
`UsageError` with one line, never a deep traceback."""

from __future__ import annotations

from pathlib import Path

import torch

from ca12.errors import UsageError


def read_checkpoint(path: str | Path) -> dict:
    """A whole Lightning checkpoint written by `ca12.fit`, checked to be one.

    Its `ca12` section holds `run_config` (the resolved run config), `frames`, `iterations`
    and `wandb_id`; `state_dict` holds the module's weights.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no checkpoint file at '{path}'")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated zip, not a torch file, unpickling error...
        raise UsageError(f"'{path}' is not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(checkpoint, dict) or "run_config" not in checkpoint.get("ca12", {}):
        raise UsageError(f"'{path}' is not a ca12 checkpoint (no ca12 run config inside)")
    return checkpoint


def run_dir_of(checkpoint_path: Path) -> Path:
    """`<run-dir>/checkpoints/<name>.ckpt` -> `<run-dir>`."""
    parent = checkpoint_path.resolve().parent
    return parent.parent if parent.name == "checkpoints" else parent
