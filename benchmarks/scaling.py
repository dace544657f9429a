"""Throughput against the number of workers: IMPALA's actors, A3C's actor-learners, ES's
evaluators (Ray), and the learner under Lightning DDP, each on CartPole with short runs.

    python benchmarks/scaling.py                       # 1 and 2 workers / devices
    python benchmarks/scaling.py --workers 1 2 4 8 16  # where more cores exist
    python benchmarks/scaling.py --only a3c es

Every point is a real `python -m ca12.fit` run in its own process (DDP re-runs its command line
for the second rank, so none runs inside this script). Frames per second leave out start-up
(building envs, starting Ray and its workers, the first iteration): frames after the first
iteration over the time they took (`time/collect_s + time/update_s` of those iterations, which
add up to the wall clock from the end of the first iteration to the end of the last). Each table
gives the efficiency against linear scaling, fps(n) / (n x fps(1)); all points are measured in
the same run of this script, on the same machine.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CARTPOLE = ["--env", "gym/CartPole-v1", "logger=csv", "eval.every_n_iters=0", "model.hidden_sizes=[64,64]", "critic_model.hidden_sizes=[64,64]"]
BATCHES = 12  # iterations per point (per worker for the asynchronous methods)


def impala(n: int) -> list[str]:
    """n asynchronous TorchRL collector processes; the learner takes one step per 800-frame batch."""
    return [
        "--algo",
        "impala",
        *CARTPOLE,
        "collector=multiasync",
        f"collector.workers={n}",
        "env.num_envs=8",
        "collector.frames_per_batch=800",
        "algo.minibatch_size=800",
        f"collector.total_frames={800 * BATCHES * n}",
    ]


def a3c(n: int) -> list[str]:
    """n Ray actor-learners, 8 worlds x 20 steps a gradient, applied on arrival."""
    return [
        "--algo",
        "a3c",
        *CARTPOLE,
        f"algo.workers={n}",
        "env.num_envs=8",
        "collector.frames_per_batch=160",
        f"collector.total_frames={160 * 4 * BATCHES * n}",
    ]


def es(n: int) -> list[str]:
    """n Ray evaluators sharing a population of 8 (2 worlds x 100 steps each)."""
    return [
        "--algo",
        "es",
        *CARTPOLE,
        f"algo.workers={n}",
        "algo.population=8",
        "env.num_envs=2",
        "env.max_steps=100",
        "collector.frames_per_batch=1600",
        f"collector.total_frames={1600 * BATCHES // 2}",
    ]


def ddp(n: int) -> list[str]:
    """PPO's learner on n DDP processes (CPU), each collecting its own 1024-frame batch."""
    return [
        "--algo",
        "ppo",
        *CARTPOLE,
        "trainer=ddp",
        f"trainer.devices={n}",
        "trainer.accelerator=cpu",
        "env.num_envs=8",
        "collector.frames_per_batch=1024",
        "algo.minibatch_size=256",
        "algo.num_epochs=4",
        f"collector.total_frames={1024 * BATCHES * n}",
    ]


METHODS = {
    "impala": ("IMPALA (collector.workers)", impala),
    "a3c": ("A3C (algo.workers)", a3c),
    "es": ("ES (algo.workers)", es),
    "ddp": ("PPO learner, Lightning DDP (trainer.devices)", ddp),
}


def frames_per_second(run_dir: Path) -> float:
    """Frames after the first iteration over the time they took (start-up left out)."""
    with open(run_dir / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("time/frames")]
    later = rows[1:]
    frames = float(rows[-1]["time/frames"]) - float(rows[0]["time/frames"])
    return frames / sum(float(r["time/collect_s"]) + float(r["time/update_s"]) for r in later)


def measure(args: list[str]) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        done = subprocess.run([sys.executable, "-m", "ca12.fit", *args, "--run-dir", str(run_dir)], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
        return frames_per_second(run_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", nargs="*", type=int, default=[1, 2], help="worker counts (and DDP device counts) to measure")
    parser.add_argument("--only", nargs="*", default=list(METHODS), choices=list(METHODS))
    args = parser.parse_args()
    counts = sorted(set(args.workers) | {1})  # efficiency is against one worker
    tables = {}
    for name in args.only:
        title, make_args = METHODS[name]
        tables[title] = [(n, measure(make_args(n))) for n in counts]
        print(f"measured {title}: " + ", ".join(f"{n}: {fps:.0f} frames/s" for n, fps in tables[title]), flush=True)
    for title, points in tables.items():
        base = points[0][1]
        print(f"\n{title}\n{'n':>4}{'frames/s':>12}{'speed-up':>10}{'efficiency':>12}\n" + "-" * 38)
        for n, fps in points:
            print(f"{n:>4}{fps:>12.0f}{fps / base:>10.2f}{fps / (n * base):>12.2f}")


if __name__ == "__main__":
    main()
