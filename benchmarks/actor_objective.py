"""What MADDPG's and MASAC's actors ascend (`algo.actor_objective`, ca12/algos/actor_objective.py):
the paper's per-agent form (`own`: actor i on its own Q_i, the others' actions from the buffer,
a critic per agent) against TorchRL's/BenchMARL's (`team`: every actor on the mean of all agents'
Q, every action from the current actors; the critic shared, so it fits the mean reward).

    python benchmarks/actor_objective.py                  # MADDPG, seeds 0 1 2
    python benchmarks/actor_objective.py --algo masac --seed 0 1 2 3

The task is vmas/navigation as ca12 configures it: individual rewards (each agent is paid for its
own progress to its own goal, and penalised for its own collisions), so the two objectives train
different things. Both variants run the learning row's budget and settings
(benchmarks/learning.py); the figure is the row's (the mean rollout return of the last 3
iterations), with each seed's value, the mean and its 95 % Student-t interval over seeds.

Measured 2026-12-07 (MADDPG, 150 k frames, seeds 0 1 2, 2 shared CPU cores, OMP_NUM_THREADS=1):
own 0.880 +/- 0.017 (0.887 0.873 0.880, 554-575 s a run), team 0.854 +/- 0.039 (0.848 0.872
0.842, 316-326 s a run). On this task the two reach about the same return (the intervals
overlap); the paper's form costs about 1.8x the time (a critic per agent, and N critic passes
in each actor step). Navigation is cooperative at heart (its agents gain by avoiding each
other); the objectives part ways where the agents' rewards conflict.
"""

from __future__ import annotations

import argparse
import dataclasses

from learning import ROWS, interval, run

# The team form as TorchRL and BenchMARL wire it: one centralised critic shared by the agents.
VARIANTS = {
    "own": ["algo.actor_objective=own", "critic_model.share_params=false"],
    "team": ["algo.actor_objective=team", "critic_model.share_params=true"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="maddpg", choices=("maddpg", "masac"))
    parser.add_argument("--seed", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    row = next(r for r in ROWS if r.algo == args.algo and r.env == "vmas/navigation")
    finals = {}
    for name, overrides in VARIANTS.items():
        variant = dataclasses.replace(row, overrides=[*row.overrides, *overrides])
        finals[name] = []
        for seed in args.seed:
            final, seconds = run(variant, seed)
            finals[name].append(final)
            print(f"{args.algo} actor_objective={name} seed {seed}: {final:.3f} in {seconds:.0f} s", flush=True)
    print(f"\n{args.algo} on {row.env}, {row.frames} frames, final return (mean of the last 3 iterations)")
    print(f"{'objective':<11}{'mean':>8}{'95 % interval':>16}  seeds")
    for name, values in finals.items():
        mean, half = interval(values)
        print(f"{name:<11}{mean:>8.3f}{f'+/- {half:.3f}':>16}  " + " ".join(f"{v:.3f}" for v in values))


if __name__ == "__main__":
    main()
