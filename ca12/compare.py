"""`python -m ca12.compare`: compare algorithms over seeds with rliable's interval estimates.

    python -m ca12.compare DIR... [--out DIR] [--metric eval|final] [--last K]
                           [--normalise [ENV=]MIN,MAX]... [--target [ENV=]VALUE]...
                           [--reps N] [--seed N] [--points N] [--wandb | --no-wandb]

Each DIR is a run directory or any folder above runs (a sweep): every folder holding config.yaml
and metrics.csv is a run (its own subfolders are not searched, nor are `wandb/` folders). Runs
are grouped by algorithm x env (`algo.name` x `env.family/env.task`), the seeds of a group being
its runs. Runs of one algorithm and env whose configs differ in more than the seed (and the
`logger`, `callbacks` and `checkpoint` sections), e.g. a sweep over `algo.lr`, are kept apart
and labelled by what differs (`mappo algo.lr=0.001`); two runs of a group with the same seed
are refused, as they are not independent samples.

A run's score is its final return, the mean of the last K values of
- `--metric eval` (default): `eval/episode_reward_mean`, K = 1 by default. In an env where some
  run logged no evaluation, every run is scored by its rollout return instead (one measure per
  env; the report says so).
- `--metric final`: `rollout/episode_reward_mean`, the return of the training episodes, K = the
  last 10 % of the run's iterations (at least 1) by default.
`--last K` sets K. `--normalise MIN,MAX` maps every env's scores and curves to
(x - MIN) / (MAX - MIN), `--normalise ENV=MIN,MAX` one env's (`--normalise=-1,1` for a negative
MIN). The optimality gap, gamma - mean(min(score, gamma)), needs a target gamma: `--target`
(`ENV=VALUE` for one env), by default 1.0 in a normalised env; a raw env without a target has
no optimality gap.

The statistics are rliable's (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical
Precipice"), none re-implemented: per group the IQM, mean, median and optimality gap with
stratified-bootstrap intervals (`library.get_interval_estimates`; rliable's median is the median
over tasks of the per-task means, so an env's table, one task, gives it the transposed score
matrix: the median over runs); per env and pair of
algorithms the probability of improvement P(X > Y) (`metrics.probability_of_improvement`, the
Mann-Whitney U statistic over n x m, with the independent stratified bootstrap rliable uses for
a pair of score arrays); performance profiles (`library.create_performance_profile`: the
fraction of runs whose score exceeds tau); and sample-efficiency curves, the IQM over seeds of
the runs' return curves interpolated linearly on a common frame grid (`--points` frames from the
env's latest first frame to its earliest last frame, so no curve is extrapolated), with
intervals. When every env is normalised and each algorithm has as many runs in every env, an
"all envs" table aggregates over the envs as rliable does (runs x tasks score matrices).
rliable's bootstraps draw from NumPy's global generator (`np.random.choice`, whatever
`random_state` says), so every estimate runs with it seeded by `--seed` and restored after: the
same runs give the same intervals, and `np.random.seed(seed)` before rliable's call reproduces
any of them.

Writes to `--out` (default `<first DIR>/compare`): report.md (a table per env: algorithm, runs,
IQM, mean, median, optimality gap with intervals, then the probabilities of improvement, the
plots and the runs), summary.json (`Comparison.to_dict()`), and per env `<family>-<task>_curves.png`,
`_intervals.png` and `_profile.png`. With `--wandb`, or when the runs logged to W&B (their config
has `logger.wandb`; `--no-wandb` skips it), a new W&B run (job type `compare`, in the runs'
project) gets the table and the plots, offline when W&B cannot be reached, as `ca12.fit` does.

Intervals need two runs: a group of one run gets point estimates without intervals, and the
report (and a one-line note on stderr) says which groups (`Comparison.notes`); a first look at
single-seed runs is still a comparison worth writing.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from itertools import combinations
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from ca12.errors import UsageError
from ca12.fit import OneLineParser

FRAMES, ROLLOUT, EVAL = "time/frames", "rollout/episode_reward_mean", "eval/episode_reward_mean"
METRICS = {"eval": EVAL, "final": ROLLOUT}
ESTIMATES = ("IQM", "mean", "median", "optimality gap")
ALL_ENVS = "all envs"
ANY_ENV = "*"  # the key of a per-env option's value for every env not named
# Config entries that do not change what a run learns: runs differing only there share a group.
NOT_VARIANTS = ("seed", "logger", "callbacks", "checkpoint")


# --- reading runs -------------------------------------------------------------------------------
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
    from ca12.tracking import read_metrics_rows
    from ca12.untrusted import read_config_file

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
                raise UsageError(f"runs '{twin.path}' and '{run.path}' are both {label} on {env} with seed {run.seed}: "
                                 f"the seeds of a group must differ (pass one of them)")
            group.append(run)
    return dict(groups)


def final_return(run: RunData, column: str, last: int | None = None) -> float:
    """The mean of the run's last `last` values of `column` (default: 1 for evaluation returns,
    the last 10 % of the rows, at least 1, for rollout returns)."""
    values = run.series[column][:, 1]
    k = last or (1 if column == EVAL else max(1, math.ceil(0.1 * len(values))))
    return float(np.mean(values[-k:]))


# --- estimates ----------------------------------------------------------------------------------
def require_rliable() -> None:
    """A one-line `UsageError` unless rliable imports (its `arch` dependency fails to import
    under pandas 3 with a TypeError)."""
    try:
        importlib.import_module("rliable.library")
    except ImportError:
        raise UsageError("ca12.compare needs the rliable package: pip install 'rliable>=1.2' 'pandas<3'") from None
    except TypeError as exc:
        raise UsageError(f"rliable does not import ({exc}); its arch dependency needs pandas<3: pip install 'pandas<3'") from None


@contextmanager
def seeded_numpy(seed: int) -> Iterator[None]:
    """NumPy's global generator seeded with `seed` inside the block and restored after: rliable's
    stratified bootstraps draw their indices from it with `np.random.choice`."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


