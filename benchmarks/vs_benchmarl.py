"""ca12 against BenchMARL 1.5.2 at identical work on VMAS, with pure `VmasEnv` stepping as the ceiling.

    python benchmarks/vs_benchmarl.py --algo mappo --task navigation --iters 4 --device cuda \\
        [--benchmarl-site /tmp/benchmarl] [--ca12-root . .base] [--extra KEY=VALUE ...]
    python benchmarks/vs_benchmarl.py --algo mappo --task navigation --device cuda \\
        --to-return 0.9 --total-frames 600000 --extra algo.cudagraphs=true env.num_envs=200 ...

The work is BenchMARL's fine-tuned VMAS work (its conf/ for VMAS, docs/benchmarks.md):
  * on-policy (mappo, ippo): 600 envs x 100 steps = 60 000 frames per iteration, 45 epochs of
    minibatch 4096, MLP 2x256 Tanh, lr 5e-5, gamma 0.9, lambda 0.9, clip 0.2, grad-norm clip 5;
  * off-policy (maddpg, masac): 6 000 frames from 60 envs + 1 000 Adam steps of every optimiser on
    minibatches of 128 per iteration, the buffer on the device, lr 5e-5, gamma 0.9.

Every side runs as its own process (`python -m ca12.fit ...` from each `--ca12-root`, so an older
checkout can be measured beside this one; `python -m benchmarl.run ...` with `--benchmarl-site` on
its path). ca12's seconds per iteration come from its metrics.csv (collect + update, Lightning's
hooks and the checkpoint included), the first (warm-up) iteration dropped; BenchMARL's from the
iteration rate its progress bar prints last. Wall time includes start-up. Prints one table with
frames/s and each row's ratio to BenchMARL's frames/s and to the env's ceiling.

With `--to-return R`, only ca12 runs (this checkout, with ca12's own defaults, not the work above:
the device, `logger=csv`, no evaluation or checkpoint, then `--extra`) and the script prints the
training time (collect + update, summed) and the wall time from process start at which the
iteration's mean episode return first reached R.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ON_POLICY = {"mappo", "ippo"}


def timed_run(device: str) -> list[str]:
    """The overrides of every timed ca12 run: the device, metrics.csv only, no evaluation or checkpoint."""
    return [
        f"env.device={device}",
        f"trainer={'gpu' if device.startswith('cuda') else 'cpu'}",
        "logger=csv",
        "checkpoint.every_n_iters=100000",
        "eval.every_n_iters=100000",
    ]


def ca12_work(algo: str, task: str, device: str, iters: int) -> tuple[list[str], int]:
    """ca12's overrides for BenchMARL's work, and the frames per iteration."""
    common = [
        *timed_run(device),
        "model.activation=tanh",
        "critic_model.activation=tanh",
        "model.hidden_sizes=[256,256]",
        "critic_model.hidden_sizes=[256,256]",
        "algo.gamma=0.9",
        "algo.max_grad_norm=5.0",
    ]
    if algo in ON_POLICY:
        frames = 60_000
        work = [
            "env.num_envs=600",
            "env.max_steps=100",
            f"collector.frames_per_batch={frames}",
            "algo.num_epochs=45",
            "algo.minibatch_size=4096",
            "algo.lr=5e-5",
            "algo.lmbda=0.9",
            "algo.clip_epsilon=0.2",
        ]
    else:
        frames = 6_000
        lrs = ["algo.actor_lr=5e-5", "algo.critic_lr=5e-5"] + (["algo.alpha_lr=5e-5"] if algo == "masac" else [])
        work = [
            "env.num_envs=60",
            "env.max_steps=100",
            f"collector.frames_per_batch={frames}",
            f"algo.updates_per_frame={1000 / frames}",
            "algo.minibatch_size=128",
            f"algo.buffer_device={device}",
            "algo.warmup_frames=0",
            *lrs,
        ]
    return [*common, *work, f"collector.total_frames={frames * iters}"], frames


def run_ca12(root: Path, algo: str, task: str, overrides: list[str], timeout: float) -> tuple[list[dict], float]:
    """One `python -m ca12.fit` process from `root`: its metrics.csv rows and its wall time."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
        cmd = [sys.executable, "-m", "ca12.fit", "--algo", algo, "--env", f"vmas/{task}", "--run-dir", str(run_dir), *overrides]
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:  # keep the iterations it finished
            proc = None
            print(f"(ca12 stopped at the {timeout:.0f} s timeout; its finished iterations are kept)", flush=True)
        wall = time.perf_counter() - start
        if proc is not None and proc.returncode != 0:
            raise RuntimeError(f"ca12 ({root}) failed:\n" + "\n".join(proc.stderr.strip().splitlines()[-15:]))
        if not (run_dir / "metrics.csv").exists():
            raise RuntimeError(f"ca12 ({root}) finished no iteration in {wall:.0f} s")
        with open(run_dir / "metrics.csv") as f:
            rows = [r for r in csv.DictReader(f) if r.get("time/update_s")]
    return rows, wall


