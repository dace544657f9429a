"""Seconds per on-policy batch: TorchRL's `Collector` against `collector=cudagraph`
(ca12/data/cuda_graph_collector.py), in one process on one device, with MAPPO's acting policy.

    python benchmarks/captured_rollout.py [--task navigation] [--num-envs 600] [--steps 100] [--batches 4]

Prints each collector's seconds per batch (the first, which builds and captures, dropped), the
ratio, and how many worlds were reset inside the batches (resets run eagerly).
"""

from __future__ import annotations

import argparse
import time

import torch

from ca12.algos import algo_class
from ca12.data.collectors import make_collector
from ca12.envs import make_env
from ca12.run.config import load_config


def _timed(collector, batches: int, device: torch.device) -> tuple[float, int]:
    it = iter(collector)
    next(it)  # builds (and captures)
    times, resets = [], 0
    for _ in range(batches):
        torch.cuda.synchronize(device) if device.type == "cuda" else None
        start = time.perf_counter()
        batch = next(it)
        torch.cuda.synchronize(device) if device.type == "cuda" else None
        times.append(time.perf_counter() - start)
        resets += int(batch["next", "done"][:, :-1].sum())
    return min(times), resets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="navigation")
    parser.add_argument("--num-envs", type=int, default=600)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    frames = args.num_envs * args.steps
    cfg = load_config(
        "mappo",
        f"vmas/{args.task}",
        [
            f"env.num_envs={args.num_envs}",
            f"env.device={args.device}",
            f"collector.frames_per_batch={frames}",
            "env.max_steps=100",
            "model.hidden_sizes=[256,256]",
            "model.activation=tanh",
        ],
    )
    device = torch.device(args.device)
    module = algo_class("mappo")(cfg, make_env(cfg.env, 0)).to(device)
    print(f"{args.task}, {args.num_envs} envs x {args.steps} steps = {frames} frames per batch, {device}")
    results = {}
    for kind in ("sync", "cudagraph"):
        env = make_env(cfg.env, 0)
        collector = make_collector(kind, 1, None, env, module.policy, frames, 0, device, reset_at_each_iter=args.steps % 100 == 0)
        seconds, resets = _timed(collector, args.batches, device)
        collector.shutdown()
        results[kind] = seconds
        print(f"{kind:>10}: {seconds:.3f} s per batch ({frames / seconds:,.0f} frames/s), {resets} worlds reset inside the timed batches", flush=True)
    print(f"cudagraph / sync speed: {results['sync'] / results['cudagraph']:.2f}x")


if __name__ == "__main__":
    main()