@dataclass
class Interval:
    """A point estimate and its bootstrap interval (none for a single run)."""

    value: float
    low: float | None = None
    high: float | None = None

    def __str__(self) -> str:
        return f"{self.value:.3f}" if self.low is None else f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def interval_estimate(scores: np.ndarray | list[np.ndarray], func: Callable[..., np.ndarray], reps: int, seed: int,
                      confidence: float = 0.95) -> list[Interval]:
    """`func`'s point estimates on `scores` (a [runs, tasks, ...] array, or a list of them for a
    function of several algorithms' scores) with rliable's stratified-bootstrap percentile
    intervals, `reps` resamples drawn after `np.random.seed(seed)`; no interval with fewer than
    2 runs."""
    from rliable import library

    arrays = scores if isinstance(scores, list) else [scores]
    if min(len(a) for a in arrays) < 2:
        return [Interval(float(v)) for v in np.atleast_1d(func(*arrays))]
    with seeded_numpy(seed):
        points, intervals = library.get_interval_estimates({"scores": scores}, func, reps=reps, confidence_interval_size=confidence)
    low, high = intervals["scores"]  # [2, estimates]
    return [Interval(float(v), float(lo), float(hi)) for v, lo, hi in zip(np.atleast_1d(points["scores"]), low, high)]


def run_median(scores: np.ndarray) -> float:
    """The median of one task's run scores, [runs, 1]: rliable's median is across tasks of the
    per-task means, so on one task it would repeat the mean; given the transposed matrix it
    takes the median across runs instead."""
    from rliable import metrics

    return metrics.aggregate_median(scores.T)


