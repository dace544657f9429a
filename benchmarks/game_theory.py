"""Time ca12.game_theory against nashpy on random n x n games, side by side in one run.

    python benchmarks/game_theory.py [--sizes 4 5 ... 12] [--budget 60]

Columns: all equilibria by support enumeration (ours vs nashpy) and one equilibrium by
Lemke-Howson from label 0 (median of repeats). nashpy calls are cut off after ``--budget``
seconds (SIGALRM) and sizes whose predicted time exceeds the budget are printed as
"skipped (> budget)". Games are i.i.d. standard normal (non-degenerate), seed = n.
"""

from __future__ import annotations

import argparse
import math
import signal
import time
import warnings
from collections.abc import Callable
from typing import Any

import nashpy
import numpy as np

from ca12.game_theory import lemke_howson, random_game, support_enumeration


class _Timeout(Exception):
    pass


def _alarm(_signum: int, _frame: Any) -> None:
    raise _Timeout


def timed(fn: Callable[[], Any], budget: float | None = None) -> tuple[float | None, Any]:
    """Wall time of one call, or None if it ran past ``budget`` seconds."""
    if budget is not None:
        signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, budget)
    start = time.perf_counter()
    try:
        result = fn()
    except _Timeout:
        return None, None
    finally:
        if budget is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
    return time.perf_counter() - start, result


def median_time(fn: Callable[[], Any], repeats: int, budget: float) -> float | None:
    times = []
    for _ in range(repeats):
        t, _ = timed(fn, budget)
        if t is None:
            return None
        times.append(t)
    return float(np.median(times))


def _fmt(t: float | None, skipped: bool = False) -> str:
    if skipped:
        return "skipped (> budget)"
    if t is None:
        return "timeout (> budget)"
    return f"{t * 1e3:.2f} ms" if t < 1 else f"{t:.2f} s"


def _ratio(theirs: float | None, ours: float | None) -> str:
    return "-" if theirs is None or not ours else f"{theirs / ours:.0f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(range(4, 13)))
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per nashpy call")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    header = ("n", "equilibria", "ours SE", "nashpy SE", "ratio", "ours LH", "nashpy LH", "ratio")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    last_nashpy: tuple[int, float] | None = None
    for n in args.sizes:
        game = random_game((n, n), seed=n)
        ours_se, found = timed(lambda: support_enumeration(game))
        ours_lh = median_time(lambda: lemke_howson(game, 0), 20, args.budget)
        nash_game = nashpy.Game(*game.bimatrix)
        growth = 1.0
        if last_nashpy is not None:  # support pairs grow like C(2n, n)
            growth = math.comb(2 * n, n) / math.comb(2 * last_nashpy[0], last_nashpy[0]) * (n / last_nashpy[0]) ** 3
        predicted = None if last_nashpy is None else last_nashpy[1] * growth
        skip = predicted is not None and (predicted > args.budget or last_nashpy[1] is None)
        theirs_se, theirs_found = (None, None)
        if not skip:
            theirs_se, theirs_found = timed(lambda: list(nash_game.support_enumeration()), args.budget)
            last_nashpy = (n, theirs_se) if theirs_se is not None else (n, math.inf)
            skip_note = theirs_se is None
        else:
            skip_note = False
        theirs_lh = median_time(lambda: nash_game.lemke_howson(initial_dropped_label=0), 5, 10.0)
        count = f"{len(found)}" + ("" if theirs_found is None else f" (nashpy {len(theirs_found)})")
        row = (
            str(n),
            count,
            _fmt(ours_se),
            _fmt(theirs_se, skip) if not skip_note else _fmt(None),
            _ratio(theirs_se, ours_se),
            _fmt(ours_lh),
            _fmt(theirs_lh),
            _ratio(theirs_lh, ours_lh),
        )
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
