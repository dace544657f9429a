"""The statistics of a comparison, all rliable's (Agarwal et al. 2021): point estimates with
stratified-bootstrap percentile intervals, drawn with NumPy's global generator seeded and
restored (`seeded_numpy`), the aggregate estimates (IQM, mean, median, optimality gap), the
probability of improvement and the IQM at each point of a sample-efficiency curve."""

from __future__ import annotations

import importlib
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterator

import numpy as np

from ca12.errors import UsageError

ESTIMATES = ("IQM", "mean", "median", "optimality gap")


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


def interval_estimate(
    scores: np.ndarray | list[np.ndarray], func: Callable[..., np.ndarray], reps: int, seed: int, confidence: float = 0.95
) -> list[Interval]:
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
    return list(ESTIMATES[: len(functions)]), lambda scores: np.array([f(scores) for f in functions])


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """rliable's P(X > Y) averaged over tasks, as the 1-D array its bootstrap wants."""
    from rliable import metrics

    return np.array([metrics.probability_of_improvement(x, y)])


def iqm_per_point(scores: np.ndarray) -> np.ndarray:
    """rliable's IQM of a [runs, tasks, points] array at each point (a sample-efficiency curve).

    rliable's `aggregate_iqm` is scipy's 25 % `trim_mean` over all runs and tasks; this is the
    same call over runs and tasks at every point at once (rliable's examples loop over the
    points): scipy's wrapper has a fixed cost per call, which one call per point multiplied by
    the bootstrap's thousands of resamples. Tested equal to the loop.
    """
    import scipy.stats

    return scipy.stats.trim_mean(scores.reshape(-1, scores.shape[-1]), proportiontocut=0.25, axis=0)
