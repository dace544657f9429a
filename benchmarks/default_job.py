"""The default job's time to a good policy: `python -m ca12.fit --algo mappo` (README's first
command), run N times as it is, with its time to return 0.8 and 0.9 counted from the command's
start (start-up included: imports, env, W&B, the first iterations).

    python benchmarks/default_job.py [--runs 3] [-- KEY=VALUE ...]

Reads each run's metrics.csv (`time/since_start_s`, `rollout/episode_reward_mean`) and prints
every run and the medians. The goal (the speed issue): the whole run <= 60 s on 2 idle CPU cores,
ending at a training return >= 0.9 (the default is MAPPO's tuned setup for navigation,
conf/tuned/mappo/vmas/navigation.yaml; `tuned=none` times the generic defaults).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from vs_benchmarl import run_ca12  # the sibling script: one `python -m ca12.fit` process, its metrics.csv

TARGETS = (0.8, 0.9)
ROOT = Path(__file__).resolve().parents[1]


def one_run(overrides: list[str]) -> dict:
    rows, wall = run_ca12(ROOT, "mappo", "navigation", overrides, timeout=3600)
    last = rows[-1]
    result = {"wall": wall, "final": float(last["rollout/episode_reward_mean"]), "frames": int(float(last["time/frames"]))}
    result["eval"] = float(last["eval/episode_reward_mean"]) if last.get("eval/episode_reward_mean") else float("nan")
    for target in TARGETS:
        hit = next(
            (r for r in rows if r["rollout/episode_reward_mean"] not in ("", "nan") and float(r["rollout/episode_reward_mean"]) >= target), None
        )
        result[target] = (float(hit["time/since_start_s"]), int(float(hit["time/frames"]))) if hit else (float("nan"), 0)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    results = []
    for i in range(args.runs):
        r = one_run(args.overrides)
        results.append(r)
        print(
            f"run {i}: "
            + ", ".join(f"{t} at {r[t][0]:.1f} s ({r[t][1]} frames)" for t in TARGETS)
            + f"; whole run {r['wall']:.1f} s, final return {r['final']:.3f} (evaluation {r['eval']:.3f}) at {r['frames']} frames",
            flush=True,
        )
    print(
        f"median of {args.runs}: "
        + ", ".join(f"time to {t}: {statistics.median(r[t][0] for r in results):.1f} s" for t in TARGETS)
        + f"; whole run {statistics.median(r['wall'] for r in results):.1f} s (overrides: {' '.join(args.overrides) or 'none'})"
    )


if __name__ == "__main__":
    main()
