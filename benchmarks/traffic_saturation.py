"""Traffic signals towards saturation: fixed-time against max-pressure as the arrival rate grows.

    python benchmarks/traffic_saturation.py                               # traffic/grid4x4, rates 0.5 .. 2.0
    python benchmarks/traffic_saturation.py --env traffic/grid2x2 --rates 0.8 1.2 --episodes 200
    python benchmarks/traffic_saturation.py --skew 0.5     # N-S entries at 1.5x the rate, E-W at 0.5x

Issue #32's question: the course's "30-50 % less congestion with coordination" needs a regime with
congestion to remove; on traffic/grid2x2 at 0.8 vehicles per step and entry even max-pressure
(Varaiya 2013) waits only 6 % less than fixed-time. This script finds where the two classical
controllers part: for each arrival rate (`env.arrival_rate`, Poisson vehicles per step at every
entry) it runs, on the same `--episodes` evaluation episodes (the evaluator's seed), max-pressure
and fixed-time at every cycle of `--cycles` (the default cycle, the shortest `min_green` allows, is
not always the best: the table keeps the best of them, a tuned fixed-time plan, so the comparison
is with the classical baseline at its best). Prints per rate the waiting time (s per vehicle), the
queue (vehicles) and the throughput (vehicles per step) of each, and max-pressure's change of the
waiting time against the best fixed-time plan. `--skew s` makes the demand uneven: the entries
from north and south get rate x (1 + s), those from east and west rate x (1 - s), the same mean
(FixedTime splits its cycle equally; a split tuned to the demand is not offered). No learning: a
few seconds per rate.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

from ca12.data.evaluator import Evaluator  # noqa: E402
from ca12.envs.traffic import _OFFSETS as OFFSETS  # noqa: E402  (the sides N, E, S, W, as grid_network numbers them)
from ca12.envs.traffic import FixedTime, MaxPressure  # noqa: E402
from ca12.run.config import load_config  # noqa: E402


def entry_rates(env: str, rate: float, skew: float) -> str:
    """`env.arrival_rate` as a list over the grid's entries (row-major intersections, sides N, E, S,
    W without a neighbour, as `grid_network` numbers them): N and S at rate (1 + skew), E and W at
    rate (1 - skew)."""
    grid = load_config("mappo", env).env
    rates = [
        rate * (1 + skew if side in (0, 2) else 1 - skew)
        for r in range(grid.rows)
        for c in range(grid.cols)
        for side, (dr, dc) in enumerate(OFFSETS)
        if not (0 <= r + dr < grid.rows and 0 <= c + dc < grid.cols)
    ]
    return "[" + ",".join(f"{x:.6g}" for x in rates) + "]"


def score(env: str, rate: float, skew: float, episodes: int, policy_of, seed: int) -> dict[str, float]:
    """Mean episode statistics (and the return) of `policy_of(env) -> policy` at arrival rate `rate`."""
    cfg = load_config("mappo", env, [f"env.arrival_rate={entry_rates(env, rate, skew)}"], seed)
    evaluator = Evaluator(cfg.env, episodes, cfg.seed, deterministic=True)
    result = evaluator.run(policy_of(evaluator.env))
    return {name: mean for name, (mean, _) in result.stats.items()} | {"return": result.episode_reward_mean}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="traffic/grid4x4")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.5, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0])
    parser.add_argument("--cycles", type=int, nargs="+", default=[8, 12, 16, 24], help="fixed-time cycles tried (even, >= 2 (min_green + 1))")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skew", type=float, default=0.0, help="N-S entries at rate (1 + skew), E-W at rate (1 - skew)")
    args = parser.parse_args()
    header = f"{'rate':>5}  {'controller':<28}{'waiting (s/veh)':>16}{'queue':>8}{'throughput':>11}{'return':>9}"
    print(f"{args.env}, skew {args.skew}, {args.episodes} evaluation episodes per controller (seed {args.seed})\n{header}\n{'-' * len(header)}")
    for rate in args.rates:
        fixed = {c: score(args.env, rate, args.skew, args.episodes, lambda env, c=c: FixedTime(env, cycle=c), args.seed) for c in args.cycles}
        best = min(fixed, key=lambda c: fixed[c]["waiting_time"])
        pressure = score(args.env, rate, args.skew, args.episodes, MaxPressure, args.seed)
        rows = [(f"fixed-time, cycle {best} (best)", fixed[best]), (f"fixed-time, cycle {args.cycles[0]}", fixed[args.cycles[0]])]
        for label, s in [*rows[: 1 if best == args.cycles[0] else 2], ("max-pressure", pressure)]:
            print(f"{rate:>5.2f}  {label:<28}{s['waiting_time']:>16.2f}{s['queue']:>8.2f}{s['throughput']:>11.2f}{s['return']:>9.2f}")
        change = pressure["waiting_time"] / fixed[best]["waiting_time"] - 1
        print(f"{'':>5}  max-pressure vs the best fixed-time plan: waiting time {change:+.1%}", flush=True)


if __name__ == "__main__":
    main()