def aggregates(target: float | None, tasks: int) -> tuple[list[str], Callable[[np.ndarray], np.ndarray]]:
    """The estimate names and a function of a [runs, tasks] score matrix giving rliable's IQM,
    mean, median (across runs on one task, across the tasks' means on several) and (with a
    target) optimality gap."""
    from rliable import metrics

    functions = [metrics.aggregate_iqm, metrics.aggregate_mean, run_median if tasks == 1 else metrics.aggregate_median]
    if target is not None:
        functions.append(partial(metrics.aggregate_optimality_gap, gamma=target))
    return list(ESTIMATES[:len(functions)]), lambda scores: np.array([f(scores) for f in functions])


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """rliable's P(X > Y) averaged over tasks, as the 1-D array its bootstrap wants."""
    from rliable import metrics

    return np.array([metrics.probability_of_improvement(x, y)])


def iqm_per_point(scores: np.ndarray) -> np.ndarray:
    """rliable's IQM of a [runs, tasks, points] array at each point (a sample-efficiency curve).

    rliable's `aggregate_iqm` is scipy's 25 % `trim_mean` over all runs and tasks; this is the
    same call over runs and tasks at every point at once (rliable's examples loop over the
    points): scipy's wrapper costs ~0.1-0.3 ms a call, which one call per point made the
    curves' bootstrap take minutes. Tested equal to the loop.
    """
    import scipy.stats

    return scipy.stats.trim_mean(scores.reshape(-1, scores.shape[-1]), proportiontocut=0.25, axis=0)


# --- the comparison as data ---------------------------------------------------------------------
@dataclass
class GroupResult:
    """One algorithm in one table.

    Attributes:
        algo: the group's label (the algorithm, and the config entries it differs in).
        runs: run directories, in the order of `scores`' rows (all envs' runs for "all envs").
        seeds: their seeds.
        scores: [runs][envs] the scores the estimates come from (one column per env of the table).
        estimates: IQM, mean, median and, with a target, optimality gap.
    """

    algo: str
    runs: list[str]
    seeds: list[int]
    scores: list[list[float]]
    estimates: dict[str, Interval]


@dataclass
class Improvement:
    """P(X > Y): the probability that a run of X scores above a run of Y (0.5: even)."""

    x: str
    y: str
    probability: Interval


@dataclass
class Curve:
    """IQM over seeds of an algorithm's return at each frame of its table's grid, with intervals."""

    algo: str
    iqm: list[float]
    low: list[float] | None
    high: list[float] | None


@dataclass
class Profile:
    """Fraction of runs scoring above each tau of its table's grid, with intervals."""

    algo: str
    fraction: list[float]
    low: list[float] | None
    high: list[float] | None


@dataclass
class Table:
    """The comparison on one env (or, `name == ALL_ENVS`, aggregated over normalised envs).

    Attributes:
        scoring: how a run's score was computed, in words.
        groups: best IQM first.
        improvements: P(X > Y) for each pair, X the one with the higher IQM.
        frames: the curves' common frame grid (empty: the runs share no frame range, or "all envs").
    """

    name: str
    envs: list[str]
    scoring: str
    normalised: bool
    target: float | None
    groups: list[GroupResult]
    improvements: list[Improvement]
    frames: list[float] = field(default_factory=list)
    curves: list[Curve] = field(default_factory=list)
    taus: list[float] = field(default_factory=list)
    profiles: list[Profile] = field(default_factory=list)


