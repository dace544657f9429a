"""Reading ca12 runs from disk for a comparison: each run directory's identity (algorithm, env,
seed, config) from config.yaml and its return curves from metrics.csv, the search for runs below
folders, their grouping by algorithm x env (and the config entries they differ in) and their final
returns."""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ca12.errors import UsageError
from ca12.untrusted import read_config_file

FRAMES, ROLLOUT, EVAL = "time/frames", "rollout/episode_reward_mean", "eval/episode_reward_mean"
METRICS = {"eval": EVAL, "final": ROLLOUT}
# Config entries that do not change what a run learns: runs differing only there share a group.
NOT_VARIANTS = ("seed", "logger", "callbacks", "checkpoint")


@dataclass
class RunData:
    """One run directory as compare reads it.

    Attributes:
        config: the resolved config.yaml, flattened to dotted keys (`algo.lr`).
        series: per return column, the rows where it is finite: [n, 2] (frames, return).
    """

    path: Path
    algo: str
    env: str
    seed: int
    config: dict[str, Any]
    series: dict[str, np.ndarray]


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for name, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def _finite(text: str | None) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def read_run(run_dir: str | Path) -> RunData:
    """A run's identity (algorithm, env, seed, config) from config.yaml and its return curves from
    metrics.csv; a one-line `UsageError` for a missing or incomplete file."""
    from ca12.run.tracking import read_metrics_rows

    run_dir = Path(run_dir)
    config_path, metrics_path = run_dir / "config.yaml", run_dir / "metrics.csv"
    if not metrics_path.is_file():
        raise UsageError(f"run '{run_dir}' has no metrics.csv (not started yet, or not a ca12 run)")
    config = _flatten(read_config_file(config_path))  # as data: a shared run's config resolves nothing (ca12/untrusted.py)
    missing = [name for name in ("algo.name", "env.family", "env.task", "seed") if config.get(name) is None]
    if missing:
        raise UsageError(f"'{config_path}' has no {', '.join(missing)}: not a ca12 run config")
    points: dict[str, list[tuple[float, float]]] = {ROLLOUT: [], EVAL: []}
    for row in read_metrics_rows(metrics_path):
        frames = _finite(row.get(FRAMES))
        for column, curve in points.items():
            value = _finite(row.get(column))
            if frames is not None and value is not None:
                curve.append((frames, value))
    if not points[ROLLOUT] and not points[EVAL]:
        raise UsageError(f"'{metrics_path}' has no {ROLLOUT} or {EVAL} values with {FRAMES}")
    return RunData(
        path=run_dir,
        algo=str(config["algo.name"]),
        env=f"{config['env.family']}/{config['env.task']}",
        seed=int(config["seed"]),
        config=config,
        series={column: np.array(sorted(curve), dtype=float).reshape(-1, 2) for column, curve in points.items() if curve},
    )


def find_runs(paths: Iterable[str | Path]) -> list[RunData]:
    """Every run at or below `paths` (folders holding config.yaml; a run's subfolders and W&B's
    `wandb/` folders, whose runs also hold a config.yaml, are not searched), each read once."""
    paths = [Path(p) for p in paths]
    found: dict[Path, None] = {}
    for path in paths:
        if not path.is_dir():
            raise UsageError(f"'{path}' is not a directory")
        if (path / "metrics.csv").is_file() and not (path / "config.yaml").is_file():
            raise UsageError(f"run '{path}' has metrics.csv but no config.yaml")
        for root, dirs, files in os.walk(path):
            if "config.yaml" in files:
                found[Path(root).resolve()] = None
                dirs.clear()
            else:
                dirs[:] = sorted(d for d in dirs if d != "wandb")
    if not found:
        raise UsageError(f"no runs found in {', '.join(map(str, paths))} (a run is a folder holding config.yaml and metrics.csv)")
    return [read_run(_shown(run_dir)) for run_dir in found]


def _shown(path: Path) -> Path:
    """`path` relative to the working directory when it lies below it (reports name runs the way
    the command line did), else absolute."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def group_runs(runs: Sequence[RunData]) -> dict[str, dict[str, list[RunData]]]:
    """env -> group label -> runs (by seed). A label is the algorithm, followed by the config
    entries in which its runs on that env differ (`mappo algo.lr=0.001`), if any."""
    by_algo: dict[tuple[str, str], list[RunData]] = defaultdict(list)
    for run in runs:
        by_algo[run.env, run.algo].append(run)
    groups: dict[str, dict[str, list[RunData]]] = defaultdict(dict)
    for (env, algo), members in sorted(by_algo.items()):
        keys = sorted({name for run in members for name in run.config if name.split(".")[0] not in NOT_VARIANTS})
        varying = [name for name in keys if len({repr(run.config.get(name)) for run in members}) > 1]
        for run in sorted(members, key=lambda r: r.seed):
            label = " ".join([algo, *(f"{name}={run.config.get(name)}" for name in varying)])
            group = groups[env].setdefault(label, [])
            twin = next((other for other in group if other.seed == run.seed), None)
            if twin is not None:
                raise UsageError(
                    f"runs '{twin.path}' and '{run.path}' are both {label} on {env} with seed {run.seed}: "
                    f"the seeds of a group must differ (pass one of them)"
                )
            group.append(run)
    return dict(groups)


def final_return(run: RunData, column: str, last: int | None = None) -> float:
    """The mean of the run's last `last` values of `column` (default: 1 for evaluation returns,
    the last 10 % of the rows, at least 1, for rollout returns)."""
    values = run.series[column][:, 1]
    k = last or (1 if column == EVAL else max(1, math.ceil(0.1 * len(values))))
    return float(np.mean(values[-k:]))
