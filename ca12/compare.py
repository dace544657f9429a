"""`python -m ca12.compare`: compare algorithms over seeds with rliable's interval estimates.

    python -m ca12.compare DIR... [--out DIR] [--metric eval|final] [--last K]
                           [--normalise [ENV=]MIN,MAX]... [--target [ENV=]VALUE]...
                           [--reps N] [--seed N] [--points N] [--wandb | --no-wandb]

Each DIR is a run directory or any folder above runs (a sweep): every folder holding config.yaml
and metrics.csv is a run (its own subfolders are not searched, nor are `wandb/` folders). Runs
are grouped by algorithm x env (`algo.name` x `env.family/env.task`), the seeds of a group being
its runs. Runs of one algorithm and env whose configs differ in more than the seed (and the
`logger`, `callbacks` and `checkpoint` sections), e.g. a sweep over `algo.lr`, are kept apart
and labelled by what differs (`mappo algo.lr=0.001`); two runs of a group with the same seed
are refused, as they are not independent samples.

A run's score is its final return, the mean of the last K values of
- `--metric eval` (default): `eval/episode_reward_mean`, K = 1 by default. In an env where some
  run logged no evaluation, every run is scored by its rollout return instead (one measure per
  env; the report says so).
- `--metric final`: `rollout/episode_reward_mean`, the return of the training episodes, K = the
  last 10 % of the run's iterations (at least 1) by default.
`--last K` sets K. `--normalise MIN,MAX` maps every env's scores and curves to
(x - MIN) / (MAX - MIN), `--normalise ENV=MIN,MAX` one env's (`--normalise=-1,1` for a negative
MIN). The optimality gap, gamma - mean(min(score, gamma)), needs a target gamma: `--target`
(`ENV=VALUE` for one env), by default 1.0 in a normalised env; a raw env without a target has
no optimality gap.

The statistics are rliable's (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical
Precipice"), none re-implemented: per group the IQM, mean, median and optimality gap with
stratified-bootstrap intervals (`library.get_interval_estimates`; rliable's median is the median
over tasks of the per-task means, so an env's table, one task, gives it the transposed score
matrix: the median over runs); per env and pair of
algorithms the probability of improvement P(X > Y) (`metrics.probability_of_improvement`, the
Mann-Whitney U statistic over n x m, with the independent stratified bootstrap rliable uses for
a pair of score arrays); performance profiles (`library.create_performance_profile`: the
fraction of runs whose score exceeds tau); and sample-efficiency curves, the IQM over seeds of
the runs' return curves interpolated linearly on a common frame grid (`--points` frames from the
env's latest first frame to its earliest last frame, so no curve is extrapolated), with
intervals. When every env is normalised and each algorithm has as many runs in every env, an
"all envs" table aggregates over the envs as rliable does (runs x tasks score matrices).
rliable's bootstraps draw from NumPy's global generator (`np.random.choice`, whatever
`random_state` says), so every estimate runs with it seeded by `--seed` and restored after: the
same runs give the same intervals, and `np.random.seed(seed)` before rliable's call reproduces
any of them.

Writes to `--out` (default `<first DIR>/compare`): report.md (a table per env: algorithm, runs,
IQM, mean, median, optimality gap with intervals, then the probabilities of improvement, the
plots and the runs), summary.json (`Comparison.to_dict()`), and per env `<family>-<task>_curves.png`,
`_intervals.png` and `_profile.png`. With `--wandb`, or when the runs logged to W&B (their config
has `logger.wandb`; `--no-wandb` skips it), a new W&B run (job type `compare`, in the runs'
project) gets the table and the plots, offline when W&B cannot be reached, as `ca12.fit` does.

Intervals need two runs: a group of one run gets point estimates without intervals, and the
report (and a one-line note on stderr) says which groups (`Comparison.notes`); a first look at
single-seed runs is still a comparison worth writing.

This module is the command line; the work is ca12/analysis/'s (runs.py: reading and grouping runs,
statistics.py: rliable's estimates, report.py: `compare`, outputs.py and plots.py: the files and W&B).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

from ca12.analysis.outputs import log_to_wandb, markdown, write_outputs
from ca12.analysis.report import ANY_ENV, compare
from ca12.analysis.runs import METRICS
from ca12.cli import OneLineParser, run_command
from ca12.errors import UsageError


def _options(specs: list[str], parse: Callable[[str], Any], flag: str, form: str) -> dict[str, Any] | None:
    """`[ENV=]VALUE` options as {env or "*": parsed value}."""
    if not specs:
        return None
    options = {}
    for spec in specs:
        env, sep, value = spec.rpartition("=")
        try:
            options[env if sep else ANY_ENV] = parse(value)
        except ValueError:
            raise UsageError(f"{flag} takes {form}, e.g. {flag} vmas/navigation={'0,1' if ',' in form else '1'}; got '{spec}'") from None
    return options


def _bounds(text: str) -> tuple[float, float]:
    low, high = (float(v) for v in text.split(","))  # ValueError unless exactly two numbers
    return low, high


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="python -m ca12.compare", description="Compare ca12 runs over seeds with rliable's interval estimates.")
    parser.add_argument(
        "paths", nargs="+", type=Path, metavar="DIR", help="run directories, or folders to search for runs (config.yaml + metrics.csv)"
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (default <first DIR>/compare)")
    parser.add_argument(
        "--metric",
        choices=list(METRICS),
        default="eval",
        help="eval: evaluation returns (rollout returns in an env where a run logged none); final: rollout returns",
    )
    parser.add_argument(
        "--last",
        type=int,
        default=None,
        metavar="K",
        help="a score is the mean of the last K values (default 1 evaluation, or the last 10%% of iterations' rollout returns)",
    )
    parser.add_argument(
        "--normalise",
        action="append",
        default=[],
        metavar="[ENV=]MIN,MAX",
        help="normalise scores to (x - MIN) / (MAX - MIN), for every env or one (repeat); --normalise=-1,1 for a negative MIN",
    )
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="[ENV=]VALUE",
        help="the optimality gap's target (default 1.0 in a normalised env, none in a raw one)",
    )
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="NumPy seed of every bootstrap (default 0)")
    parser.add_argument("--points", type=int, default=25, help="frames on the learning curves' common grid (default 25)")
    parser.add_argument(
        "--wandb",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="log the table and plots to a new W&B run (default: when the runs logged to W&B)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    def body() -> None:
        args = build_parser().parse_args(argv)
        normalise = _options(args.normalise, _bounds, "--normalise", "[ENV=]MIN,MAX")
        target = _options(args.target, float, "--target", "[ENV=]VALUE")
        comparison = compare(
            args.paths, metric=args.metric, last=args.last, normalise=normalise, target=target, reps=args.reps, seed=args.seed, points=args.points
        )
        for note in comparison.notes:
            print(f"ca12.compare: note: {note}", file=sys.stderr)
        out = args.out or args.paths[0] / "compare"
        files = write_outputs(comparison, out)
        print(markdown(comparison))
        if args.wandb or (args.wandb is None and comparison.wandb is not None):
            folder = log_to_wandb(comparison, files, out)
            if folder:
                print(f"ca12.compare: logged to W&B ({folder})")
        print(f"ca12.compare: report {out / 'report.md'}, summary.json and {len(files) - 2} plots in {out}")

    return run_command("ca12.compare", body)


if __name__ == "__main__":
    sys.exit(main())