@dataclass
class Comparison:
    """What `compare` found: one `Table` per env (then "all envs" when it applies), the
    bootstrap's settings, and the W&B settings of the runs that logged to W&B (else None)."""

    tables: list[Table]
    reps: int
    seed: int
    confidence: float
    wandb: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)  # what the reader must know first (groups of one run)

    def table(self, name: str) -> Table:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(f"no table '{name}'; tables: {', '.join(t.name for t in self.tables)}")

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per table and algorithm (for a DataFrame or a W&B Table)."""
        rows = []
        for table in self.tables:
            for group in table.groups:
                row: dict[str, Any] = {"env": table.name, "algorithm": group.algo, "runs": len(group.scores)}
                for name in ESTIMATES:
                    estimate = group.estimates.get(name, Interval(math.nan))
                    row.update({name: estimate.value, f"{name} low": estimate.low, f"{name} high": estimate.high})
                rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- compare ------------------------------------------------------------------------------------
def _per_env(option: Any, env: str) -> Any:
    return option.get(env, option.get(ANY_ENV)) if isinstance(option, Mapping) else option


def _check_envs(option: Any, envs: Iterable[str], flag: str) -> None:
    unknown = sorted(set(option) - set(envs) - {ANY_ENV}) if isinstance(option, Mapping) else []
    if unknown:
        raise UsageError(f"{flag} names {unknown[0]}, which no run trained on; envs: {', '.join(sorted(envs))}")


def _normaliser(bounds: Sequence[float] | None, env: str) -> Callable[[np.ndarray], np.ndarray]:
    if bounds is None:
        return lambda x: x
    low, high = map(float, bounds)
    if not high > low:
        raise UsageError(f"--normalise for {env}: MIN must be below MAX (got {low}, {high})")
    return lambda x: (x - low) / (high - low)


def _scoring(column: str, last: int | None, fallback: int, bounds: Sequence[float] | None) -> str:
    if last:
        text = f"{column}, each run's mean of its last {last} values"
    else:
        text = f"{column}, each run's last value" if column == EVAL else f"{column}, each run's mean over its last 10 % of iterations (at least 1)"
    if fallback:
        text += f" (rollout returns: {fallback} run(s) logged no evaluation)"
    if bounds is not None:
        text += f", normalised from [{bounds[0]:g}, {bounds[1]:g}] to [0, 1]"
    return text


def _table(name: str, envs: list[str], scoring: str, normalised: bool, target: float | None,
           matrices: dict[str, np.ndarray], runs: dict[str, list[RunData]], reps: int, seed: int, confidence: float) -> Table:
    """A table's estimates, probabilities of improvement and performance profiles from each
    group's [runs, envs] score matrix."""
    from rliable import library

    names, func = aggregates(target, len(envs))
    groups = []
    for label, matrix in matrices.items():
        estimates = dict(zip(names, interval_estimate(matrix, func, reps, seed, confidence)))
        groups.append(GroupResult(label, [str(r.path) for r in runs[label]], [r.seed for r in runs[label]], matrix.tolist(), estimates))
    groups.sort(key=lambda g: (-g.estimates["IQM"].value, g.algo))
    improvements = [Improvement(x.algo, y.algo, interval_estimate([matrices[x.algo], matrices[y.algo]], probability_of_improvement,
                                                                  reps, seed, confidence)[0])
                    for x, y in combinations(groups, 2)]
    everything = np.concatenate([m.ravel() for m in matrices.values()])
    low, high = (min(everything.min(), 0.0), max(everything.max(), 1.0)) if normalised else (everything.min(), everything.max())
    taus = np.linspace(low, high, 101) if high > low else np.linspace(low - 0.5, low + 0.5, 101)
    profiles = []
    for group in groups:
        with seeded_numpy(seed):
            fraction, cis = library.create_performance_profile({0: matrices[group.algo]}, taus, reps=reps, confidence_interval_size=confidence)
        ci = cis[0].tolist() if len(group.scores) >= 2 else [None, None]
        profiles.append(Profile(group.algo, fraction[0].tolist(), *ci))
    return Table(name, envs, scoring, normalised, target, groups, improvements, taus=taus.tolist(), profiles=profiles)


def _curves(table: Table, runs: dict[str, list[RunData]], column: str, scale: Callable, points: int, reps: int, seed: int,
            confidence: float) -> None:
    """Fill the table's sample-efficiency curves: each run's return curve interpolated linearly
    on `points` frames from the latest first frame to the earliest last frame of the env's runs."""
    series = {label: [r.series[column] for r in members] for label, members in runs.items()}
    start = max(s[0, 0] for curves in series.values() for s in curves)
    end = min(s[-1, 0] for curves in series.values() for s in curves)
    if start > end:
        return
    grid = np.linspace(start, end, points) if end > start else np.array([end])
    table.frames = grid.tolist()
    for group in table.groups:
        curves = np.stack([np.interp(grid, s[:, 0], scale(s[:, 1])) for s in series[group.algo]])[:, None, :]  # [runs, 1, points]
        estimates = interval_estimate(curves, iqm_per_point, reps, seed, confidence)
        bounded = estimates[0].low is not None
        table.curves.append(Curve(group.algo, [e.value for e in estimates],
                                  [e.low for e in estimates] if bounded else None, [e.high for e in estimates] if bounded else None))


