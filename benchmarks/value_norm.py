"""Value normalisation (`algo.value_norm`) against none, MAPPO on the tasks issue #32 names.

    python benchmarks/value_norm.py                              # every task, none vs popart, seeds 0 1 2
    python benchmarks/value_norm.py --task navigation --seed 0 1 2 3 4
    python benchmarks/value_norm.py --variants none popart running --frames 120000

Each task runs MAPPO once per seed and variant, the variants differing in `algo.value_norm`
only (ca12/algos/value_norm.py): the same seeds, frames, batches, networks and learning rates.
Each run is a real `python -m ca12.fit` in this process (`learning.fit_returns`, logger=csv).
Two figures per run: its final training return (the mean `rollout/episode_reward_mean` of its
last 3 iterations, the stochastic policy) and its evaluation return, the trained policy acting
deterministically (`ca12.load(run).evaluate`) on `--episodes` episodes drawn from the run's
evaluation seed, so every variant of a seed plays the same evaluation episodes. Prints per task
and variant the mean of each with a 95 % t-interval over seeds and each seed's figure, and the
difference popart (or the second variant) minus none with a Welch 95 % interval.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # small nets: torch's thread pool only spins on shared cores

from learning import Row, fit_returns, interval, welch  # noqa: E402  (the sibling script)

import ca12  # noqa: E402

# task -> (env, frames, overrides): navigation is the default job's setting, the traffic junction
# its tuned experiment, balance BenchMARL's task settings (conf/env/vmas/balance.yaml).
TASKS = {
    "navigation": ("vmas/navigation", 240_000, []),
    "balance": ("vmas/balance", 480_000, []),
    "traffic_junction": ("comm/traffic_junction", 600_000, ["experiment=traffic_junction_medium"]),
}
LAST = 3  # iterations averaged into a run's final training return


def measure(env: str, frames: int, overrides: list[str], variant: str, seed: int, episodes: int) -> tuple[float, float]:
    """(final training return, evaluation return) of one MAPPO fit with `algo.value_norm=variant`."""
    row = Row("mappo", env, frames, float("nan"), [*overrides, f"algo.value_norm={variant}"])
    with tempfile.TemporaryDirectory() as tmp:
        returns, seconds = fit_returns(row, seed, Path(tmp) / "run")
        evaluation = ca12.load(Path(tmp) / "run").evaluate(episodes).episode_reward_mean
    final = statistics.fmean(returns[-LAST:])
    print(f"{env} value_norm={variant} seed {seed}: final {final:.3f}, evaluation {evaluation:.3f} ({seconds:.0f} s)", flush=True)
    return final, evaluation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--variants", nargs="+", default=["none", "popart"], choices=["none", "popart", "running"])
    parser.add_argument("--seed", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--frames", type=int, default=None, help="frames per run (default: the task's)")
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes per run")
    parser.add_argument("--set", nargs="*", default=[], help="more overrides for every run")
    args = parser.parse_args()
    tables = {}
    for task in args.task:
        env, frames, overrides = TASKS[task]
        frames = args.frames or frames
        runs = {v: [measure(env, frames, [*overrides, *args.set], v, seed, args.episodes) for seed in args.seed] for v in args.variants}
        tables[task] = (env, frames, runs)
    for task, (env, frames, results) in tables.items():
        print(f"\nMAPPO on {env}, {frames} frames per run, seeds {' '.join(map(str, args.seed))}, {args.episodes} evaluation episodes")
        header = f"{'value_norm':<12}{'final return':>14}{'95% CI':>10}{'evaluation':>12}{'95% CI':>10}   evaluation per seed"
        print(header)
        print("-" * len(header))
        for variant, runs in results.items():
            (final, half), (evaluation, ehalf) = interval([f for f, _ in runs]), interval([e for _, e in runs])
            per_seed = "  ".join(f"{e:.3f}" for _, e in runs)
            print(f"{variant:<12}{final:>14.3f}{'+-' + format(half, '.3f'):>10}{evaluation:>12.3f}{'+-' + format(ehalf, '.3f'):>10}   {per_seed}")
        base, other = args.variants[0], args.variants[-1]
        if base != other:
            print(f"{other} - {base}, final return: {welch([f for f, _ in results[base]], [f for f, _ in results[other]])}")
            print(f"{other} - {base}, evaluation:   {welch([e for _, e in results[base]], [e for _, e in results[other]])}")


if __name__ == "__main__":
    main()