def seconds_per_iteration(rows: list[dict]) -> tuple[float, float, float]:
    """Mean (total, collect, update) seconds of the iterations after the first."""
    timed = rows[1:] or rows
    collect = sum(float(r["time/collect_s"]) for r in timed) / len(timed)
    update = sum(float(r["time/update_s"]) for r in timed) / len(timed)
    return collect + update, collect, update


def run_benchmarl(site: str, algo: str, task: str, device: str, iters: int, timeout: float) -> tuple[float, float, str]:
    """BenchMARL 1.5.2 at the same work (`python -m benchmarl.run` with the overrides below): seconds per
    iteration from its progress bar's last rate, the wall time and the last return line."""
    if algo in ON_POLICY:
        work = [
            "experiment.on_policy_collected_frames_per_batch=60000",
            "experiment.on_policy_n_envs_per_worker=600",
            "experiment.on_policy_n_minibatch_iters=45",
            "experiment.on_policy_minibatch_size=4096",
            f"experiment.max_n_frames={iters * 60000}",
        ]
    else:
        work = [
            "experiment.off_policy_collected_frames_per_batch=6000",
            "experiment.off_policy_n_envs_per_worker=60",
            "experiment.off_policy_n_optimizer_steps=1000",
            "experiment.off_policy_train_batch_size=128",
            f"experiment.buffer_device={device}",
            f"experiment.max_n_frames={iters * 6000}",
        ]
    cmd = [
        sys.executable,
        "-m",
        "benchmarl.run",
        f"algorithm={algo}",
        f"task=vmas/{task}",
        "seed=0",
        f"experiment.sampling_device={device}",
        f"experiment.train_device={device}",
        "experiment.evaluation=false",
        "experiment.render=false",
        "experiment.loggers=[]",
        "experiment.checkpoint_interval=0",
        "experiment.create_json=false",
        "experiment.lr=0.00005",
        "experiment.gamma=0.9",
        "experiment.clip_grad_val=5",
        *work,
    ]
    env = {**os.environ, "PYTHONPATH": site, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
        wall = time.perf_counter() - start
    log = (proc.stdout + proc.stderr).replace("\r", "\n")
    rates = re.findall(r"(\d+(?:\.\d+)?)(s/it|it/s)\]", log)
    if proc.returncode != 0 or not rates:
        raise RuntimeError(f"BenchMARL failed: {log.strip().splitlines()[-10:]}")
    value, unit = rates[-1]
    returns = [line for line in log.splitlines() if "mean return" in line]
    return (float(value) if unit == "s/it" else 1 / float(value)), wall, (returns[-1].strip() if returns else "")


def env_ceiling(task: str, num_envs: int, device: str) -> float:
    """Frames/s of pure `VmasEnv` stepping with random actions (benchmarks/throughput.py's)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from throughput import env_ceiling as ceiling  # the sibling script

    return ceiling(num_envs, 100, device, task=task)


def time_to_return(rows: list[dict], wall: float, target: float) -> tuple[float | None, float | None, int | None]:
    """(training seconds, seconds since process start, frames) when the return first reached
    `target`; the start-up is the wall time not spent in iterations."""
    startup = wall - sum(float(r["time/collect_s"]) + float(r["time/update_s"]) for r in rows)
    elapsed = 0.0
    for r in rows:
        elapsed += float(r["time/collect_s"]) + float(r["time/update_s"])
        value = r.get("rollout/episode_reward_mean", "")
        if value not in ("", "nan") and float(value) >= target:
            return elapsed, startup + elapsed, int(float(r["time/frames"]))
    return None, None, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="mappo", choices=["mappo", "ippo", "maddpg", "masac"])
    parser.add_argument("--task", default="navigation")
    parser.add_argument("--iters", type=int, default=4, help="iterations per run (the first is warm-up for ca12)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--ca12-root", nargs="*", default=[str(Path(__file__).resolve().parents[1])])
    parser.add_argument("--benchmarl-site", default=None, help="a folder with BenchMARL 1.5.2 and its torchrl 0.11 installed")
    parser.add_argument("--extra", nargs="*", default=[], help="ca12 overrides on top of the work")
    parser.add_argument(
        "--variant",
        action="append",
        default=None,
        metavar="LABEL=OVERRIDES",
        help="a ca12 row per variant (repeatable), e.g. 'cudagraphs=algo.cudagraphs=true'; default: one row, no more overrides",
    )
    parser.add_argument("--no-ceiling", action="store_true")
    parser.add_argument("--to-return", type=float, default=None)
    parser.add_argument("--total-frames", type=int, default=3_000_000)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    args.extra = [item for extra in args.extra for item in extra.split()]

    if args.to_return is not None:
        overrides = [*timed_run(args.device), f"collector.total_frames={args.total_frames}"]
        rows, wall = run_ca12(Path(args.ca12_root[0]), args.algo, args.task, overrides + args.extra, args.timeout)
        train_s, since_start, at = time_to_return(rows, wall, args.to_return)
        last = rows[-1].get("rollout/episode_reward_mean")
        print(
            f"ca12 {args.algo} vmas/{args.task} on {args.device} with {' '.join(args.extra)}: "
            + (
                f"return {args.to_return} after {train_s:.1f} s of training, {since_start:.1f} s from process start, {at} frames"
                if train_s is not None
                else f"return {args.to_return} not reached in {len(rows)} iterations (last {last})"
            )
            + f"; whole run {wall:.1f} s, last return {last}"
        )
        return

    overrides, frames = ca12_work(args.algo, args.task, args.device, args.iters)
    # Rows are printed as they finish, so a run cut short keeps what it measured.
    ceiling = None if args.no_ceiling or args.algo not in ON_POLICY else env_ceiling(args.task, 600, args.device)
    print(f"\n{args.algo} vmas/{args.task} on {args.device}: {frames} frames per iteration, {args.iters} iterations per run")
    print(f"{'':<30}{'s/iteration':>12}{'frames/s':>12}{'x BenchMARL':>13}{'/ ceiling':>11}{'wall s':>9}   detail")
    if ceiling:
        print(f"{'VmasEnv ceiling':<30}{frames / ceiling:>12.3f}{ceiling:>12,.0f}   (random actions, 600 envs, no policy)")
    reference = None

    def row(name: str, s: float, wall: float, detail: str) -> None:
        fps = frames / s
        print(
            f"{name:<30}{s:>12.3f}{fps:>12,.0f}{(reference / s if reference else float('nan')):>13.2f}"
            f"{(fps / ceiling if ceiling else float('nan')):>11.3f}{wall:>9.1f}   {detail}",
            flush=True,
        )

    if args.benchmarl_site:
        try:
            reference, wall, ret = run_benchmarl(args.benchmarl_site, args.algo, args.task, args.device, args.iters, args.timeout)
            row("BenchMARL 1.5.2", reference, wall, ret)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"BenchMARL: {exc}", flush=True)
    variants = [v.partition("=") for v in args.variant or ["eager="]]
    for root in args.ca12_root:
        for label, _, extra in variants:
            name = f"ca12 {Path(root).resolve().name} {label}"
            try:
                rows, wall = run_ca12(Path(root), args.algo, args.task, overrides + args.extra + extra.split(), args.timeout)
                s, collect, update = seconds_per_iteration(rows)
                ret = float(rows[-1].get("rollout/episode_reward_mean") or "nan")
                row(name, s, wall, f"collect {collect:.3f} s + update {update:.3f} s, return {ret:.3f}")
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                print(f"{name}: {exc}", flush=True)


if __name__ == "__main__":
    main()