def compare(paths: Iterable[str | Path], *, metric: str = "eval", last: int | None = None,
            normalise: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
            target: float | Mapping[str, float] | None = None, reps: int = 2000, seed: int = 0, points: int = 25,
            confidence: float = 0.95) -> Comparison:
    """Compare the runs at or below `paths` (see the module's docstring for every choice).

    Args:
        metric: "eval" (evaluation returns, rollout returns in an env where a run has none) or
            "final" (rollout returns).
        last: K, the number of final values a score averages (default 1 for evaluation, the last
            10 % of the iterations for rollout returns).
        normalise: (MIN, MAX) for every env, or {env: (MIN, MAX)} (key "*": the other envs).
        target: the optimality gap's gamma, for every env or {env: gamma}; default 1.0 in a
            normalised env, none in a raw one.
        reps: bootstrap resamples; seed: NumPy's global seed before each bootstrap.
        points: frames of the sample-efficiency curves' common grid.

    Raises:
        UsageError: no runs, unreadable runs, bad options. A group of one run is no error: its
            estimates have no interval, and `Comparison.notes` says so.
    """
    if metric not in METRICS:
        raise UsageError(f"unknown --metric '{metric}'; choose one of: {', '.join(METRICS)}")
    for flag, value, least in (("--last", last, 1), ("--reps", reps, 1), ("--points", points, 1)):
        if value is not None and value < least:
            raise UsageError(f"{flag} must be at least {least} (got {value})")
    if not 0 < confidence < 1:
        raise UsageError(f"confidence must be in (0, 1) (got {confidence})")
    require_rliable()
    runs = find_runs(paths)
    groups = group_runs(runs)
    _check_envs(normalise, groups, "--normalise")
    _check_envs(target, groups, "--target")
    tables, env_matrices = [], {}
    for env, by_label in groups.items():
        members = [run for group in by_label.values() for run in group]
        without_eval = sum(EVAL not in run.series for run in members)
        column = METRICS[metric] if not (metric == "eval" and without_eval) else ROLLOUT
        missing = next((run for run in members if column not in run.series), None)
        if missing is not None:
            raise UsageError(f"'{missing.path / 'metrics.csv'}' has no {column} values")
        bounds = _per_env(normalise, env)
        scale = _normaliser(bounds, env)
        gamma = _per_env(target, env)
        gamma = 1.0 if gamma is None and bounds is not None else gamma
        matrices = {label: np.array([[scale(final_return(run, column, last))] for run in group]) for label, group in by_label.items()}
        table = _table(env, [env], _scoring(column, last, without_eval if column != METRICS[metric] else 0, bounds),
                       bounds is not None, gamma, matrices, by_label, reps, seed, confidence)
        _curves(table, by_label, column, scale, points, reps, seed, confidence)
        tables.append(table)
        env_matrices[env] = matrices
    single = [(table.name, group.algo) for table in tables for group in table.groups if len(group.scores) < 2]
    aggregate = _aggregate_table(tables, env_matrices, groups, reps, seed, confidence)
    wandb = next((run.config for run in runs if run.config.get("logger.wandb.project") is not None), None)
    notes = []
    if single:
        env, algo = single[0]
        more = f" (and {len(single) - 1} more group(s))" if len(single) > 1 else ""
        notes.append(f"{algo} on {env} has a single run{more}: point estimates only; intervals need at least 2 seeds per algorithm and env")
    return Comparison(tables + ([aggregate] if aggregate else []), reps, seed, confidence,
                      wandb={k.removeprefix("logger.wandb."): v for k, v in wandb.items() if k.startswith("logger.wandb.")} if wandb else None,
                      notes=notes)


