"""The comparison of runs over seeds: per env (and, when every env is normalised, over all envs)
each group's estimates with intervals, the probabilities of improvement of each pair, performance
profiles and sample-efficiency curves (`compare` -> `Comparison`, a tree of dataclasses)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ca12.analysis.runs import EVAL, METRICS, ROLLOUT, RunData, final_return, find_runs, group_runs
from ca12.analysis.statistics import (
    ESTIMATES,
    Interval,
    aggregates,
    interval_estimate,
    iqm_per_point,
    probability_of_improvement,
    require_rliable,
    seeded_numpy,
)
from ca12.errors import UsageError

ALL_ENVS = "all envs"
ANY_ENV = "*"  # the key of a per-env option's value for every env not named


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


def _table(
    name: str,
    envs: list[str],
    scoring: str,
    normalised: bool,
    target: float | None,
    matrices: dict[str, np.ndarray],
    runs: dict[str, list[RunData]],
    reps: int,
    seed: int,
    confidence: float,
) -> Table:
    """A table's estimates, probabilities of improvement and performance profiles from each
    group's [runs, envs] score matrix."""
    from rliable import library

    names, func = aggregates(target, len(envs))
    groups = []
    for label, matrix in matrices.items():
        estimates = dict(zip(names, interval_estimate(matrix, func, reps, seed, confidence)))
        groups.append(GroupResult(label, [str(r.path) for r in runs[label]], [r.seed for r in runs[label]], matrix.tolist(), estimates))
    groups.sort(key=lambda g: (-g.estimates["IQM"].value, g.algo))
    improvements = [
        Improvement(x.algo, y.algo, interval_estimate([matrices[x.algo], matrices[y.algo]], probability_of_improvement, reps, seed, confidence)[0])
        for x, y in combinations(groups, 2)
    ]
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


def _curves(table: Table, runs: dict[str, list[RunData]], column: str, scale: Callable, points: int, reps: int, seed: int, confidence: float) -> None:
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
        table.curves.append(
            Curve(
                group.algo,
                [e.value for e in estimates],
                [e.low for e in estimates] if bounded else None,
                [e.high for e in estimates] if bounded else None,
            )
        )


def compare(
    paths: Iterable[str | Path],
    *,
    metric: str = "eval",
    last: int | None = None,
    normalise: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
    target: float | Mapping[str, float] | None = None,
    reps: int = 2000,
    seed: int = 0,
    points: int = 25,
    confidence: float = 0.95,
) -> Comparison:
    """Compare the runs at or below `paths` (see `ca12.compare`'s module docstring for every choice).

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
        table = _table(
            env,
            [env],
            _scoring(column, last, without_eval if column != METRICS[metric] else 0, bounds),
            bounds is not None,
            gamma,
            matrices,
            by_label,
            reps,
            seed,
            confidence,
        )
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
    return Comparison(
        tables + ([aggregate] if aggregate else []),
        reps,
        seed,
        confidence,
        wandb={k.removeprefix("logger.wandb."): v for k, v in wandb.items() if k.startswith("logger.wandb.")} if wandb else None,
        notes=notes,
    )


def _aggregate_table(
    tables: list[Table],
    env_matrices: dict[str, dict[str, np.ndarray]],
    groups: dict[str, dict[str, list[RunData]]],
    reps: int,
    seed: int,
    confidence: float,
) -> Table | None:
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
    return _table(
        ALL_ENVS,
        envs,
        "each env's normalised score; runs x envs matrices",
        True,
        targets.pop() if len(targets) == 1 else None,
        matrices,
        runs,
        reps,
        seed,
        confidence,
    )


# --- file names ---------------------------------------------------------------------------------
def slug(name: str) -> str:
    """A table's file-name stem: `vmas/navigation` -> `vmas-navigation`."""
    return name.replace("/", "-").replace(" ", "-")
