"""The default job's time to a good policy: `python -m ca12.fit --algo mappo` (README's first
command), run N times as it is, with its time to return 0.8 and 0.9 counted from the command's
start (start-up included: imports, env, W&B, the first iterations).

    python benchmarks/default_job.py [--runs 3] [-- KEY=VALUE ...]

Reads each run's metrics.csv (`time/since_start_s`, `rollout/episode_reward_mean`) and prints
every run and the medians. The goal (the speed issue): time to 0.9 <= 60 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = (0.8, 0.9)


def one_run(overrides: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "ca12.fit", "--algo", "mappo", "--run-dir", str(run_dir), *overrides],
                              capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"the default job failed: {proc.stderr.strip().splitlines()[-1:]}")
        with open(run_dir / "metrics.csv") as f:
            rows = [r for r in csv.DictReader(f) if r.get("time/since_start_s")]
    result = {"wall": wall, "final": float(rows[-1]["rollout/episode_reward_mean"]), "frames": int(float(rows[-1]["time/frames"]))}
    for target in TARGETS:
        hit = next((r for r in rows if r["rollout/episode_reward_mean"] not in ("", "nan") and float(r["rollout/episode_reward_mean"]) >= target), None)
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
        print(f"run {i}: " + ", ".join(f"{t} at {r[t][0]:.1f} s ({r[t][1]} frames)" for t in TARGETS)
              + f"; whole run {r['wall']:.1f} s, final return {r['final']:.3f} at {r['frames']} frames", flush=True)
    print(f"median of {args.runs}: " + ", ".join(f"time to {t}: {statistics.median(r[t][0] for r in results):.1f} s" for t in TARGETS)
          + f"; whole run {statistics.median(r['wall'] for r in results):.1f} s (overrides: {' '.join(args.overrides) or 'none'})")


if __name__ == "__main__":
    main()