def _aggregate_table(tables: list[Table], env_matrices: dict[str, dict[str, np.ndarray]], groups: dict[str, dict[str, list[RunData]]],
                     reps: int, seed: int, confidence: float) -> Table | None:
    """The "all envs" table when there are several envs, all normalised, and every algorithm ran
    as many seeds in each (rliable's runs x tasks matrices); None otherwise."""
    labels = set(env_matrices[tables[0].name])
    if len(tables) < 2 or not all(t.normalised for t in tables) or any(set(m) != labels for m in env_matrices.values()):
        return None
    if any(len({len(env_matrices[t.name][label]) for t in tables}) > 1 for label in labels):
        return None
    envs = [t.name for t in tables]
    matrices = {label: np.concatenate([env_matrices[env][label] for env in envs], axis=1) for label in sorted(labels)}  # [runs, envs]
    runs = {label: [run for env in envs for run in groups[env][label]] for label in labels}
    targets = {t.target for t in tables}
    return _table(ALL_ENVS, envs, "each env's normalised score; runs x envs matrices", True, targets.pop() if len(targets) == 1 else None,
                  matrices, runs, reps, seed, confidence)


# --- outputs ------------------------------------------------------------------------------------
def slug(name: str) -> str:
    """A table's file-name stem: `vmas/navigation` -> `vmas-navigation`."""
    return name.replace("/", "-").replace(" ", "-")


def markdown(comparison: Comparison, images: Mapping[str, list[str]] | None = None) -> str:
    """The report: per table its estimates, probabilities of improvement and (given) image
    links; then the runs with their scores."""
    n_runs = len({run for t in comparison.tables if t.name != ALL_ENVS for g in t.groups for run in g.runs})
    lines = ["# ca12 comparison", "",
             f"{n_runs} runs. Intervals: {comparison.confidence:.0%} stratified bootstrap (rliable), "
             f"{comparison.reps} resamples, NumPy seed {comparison.seed}. IQM: the mean of the middle 50 % of the runs' scores; "
             "median: of the runs' scores in an env, of the envs' mean scores in all envs; optimality gap: mean shortfall below the target.", ""]
    lines += [line for note in comparison.notes for line in (f"**Note:** {note}.", "")]
    for table in comparison.tables:
        gap = f"optimality gap (target {table.target:g})" if table.target is not None else "optimality gap"
        lines += [f"## {table.name}", "", f"Score: {table.scoring}.", "",
                  f"| algorithm | runs | IQM | mean | median | {gap} |", "|---|---:|---|---|---|---|"]
        for group in table.groups:
            runs = f"{len(group.scores)} per env" if table.name == ALL_ENVS else str(len(group.scores))
            cells = [str(group.estimates[name]) if name in group.estimates else "n/a (no target)" for name in ESTIMATES]
            lines.append(f"| {group.algo} | {runs} | " + " | ".join(cells) + " |")
        if table.improvements:
            lines += ["", "Probability of improvement:", "", "| X | Y | P(X > Y) |", "|---|---|---|"]
            lines += [f"| {i.x} | {i.y} | {i.probability} |" for i in table.improvements]
        if table.name != ALL_ENVS and not table.frames:
            lines += ["", "No learning curves: the runs share no frame range."]
        if images and images.get(table.name):
            lines += [""] + [f"![{Path(image).stem}]({image})" for image in images[table.name]]
        lines.append("")
    lines += ["## Runs", "", "| env | algorithm | seed | score | run |", "|---|---|---:|---:|---|"]
    for table in comparison.tables:
        if table.name != ALL_ENVS:
            for group in table.groups:
                lines += [f"| {table.name} | {group.algo} | {s} | {score[0]:.4f} | {run} |"
                          for run, s, score in zip(group.runs, group.seeds, group.scores)]
    return "\n".join(lines) + "\n"


