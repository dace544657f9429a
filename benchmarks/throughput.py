"""MAPPO throughput on vmas/navigation against the ceiling of pure `VmasEnv` stepping.

    python benchmarks/throughput.py [--iters 6] [--num-envs 60] [--max-steps 100] [--device cpu cuda]

For each device (CUDA only where present) it measures, in the same process:
  * ceiling: TorchRL's `VmasEnv` stepping with random actions at the same number of envs;
  * ca12: a real `ca12.fit` run (Lightning, collector, MAPPO update) with the default
    hyperparameters, reading collection and update times from its metrics.csv
    (the first iteration is warm-up and is dropped).
and prints frames/s for collection, update and the whole iteration, with ratios to the ceiling.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import torch

from ca12.envs import make_env
from ca12.fit import main as fit_main
from ca12.run.config import load_config


def env_ceiling(num_envs: int, max_steps: int, device: str, repeats: int = 3, task: str = "navigation") -> float:
    """Frames/s of `VmasEnv.rollout` with random actions (no policy, no learner)."""
    cfg = load_config("mappo", f"vmas/{task}", [f"env.num_envs={num_envs}", f"env.max_steps={max_steps}", f"env.device={device}"])
    env = make_env(cfg.env, seed=0)
    env.rollout(max_steps, break_when_any_done=False)  # warm-up
    best = 0.0
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        env.rollout(max_steps, break_when_any_done=False)
        _sync(device)
        best = max(best, num_envs * max_steps / (time.perf_counter() - start))
    return best


def fit_throughput(num_envs: int, max_steps: int, iters: int, device: str) -> dict[str, float]:
    """Mean collection/update/total frames/s of a real MAPPO fit (iterations 2..iters)."""
    frames_per_batch = num_envs * max_steps
    trainer = "gpu" if device == "cuda" else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        args = [
            "--algo",
            "mappo",
            "--run-dir",
            str(run_dir),
            "logger=csv",
            f"trainer={trainer}",
            f"env.device={device}",
            f"env.num_envs={num_envs}",
            f"env.max_steps={max_steps}",
            f"collector.frames_per_batch={frames_per_batch}",
            f"collector.total_frames={frames_per_batch * iters}",
            f"checkpoint.every_n_iters={iters}",
        ]
        if fit_main(args) != 0:
            raise SystemExit("the MAPPO fit failed")
        with open(run_dir / "metrics.csv") as f:
            rows = list(csv.DictReader(f))[1:]
    collect = sum(float(r["time/collect_s"]) for r in rows)
    update = sum(float(r["time/update_s"]) for r in rows)
    frames = frames_per_batch * len(rows)
    return {"collect": frames / collect, "update": frames / update, "total": frames / (collect + update)}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=6)
    parser.add_argument("--num-envs", type=int, default=60)
    parser.add_argument("--max-steps", type=int, default=100)
    parser.add_argument("--device", nargs="*", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    args = parser.parse_args()

    rows = []
    for device in args.device:
        ceiling = env_ceiling(args.num_envs, args.max_steps, device)
        fit = fit_throughput(args.num_envs, args.max_steps, args.iters, device)
        rows.append((device, ceiling, fit))

    print(
        f"\nMAPPO on vmas/navigation, {args.num_envs} envs x {args.max_steps} steps per iteration, "
        f"default update (epochs x minibatches), {args.iters - 1} timed iterations"
    )
    header = f"{'device':<7}{'VmasEnv ceiling':>17}{'collect':>12}{'update':>12}{'total':>12}{'collect/ceiling':>17}{'total/ceiling':>15}"
    print(header)
    print("-" * len(header))
    for device, ceiling, fit in rows:
        print(
            f"{device:<7}{ceiling:>15,.0f}/s{fit['collect']:>10,.0f}/s{fit['update']:>10,.0f}/s{fit['total']:>10,.0f}/s"
            f"{fit['collect'] / ceiling:>17.3f}{fit['total'] / ceiling:>15.3f}"
        )


if __name__ == "__main__":
    main()
