"""Communication at scale: does talking pay more as the team grows? MAPPO on comm/predator_prey.

    python benchmarks/communication_scale.py                              # 4, 8, 16 predators x 5 models x seeds 0 1 2
    python benchmarks/communication_scale.py --agents 8 --models mlp commnet --seed 0
    python benchmarks/communication_scale.py --agents 8 --models graph --sweep bandwidth   # message sizes 2..32
    python benchmarks/communication_scale.py --agents 8 --models graph --sweep noise       # message noise 0..1

The task (ca12/envs/comm/predator_prey.py, IC3Net's predator-prey) keeps its grid (`--dim`, 10x10),
vision (`--vision`, 1) and episode (`--steps`, 40) while the team grows, so a bigger team has more
searchers and more to gain from the one who finds the prey telling the rest. Models, all with
2 x 64 encoders: `mlp` (no communication), `commnet` (the mean of everyone's hidden state),
`tarmac` (signed, attended messages), `graph` (messages along a graph; with
`model.graph=random_geometric` only between predators within `model.radius` of each other on the
grid: graph-limited communication) and `hierarchical` (feudal teams of 4 with a manager).
`--sweep bandwidth` varies `model.message_size` (TarMAC, graph), `--sweep noise` the Gaussian noise
added to every message in training and evaluation (`model.noise`, `model.noisy_eval`; graph).

Each run is a real `python -m ca12.fit` in this process (`learning.fit_returns`, logger=csv), the same
MAPPO settings for every model (`SETTINGS`). After training its checkpoint acts greedily on
`--episodes` evaluation episodes of the run's evaluation seed (`ca12.run.score.checkpoint_success_rate`),
so every model of a seed plays the same episodes: the success rate is the share of episodes that end
with every predator on the prey. Prints, per team size, each model's mean success with its 95 %
t-interval over seeds and each seed's, its final training return, and its success minus the `mlp`
row's: the benefit of communication, which the course says grows with the number of agents.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # small nets: torch's thread pool only spins on shared cores

from learning import Row, fit_returns, interval  # noqa: E402  (the sibling script)

from ca12.run.score import checkpoint_success_rate  # noqa: E402

# MAPPO on 150 worlds x 40 steps per batch (6 000 frames), 4 epochs of 2 000 frames at lr 1e-3, a
# little entropy (the traffic junction's experiment, conf/experiment/traffic_junction_medium.yaml).
SETTINGS = [
    "env.num_envs=150",
    "collector.frames_per_batch=6000",
    "algo.num_epochs=4",
    "algo.minibatch_size=2000",
    "algo.lr=1e-3",
    "algo.entropy_coeff=0.01",
    "model.hidden_sizes=[64,64]",
]
MODELS = {
    "mlp": ["model=mlp"],
    "commnet": ["model=commnet"],
    "tarmac": ["model=tarmac"],
    "graph": ["model=graph", "model.graph=random_geometric", "model.radius=0.3"],
    "hierarchical": ["model=hierarchical", "model.team_size=4"],
}
SWEEPS = {"bandwidth": ("model.message_size", [2, 4, 8, 16, 32]), "noise": ("model.noise", [0.0, 0.1, 0.3, 1.0])}
LAST = 3  # iterations averaged into a run's final training return


def measure(n: int, model: str, extra: list[str], args, seed: int) -> tuple[float, float]:
    """(evaluation success rate, final training return) of one run."""
    env = [f"env.n_agents={n}", f"env.dim={args.dim}", f"env.vision={args.vision}", f"env.max_steps={args.steps}"]
    row = Row("mappo", "comm/predator_prey", args.frames, float("nan"), [*SETTINGS, *env, *MODELS[model], *extra, *args.set])
    with tempfile.TemporaryDirectory() as tmp:
        returns, seconds = fit_returns(row, seed, Path(tmp) / "run")
        success = checkpoint_success_rate(Path(tmp) / "run", args.episodes)
    final = statistics.fmean(returns[-LAST:])
    print(f"{n} predators, {model} {' '.join(extra)} seed {seed}: success {success:.3f}, final return {final:.3f} ({seconds:.0f} s)", flush=True)
    return success, final


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seed", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--frames", type=int, default=600_000)
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--vision", type=int, default=1)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--episodes", type=int, default=200, help="evaluation episodes per run")
    parser.add_argument("--sweep", choices=list(SWEEPS), default=None, help="vary message size or noise instead of comparing models")
    parser.add_argument("--set", nargs="*", default=[], help="more overrides for every run")
    args = parser.parse_args()
    variants = []  # (label, model, its extra overrides)
    for model in args.models:
        if args.sweep is None:
            variants.append((model, model, []))
            continue
        key, values = SWEEPS[args.sweep]
        for value in values:
            noisy = ["model.noisy_eval=true"] if key == "model.noise" else []  # robust communication: noise in evaluation too
            variants.append((f"{model} {key}={value}", model, [f"{key}={value}", *noisy]))
    results = {(n, label): [measure(n, model, extra, args, seed) for seed in args.seed] for n in args.agents for label, model, extra in variants}
    print(
        f"\nMAPPO on comm/predator_prey ({args.dim}x{args.dim}, vision {args.vision}, {args.steps} steps), {args.frames} frames per run, "
        f"seeds {' '.join(map(str, args.seed))}, {args.episodes} evaluation episodes"
    )
    header = f"{'predators':>9}  {'model':<28}{'success':>9}{'95% CI':>10}{'return':>9}{'vs mlp':>9}   success per seed"
    print(header)
    print("-" * len(header))
    for n in args.agents:
        base = results.get((n, "mlp"))
        for label, _, _ in variants:
            runs = results[(n, label)]
            (success, half), (final, _) = interval([s for s, _ in runs]), interval([f for _, f in runs])
            gain = f"{success - statistics.fmean(s for s, _ in base):+.3f}" if base else ""
            per_seed = "  ".join(f"{s:.3f}" for s, _ in runs)
            print(f"{n:>9}  {label:<28}{success:>9.3f}{'+-' + format(half, '.3f'):>10}{final:>9.3f}{gain:>9}   {per_seed}")


if __name__ == "__main__":
    main()
