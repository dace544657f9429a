"""Rebuilding a trained module from a checkpoint, written once for every reader (evaluation,
`ca12.load`, benchmarks and env families that score a trained run).

A checkpoint is data from anyone: it is read with the safe loader (`ca12.checkpoints`), its run
config checked as data and validated (`ca12.config.saved_config`: no interpolation, no class to
import, an env task its family knows), and only then is the algorithm it names built, from ca12's
own registry. Weights that do not fit that config are one line, not a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ca12.errors import UsageError


def checkpoint_path(path: str | Path) -> Path:
    """A run directory's `checkpoints/last.ckpt`, or `path` itself when it is a file."""
    path = Path(path)
    return path / "checkpoints" / "last.ckpt" if path.is_dir() else path


def check_state(module: Any, state_dict: dict, where: str | Path) -> None:
    """Refuse in one line weights that do not fit `module` (a config edited by hand, another run's
    checkpoint): a missing or unexpected entry, or a tensor of another shape. Nothing is loaded,
    so a run about to be resumed keeps the module its config built until Lightning restores it."""
    import torch

    expected = module.state_dict()
    missing, unexpected = sorted(set(expected) - set(state_dict)), sorted(set(state_dict) - set(expected))
    shapes = [name for name, value in expected.items() if isinstance(value, torch.Tensor) and isinstance(state_dict.get(name), torch.Tensor)
              and value.shape != state_dict[name].shape]
    problem = (f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}" if unexpected
               else f"{shapes[0]} is {tuple(state_dict[shapes[0]].shape)}, the model has {tuple(expected[shapes[0]].shape)}" if shapes else None)
    if problem:
        raise UsageError(f"'{where}': its weights do not fit the model its run config builds ({problem})")


def load_state(module: Any, state_dict: dict, where: str | Path) -> None:
    """`module.load_state_dict(state_dict)` after `check_state`; what the module's own loading
    still refuses is one line too."""
    check_state(module, state_dict, where)
    try:
        module.load_state_dict(state_dict)
    except UsageError:  # a module's own one-line refusal (a league of another size)
        raise
    except (RuntimeError, KeyError, ValueError) as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        raise UsageError(f"'{where}': its weights do not fit the model its run config builds ({(lines or [type(exc).__name__])[-1][:200]})") from None


def build_module(cfg: Any, state_dict: dict, where: str | Path) -> Any:
    """The algorithm `cfg` (a config from `saved_config`) names, built on the CPU with the
    weights `state_dict`, in training mode as it comes out of its constructor."""
    from ca12.algos import algo_class
    from ca12.envs import make_spec_env
    from ca12.seeding import isolated_rng

    with isolated_rng():  # building an env draws from global generators (VMAS's): leave the caller's alone
        module = algo_class(cfg.algo.name)(cfg, make_spec_env(cfg.env, cfg.seed))
    load_state(module, state_dict, where)
    return module


def load_module(path: str | Path) -> tuple[Any, Any, dict]:
    """(module, run config, checkpoint) of the checkpoint at `path` (a file or a run directory),
    built by `build_module`. The run's callbacks are not read (`saved_config`)."""
    from ca12.checkpoints import read_checkpoint
    from ca12.config import saved_config

    where = checkpoint_path(path)
    checkpoint = read_checkpoint(where)
    cfg = saved_config(checkpoint["ca12"]["run_config"], str(where), callbacks=False)
    return build_module(cfg, checkpoint["state_dict"], where), cfg, checkpoint
