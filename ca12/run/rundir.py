"""A run on disk, in one place: its directory (`config.yaml`, `metrics.csv`, `checkpoints/`,
`wandb/`), the run index `--resume last` reads, and its checkpoints, read at the boundary and
rebuilt into a module, written once for every reader (`ca12.fit --resume`, `ca12.evaluate`,
`ca12.load`, PBT's members, benchmarks and env families that score a trained run).

A checkpoint may come from elsewhere, so it is unpickled with PyTorch's safe loader
(`weights_only=True`) and nothing in it can run code. That loader accepts only tensors, numbers,
strings, containers and a few torch types, so everything ca12 saves (RNG states, replay buffers,
collector counters, the config) is kept in such plain values; `ca12.untrusted.unsafe_entry` finds
what is not.
Its run config is checked as data and validated (`ca12.run.config.saved_config`: no
interpolation, no class to import, an env task its family knows), and only then is the algorithm
it names built, from ca12's own registry. A missing, truncated or foreign file, or weights that do
not fit that config, are a `UsageError` with one line, never a deep traceback.

torch is imported where a checkpoint is read, not here: a fresh run's refusals answer without it.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from ca12.algos import algo_class
from ca12.envs import make_spec_env
from ca12.errors import UsageError
from ca12.run.config import saved_config
from ca12.untrusted import read_config_file

# Files that mark a directory as a sweep (above its runs) or a PBT population (its members' parent).
SWEEP_MANIFEST = "sweep.json"
POPULATION_SPEC = "pbt.json"
# Lightning's DDP launcher re-runs the command for ranks > 0; they read the run directory here.
RUN_DIR_VAR = "CA12_RUN_DIR"


# --- run directories ----------------------------------------------------------------------------
def default_run_dir(algo: str, env: str) -> Path:
    family, _, task = env.partition("/")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / algo / f"{family}-{task}" / stamp


def holds_run(path: Path) -> bool:
    """A directory holds a run once it has a checkpoint (a config.yaml alone is a run that
    never started)."""
    return path.is_dir() and any((path / "checkpoints").glob("*.ckpt"))


# Every run started from this working directory, wherever its run directory is (one path a
# line), so `--resume last` finds runs started with --run-dir too.
RUN_INDEX = Path("runs") / "index.txt"


def remember_run(run_dir: Path) -> None:
    RUN_INDEX.parent.mkdir(parents=True, exist_ok=True)
    with open(RUN_INDEX, "a") as f:
        f.write(f"{run_dir.resolve()}\n")


def known_runs(algo: str, env: str) -> list[Path]:
    """Last checkpoints of the runs of `algo` on `env` under runs/ and in the run index."""
    family, _, task = env.partition("/")
    paths = set((Path("runs") / algo / f"{family}-{task}").glob("*/checkpoints/last.ckpt"))
    if RUN_INDEX.is_file():
        for run in map(Path, RUN_INDEX.read_text().splitlines()):
            if (run / "checkpoints" / "last.ckpt").is_file() and (run / "config.yaml").is_file():
                try:  # read as data; a run whose config.yaml cannot be is not the one asked for
                    saved = read_config_file(run / "config.yaml")
                    found = (saved["algo"]["name"], saved["env"]["family"], saved["env"]["task"])
                except (UsageError, KeyError, TypeError):
                    continue
                if found == (algo, family, task):
                    paths.add(run / "checkpoints" / "last.ckpt")
    return sorted((p for p in paths if started_alone(p.parent.parent)), key=lambda p: p.stat().st_mtime)


def started_alone(run: Path) -> bool:
    """Whether `run` was started as a single run: not a member of a sweep (a directory above it
    holds the sweep's manifest) nor of a PBT population (its parent holds the population's spec).
    `--resume last` means the user's own last run; a member continues through its sweep or
    population, which keeps its manifest in step."""
    run = run.resolve()
    return not (run.parent / POPULATION_SPEC).is_file() and not any((above / SWEEP_MANIFEST).is_file() for above in run.parents)


def find_resume_checkpoint(resume: str, algo: str | None, env: str) -> Path:
    """The checkpoint file that `--resume` names (see the module docstring)."""
    if resume == "last":
        if algo is None:
            raise UsageError("--resume last needs --algo to know which runs to look in")
        family, _, task = env.partition("/")
        candidates = known_runs(algo, env)
        if not candidates:
            raise UsageError(
                f"--resume last: no run of {algo} on {env} under runs/{algo}/{family}-{task}/ or in {RUN_INDEX} "
                "(members of sweeps and populations are not counted: resume them with --resume DIR)"
            )
        return candidates[-1]
    path = Path(resume)
    if path.is_dir():
        path = path / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise UsageError(f"--resume: no checkpoint at '{path}'")
    return path


def launched_rank() -> int:
    """This process's global rank when a launcher started it (Lightning's DDP children,
    torchrun, SLURM); 0 for the process a user started."""
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    node, local = os.environ.get("NODE_RANK", "0"), os.environ.get("LOCAL_RANK", "0")
    if local.isdigit() and int(local) > 0:
        return int(local) + (int(node) if node.isdigit() else 0)
    return 0


# --- checkpoints --------------------------------------------------------------------------------
def read_checkpoint(path: str | Path, mmap: bool = False) -> dict:
    """A whole Lightning checkpoint written by `ca12.fit`, checked to be one.

    Its `ca12` section holds `run_config` (the resolved run config), `frames`, `iterations`
    and `wandb_id`; `state_dict` holds the module's weights. Read with `weights_only=True`: a
    file holding anything but plain values is refused before any of it is built. `mmap`: map
    its tensors rather than read them (a look at a large file).
    """
    import torch

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


# --- a module rebuilt from a checkpoint ---------------------------------------------------------
def checkpoint_path(path: str | Path) -> Path:
    """A run directory's `checkpoints/last.ckpt`, or `path` itself when it is a file."""
    path = Path(path)
    return path / "checkpoints" / "last.ckpt" if path.is_dir() else path