def write_plots(comparison: Comparison, out: Path) -> dict[str, list[str]]:
    """Per table, the PNGs (rliable's plotting functions, drawn with matplotlib): learning curves
    with interval bands, interval estimates, performance profiles. Returns table -> file names."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from rliable import plot_utils

    labels = sorted({g.algo for t in comparison.tables for g in t.groups})
    colors = dict(zip(labels, sns.color_palette("colorblind", n_colors=len(labels))))
    written: dict[str, list[str]] = {}

    def save(fig, table: Table, kind: str) -> None:
        name = f"{slug(table.name)}_{kind}.png"
        fig.savefig(out / name, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.setdefault(table.name, []).append(name)

    for table in comparison.tables:
        algos = [g.algo for g in table.groups]
        unit = "normalised score" if table.normalised else "return"
        if table.curves:
            fig, ax = plt.subplots(figsize=(7, 5))
            bands = {c.algo: np.array([c.low, c.high]) if c.low is not None else np.array([c.iqm, c.iqm]) for c in table.curves}
            plot_utils.plot_sample_efficiency_curve(np.array(table.frames), {c.algo: np.array(c.iqm) for c in table.curves}, bands,
                                                    algorithms=algos, colors=colors, ax=ax, xlabel="frames", ylabel=f"IQM {unit}",
                                                    labelsize="large", ticklabelsize="large", marker="", legend=True, legendsize="medium")
            ax.set_title(table.name)
            save(ax.figure, table, "curves")
        names = [n for n in ESTIMATES if n in table.groups[0].estimates]
        points = {g.algo: np.array([g.estimates[n].value for n in names]) for g in table.groups}
        intervals = {g.algo: np.array([[g.estimates[n].low if g.estimates[n].low is not None else g.estimates[n].value,
                                        g.estimates[n].high if g.estimates[n].high is not None else g.estimates[n].value] for n in names]).T
                     for g in table.groups}
        height = max(1.6, 0.45 * len(algos))  # inches; rliable's default rows are too short for few algorithms
        fig, _ = plot_utils.plot_interval_estimates(points, intervals, metric_names=names, algorithms=algos, colors=colors,
                                                   row_height=height / len(algos), xlabel_y_coordinate=-0.55 / height,
                                                   xlabel=f"{table.name}: {unit}")
        save(fig, table, "intervals")
        fig, ax = plt.subplots(figsize=(7, 5))
        plot_utils.plot_performance_profiles({p.algo: np.array(p.fraction) for p in table.profiles}, np.array(table.taus),
                                             {p.algo: np.array([p.low, p.high]) for p in table.profiles if p.low is not None},
                                             ax=ax, colors=colors, xlabel=rf"{unit} ($\tau$)", legend=True, legendsize="medium",
                                             labelsize="large", ticklabelsize="large")
        ax.set_title(table.name)
        save(ax.figure, table, "profile")
    return written


def write_outputs(comparison: Comparison, out: str | Path) -> list[Path]:
    """report.md, summary.json and the PNGs in `out` (created); returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images = write_plots(comparison, out)
    (out / "report.md").write_text(markdown(comparison, images))
    (out / "summary.json").write_text(json.dumps(comparison.to_dict(), indent=1))
    return [out / "report.md", out / "summary.json"] + [out / name for names in images.values() for name in names]


