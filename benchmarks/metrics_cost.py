"""What writing metrics.csv costs per iteration as a run grows: appending each save's new rows
(ca12.run.tracking.MetricsCSV, since 2026-11-26) against rewriting the whole file at every save
(the code before; `MetricsCSV._rewrite`, the same writer, called every time).

    python benchmarks/metrics_cost.py [--iterations 4000] [--metrics 18]

Both log the same rows (`--metrics` values per iteration, as an A3C or IMPALA iteration logs)
into their own file, one save per iteration as Lightning calls it, and the script prints the
mean milliseconds per save over the first and the last 100 iterations, and the ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from ca12.run.tracking import ITERATION_KEY, MetricsCSV


def save_times(logger: MetricsCSV, iterations: int, metrics: int, rewrite: bool) -> list[float]:
    """Seconds of each iteration's save."""
    names = [f"train/metric_{k}" for k in range(metrics)]
    times = []
    for i in range(1, iterations + 1):
        logger.log_metrics({ITERATION_KEY: i, **{name: i * 1e-3 + k for k, name in enumerate(names)}})
        start = time.perf_counter()
        if rewrite:
            logger._rewrite([ITERATION_KEY, *sorted(logger._keys)])
            logger._changed = set()
        else:
            logger.save()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=4000)
    parser.add_argument("--metrics", type=int, default=18)
    args = parser.parse_args()
    ms = lambda times: 1000 * sum(times) / len(times)  # noqa: E731
    print(f"{'way':<22}{'first 100 (ms/save)':>21}{'last 100 (ms/save)':>20}{'total s':>9}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for way, rewrite in (("append (new)", False), ("rewrite all (old)", True)):
            times = save_times(MetricsCSV(Path(tmp) / f"{rewrite}.csv"), args.iterations, args.metrics, rewrite)
            results[way] = times
            print(f"{way:<22}{ms(times[:100]):>21.3f}{ms(times[-100:]):>20.3f}{sum(times):>9.2f}")
    old, new = results["rewrite all (old)"], results["append (new)"]
    print(f"at iteration {args.iterations}: the old way's save costs {ms(old[-100:]) / ms(new[-100:]):.0f}x the new one's")


if __name__ == "__main__":
    main()