def check_state(module: Any, state_dict: dict, where: str | Path) -> None:
    """Refuse in one line weights that do not fit `module` (a config edited by hand, another run's
    checkpoint): a missing or unexpected entry, or a tensor of another shape. Nothing is loaded,
    so a run about to be resumed keeps the module its config built until Lightning restores it."""
    import torch

    if hasattr(module, "upgrade_state"):  # an older ca12's names for the same weights
        module.upgrade_state(state_dict)
    expected = module.state_dict()
    missing, unexpected = sorted(set(expected) - set(state_dict)), sorted(set(state_dict) - set(expected))
    shapes = [
        name
        for name, value in expected.items()
        if isinstance(value, torch.Tensor) and isinstance(state_dict.get(name), torch.Tensor) and value.shape != state_dict[name].shape
    ]
    problem = (
        f"missing {missing[0]}"
        if missing
        else f"unexpected {unexpected[0]}"
        if unexpected
        else f"{shapes[0]} is {tuple(state_dict[shapes[0]].shape)}, the model has {tuple(expected[shapes[0]].shape)}"
        if shapes
        else None
    )
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
    from ca12.seeding import isolated_rng

    with isolated_rng():  # building an env draws from global generators (VMAS's): leave the caller's alone
        module = algo_class(cfg.algo.name)(cfg, make_spec_env(cfg.env, cfg.seed))
    load_state(module, state_dict, where)
    return module


def load_module(path: str | Path) -> tuple[Any, Any, dict]:
    """(module, run config, checkpoint) of the checkpoint at `path` (a file or a run directory),
    built by `build_module`. The run's callbacks are not read (`saved_config`)."""
    where = checkpoint_path(path)
    checkpoint = read_checkpoint(where)
    cfg = saved_config(checkpoint["ca12"]["run_config"], str(where), callbacks=False)
    return build_module(cfg, checkpoint["state_dict"], where), cfg, checkpoint


def run_is_complete(cfg, saved: dict) -> bool:
    """Whether the run a checkpoint's ca12 state `saved` belongs to has trained the
    `collector.total_frames` of `cfg` (False for a fresh run: `saved` is empty)."""
    return bool(saved) and saved.get("frames", 0) >= cfg.collector.total_frames