def log_to_wandb(comparison: Comparison, files: list[Path], out: Path) -> str | None:
    """Log the table and the plots to a new W&B run (job type `compare`) in the project of the
    runs that logged to W&B, or conf/logger/wandb.yaml's; its mode is resolved as ca12.fit's
    (`ca12.tracking.wandb_mode`). Returns the W&B run's folder, None when W&B is disabled."""
    try:
        import wandb
    except ImportError:
        raise UsageError("--wandb needs the wandb package: pip install wandb") from None
    from omegaconf import OmegaConf

    from ca12.paths import conf_dir
    from ca12.tracking import wandb_mode

    settings = comparison.wandb or OmegaConf.to_container(OmegaConf.load(conf_dir() / "logger" / "wandb.yaml").wandb)
    mode = wandb_mode(settings.get("mode") or "auto")
    if mode == "disabled":
        return None
    rows = comparison.rows()
    columns = list(rows[0])
    run = wandb.init(project=settings["project"], entity=settings.get("entity"), dir=str(out), mode=mode, job_type="compare",
                     name=f"compare-{out.parent.name}", config={"reps": comparison.reps, "seed": comparison.seed, "confidence": comparison.confidence},
                     settings=wandb.Settings(silent=True, init_timeout=60))
    run.log({"compare/estimates": wandb.Table(columns=columns, data=[[row[c] for c in columns] for row in rows]),
             **{f"compare/{path.stem}": wandb.Image(str(path)) for path in files if path.suffix == ".png"}})
    folder = str(Path(run.dir).parent)
    run.finish()
    return folder


# --- command line -------------------------------------------------------------------------------
def _options(specs: list[str], parse: Callable[[str], Any], flag: str, form: str) -> dict[str, Any] | None:
    """`[ENV=]VALUE` options as {env or "*": parsed value}."""
    if not specs:
        return None
    options = {}
    for spec in specs:
        env, sep, value = spec.rpartition("=")
        try:
            options[env if sep else ANY_ENV] = parse(value)
        except ValueError:
            raise UsageError(f"{flag} takes {form}, e.g. {flag} vmas/navigation={'0,1' if ',' in form else '1'}; got '{spec}'") from None
    return options


def _bounds(text: str) -> tuple[float, float]:
    low, high = (float(v) for v in text.split(","))  # ValueError unless exactly two numbers
    return low, high


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="python -m ca12.compare", description="Compare ca12 runs over seeds with rliable's interval estimates.")
    parser.add_argument("paths", nargs="+", type=Path, metavar="DIR", help="run directories, or folders to search for runs (config.yaml + metrics.csv)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default <first DIR>/compare)")
    parser.add_argument("--metric", choices=list(METRICS), default="eval",
                        help="eval: evaluation returns (rollout returns in an env where a run logged none); final: rollout returns")
    parser.add_argument("--last", type=int, default=None, metavar="K",
                        help="a score is the mean of the last K values (default 1 evaluation, or the last 10%% of iterations' rollout returns)")
    parser.add_argument("--normalise", action="append", default=[], metavar="[ENV=]MIN,MAX",
                        help="normalise scores to (x - MIN) / (MAX - MIN), for every env or one (repeat); --normalise=-1,1 for a negative MIN")
    parser.add_argument("--target", action="append", default=[], metavar="[ENV=]VALUE",
                        help="the optimality gap's target (default 1.0 in a normalised env, none in a raw one)")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="NumPy seed of every bootstrap (default 0)")
    parser.add_argument("--points", type=int, default=25, help="frames on the learning curves' common grid (default 25)")
    parser.add_argument("--wandb", action=argparse.BooleanOptionalAction, default=None,
                        help="log the table and plots to a new W&B run (default: when the runs logged to W&B)")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        normalise = _options(args.normalise, _bounds, "--normalise", "[ENV=]MIN,MAX")
        target = _options(args.target, float, "--target", "[ENV=]VALUE")
        comparison = compare(args.paths, metric=args.metric, last=args.last, normalise=normalise, target=target,
                             reps=args.reps, seed=args.seed, points=args.points)
        for note in comparison.notes:
            print(f"ca12.compare: note: {note}", file=sys.stderr)
        out = args.out or args.paths[0] / "compare"
        files = write_outputs(comparison, out)
        print(markdown(comparison))
        if args.wandb or (args.wandb is None and comparison.wandb is not None):
            folder = log_to_wandb(comparison, files, out)
            if folder:
                print(f"ca12.compare: logged to W&B ({folder})")
        print(f"ca12.compare: report {out / 'report.md'}, summary.json and {len(files) - 2} plots in {out}")
    except UsageError as exc:
        print(f"ca12.compare: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
