"""What Lightning costs: ca12's MAPPO against a plain TorchRL loop at identical work.

    python benchmarks/vs_torchrl.py [--rounds 3] [--iters 6] [--num-envs 60] [--max-steps 100]
                                    [--epochs 10] [--minibatch 1000] [--device cpu]
    python benchmarks/vs_torchrl.py --benchmarl-work      # 600 envs, 60 000 frames, 45 x 4096

The plain loop is what a TorchRL user writes by hand: `Collector` + `MAPPOLoss` (+ MultiAgentGAE)
+ Adam + `clip_grad_norm_`, no Lightning, no checkpoints, no NaN guard. ca12 is the real
`python -m ca12.fit` path (Lightning Trainer, RolloutDataModule, metrics.csv, a checkpoint every
iteration, the NaN guard), evaluation off. Both use the same networks, loss settings, envs,
seeds and minibatch loop. Runs alternate (plain, ca12, plain, ca12, ...) so machine noise hits
both; the first iteration of every run is warm-up and is dropped. Prints seconds per iteration
(median over rounds of each run's mean) and ca12's overhead as a ratio.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torchrl.collectors import Collector

from ca12.algos import algo_class
from ca12.envs import make_env, make_spec_env
from ca12.fit import main as fit_main
from ca12.run.config import load_config


def overrides(args) -> list[str]:
    fpb = args.num_envs * args.max_steps
    return [
        f"env.num_envs={args.num_envs}",
        f"env.max_steps={args.max_steps}",
        f"env.device={args.device}",
        f"collector.frames_per_batch={fpb}",
        f"collector.total_frames={fpb * args.iters}",
        f"algo.num_epochs={args.epochs}",
        f"algo.minibatch_size={args.minibatch}",
        f"algo.lr={args.lr}",
        f"algo.gamma={args.gamma}",
        f"algo.lmbda={args.lmbda}",
        f"algo.max_grad_norm={args.max_grad_norm}",
        "eval.every_n_iters=0",
        f"checkpoint.every_n_iters={args.iters}",
    ]


def timed_batches(collector: Collector, times: list[float]):
    """The collector's batches; after the loop body has used each one, pulls fresh policy weights
    and appends the iteration's wall-clock seconds to `times`. Shuts the collector down at the end."""
    start = time.perf_counter()
    for batch in collector:
        yield batch
        collector.update_policy_weights_()
        now = time.perf_counter()
        times.append(now - start)
        start = now
    collector.shutdown()


def plain_torchrl(args, seed: int) -> list[float]:
    """Seconds per iteration of a hand-written TorchRL MAPPO loop (same nets and loss as ca12)."""
    cfg = load_config("mappo", "vmas/navigation", overrides(args))
    torch.manual_seed(seed)
    module = algo_class("mappo")(cfg, make_spec_env(cfg.env, seed))  # TorchRL actor, critic, MAPPOLoss
    loss_module = module.loss_module.to(args.device)
    env = make_env(cfg.env, seed)
    collector = Collector(
        env,
        module.actor,
        frames_per_batch=cfg.collector.frames_per_batch,
        total_frames=cfg.collector.total_frames,
        reset_at_each_iter=True,
        auto_register_policy_transforms=False,
    )
    optimiser = torch.optim.Adam(loss_module.parameters(), lr=cfg.algo.lr)
    times = []
    for batch in timed_batches(collector, times):
        with torch.no_grad():
            loss_module.value_estimator(batch, params=loss_module.critic_network_params, target_params=loss_module.target_critic_network_params)
        frames = batch.reshape(-1)
        for _ in range(cfg.algo.num_epochs):
            for index in torch.randperm(frames.shape[0], device=frames.device).split(cfg.algo.minibatch_size):
                terms = loss_module(frames[index])
                loss = terms["loss_objective"] + terms["loss_critic"] + terms["loss_entropy"]
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(loss_module.parameters(), cfg.algo.max_grad_norm)
                optimiser.step()
    return times[1:]


def ca12_fit(algo: str, overrides: list[str], device: str, seed: int) -> list[float]:
    """Seconds per iteration of `python -m ca12.fit --algo ALGO OVERRIDES`, the first
    (warm-up) iteration dropped. From its metrics.csv: collect_s runs from the end of one
    training_step to the start of the next, so collect_s + update_s is the whole iteration,
    Lightning's hooks and the checkpoint included."""
    trainer = "gpu" if device == "cuda" else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        argv = ["--algo", algo, "--seed", str(seed), "--run-dir", str(run_dir), "logger=csv", f"trainer={trainer}", *overrides]
        if fit_main(argv) != 0:
            raise SystemExit(f"ca12 fit of {algo} failed")
        with open(run_dir / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
    return [float(r["time/collect_s"]) + float(r["time/update_s"]) for r in rows][1:]


def report(plain: list[float], ours: list[float], rate: str, per_iteration: float) -> None:
    """The comparison table: median seconds per iteration of each side, `rate` = per_iteration
    units per second (e.g. frames/s), every round, and the ratio."""
    p, o = statistics.median(plain), statistics.median(ours)
    print(f"{'':<22}{'s/iteration':>12}{rate:>12}   per round")
    print(f"{'plain TorchRL loop':<22}{p:>12.3f}{per_iteration / p:>12,.1f}   {', '.join(f'{x:.3f}' for x in plain)}")
    print(f"{'ca12 (Lightning)':<22}{o:>12.3f}{per_iteration / o:>12,.1f}   {', '.join(f'{x:.3f}' for x in ours)}")
    print(f"ca12 / plain time: {o / p:.3f}  (Lightning + ca12 overhead {100 * (o / p - 1):+.1f} %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=6)
    parser.add_argument("--num-envs", type=int, default=60)
    parser.add_argument("--max-steps", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--minibatch", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--lmbda", type=float, default=0.9)
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--benchmarl-work", action="store_true", help="BenchMARL's fine-tuned VMAS on-policy work")
    args = parser.parse_args()
    if args.benchmarl_work:
        args.num_envs, args.max_steps, args.epochs, args.minibatch = 600, 100, 45, 4096
        args.lr, args.gamma, args.lmbda, args.max_grad_norm = 5e-5, 0.9, 0.9, 5.0

    plain, ours = [], []
    for round_ in range(args.rounds):
        plain.append(statistics.mean(plain_torchrl(args, seed=round_)))
        ours.append(statistics.mean(ca12_fit("mappo", overrides(args), args.device, seed=round_)))
    fpb = args.num_envs * args.max_steps
    print(
        f"\nMAPPO vmas/navigation on {args.device}: {args.num_envs} envs, {fpb} frames/iteration, "
        f"{args.epochs} epochs x minibatch {args.minibatch}; median of {args.rounds} rounds x {args.iters - 1} timed iterations"
    )
    report(plain, ours, "frames/s", fpb)


if __name__ == "__main__":
    main()
