"""`python -m ca12.pbt`: population-based training (Jaderberg et al. 2017) of ca12 runs.

    python -m ca12.pbt --algo ALGO [--env FAMILY/TASK] --population N --ready FRAMES --frames FRAMES
                       --search KEY=PRIOR:ARGS [--search ...] [--dir DIR] [--seed N]
                       [--quantile Q] [--perturb F,F] [--resample P] [--backend local|ray] [KEY=VALUE ...]
    python -m ca12.pbt --resume DIR [--frames FRAMES]

`N` members, each an ordinary ca12 run in `DIR/member_<i>` (seed `--seed + i`), start from
hyperparameters drawn from the `--search` priors (`uniform:LOW:HIGH`, `loguniform:LOW:HIGH`,
`int:LOW:HIGH`, `choice:A,B,...`) and train in rounds of `--ready` frames up to `--frames`. After
each round every member is scored (its evaluation return at the round's end when evaluation is on,
else its mean `rollout/episode_reward_mean` over the round); the bottom `--quantile` copy the
checkpoint of a top member (weights and optimiser state) and perturb its hyperparameters (times
one of `--perturb`'s factors, or a new draw from the prior with probability `--resample`).
`DIR/members.csv` holds every member's hyperparameters and score per round, `DIR/exploits.csv`
who copied whom. The `KEY=VALUE` overrides apply to every member, as for `ca12.fit`.

`--backend local` (default) trains the members one after another in this process; `--backend
ray` lets Ray Tune's `PopulationBasedTraining` scheduler run them as Tune trials. An
interrupted population continues with `--resume DIR` (finished rounds are not redone); a
finished local one trains longer with `--resume DIR --frames N`. The
searched keys and their bounds are checked against ca12's config schemas before anything runs;
bad input exits with code 2 and one line.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ca12.algos import DEFAULT_ENV, default_env
from ca12.cli import OneLineParser, quiet_libraries, run_command
from ca12.errors import UsageError
from ca12.multirun.pbt.local import run_local
from ca12.multirun.pbt.members import SPEC_FILE, PopulationSpec, check_spec
from ca12.multirun.pbt.ray_tune import require_tune, run_ray
from ca12.untrusted import is_env_factory

BACKENDS = ("local", "ray")


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="python -m ca12.pbt", description="Population-based training of ca12 runs.")
    parser.add_argument("--algo", help="algorithm name (python -m ca12.fit --list)")
    parser.add_argument("--env", default=None, help=f"FAMILY/TASK (default {DEFAULT_ENV})")
    parser.add_argument("--population", type=int, default=None, help="number of members (at least 2)")
    parser.add_argument("--ready", type=int, default=None, help="frames each member trains between two exploit/explore steps")
    parser.add_argument("--frames", type=int, default=None, help="frames each member trains in all (a multiple of --ready)")
    parser.add_argument(
        "--search",
        action="append",
        default=[],
        metavar="KEY=PRIOR:ARGS",
        help="a searched key: uniform:LOW:HIGH, loguniform:LOW:HIGH, int:LOW:HIGH or choice:A,B,...",
    )
    parser.add_argument("--dir", type=Path, default=None, help="population directory (default runs/pbt/<algo>/<family>-<task>/<timestamp>)")
    parser.add_argument(
        "--seed", type=int, default=None, help=f"member i is seeded with seed + i; also seeds PBT's draws (default {PopulationSpec.seed})"
    )
    parser.add_argument(
        "--quantile", type=float, default=None, help=f"fraction at the bottom that copies the top (default {PopulationSpec.quantile})"
    )
    parser.add_argument("--perturb", default=None, metavar="F,F", help="explore's perturbation factors (default 0.8,1.2)")
    parser.add_argument(
        "--resample",
        type=float,
        default=None,
        help=f"probability of a new draw from the prior instead of a perturbation (default {PopulationSpec.resample_probability})",
    )
    parser.add_argument("--backend", choices=BACKENDS, default=None, help="local (default): in this process; ray: Ray Tune's PBT scheduler")
    parser.add_argument("--resume", type=Path, default=None, metavar="DIR", help="continue the population in DIR")
    parser.add_argument(
        "--trust-tune-state",
        action="store_true",
        help="with --resume of a --backend ray population: restore Ray Tune's experiment state, which Tune keeps as Python "
        "pickles (loading them runs code: pass this only for a directory you or someone you trust wrote)",
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides of every member, as for ca12.fit")
    return parser


def spec_from_args(args) -> tuple[PopulationSpec, Path]:
    """The population a command line describes (fresh or `--resume`), not yet checked."""
    if args.resume is not None:
        given = [
            name
            for name in ("algo", "env", "population", "ready", "search", "dir", "seed", "quantile", "perturb", "resample", "backend", "overrides")
            if getattr(args, name) not in (None, [])
        ]
        if given:
            raise UsageError(f"--resume continues a population as it was started; it takes only --frames (got --{given[0]})")
        spec = PopulationSpec.load(args.resume)
        if spec.backend == "ray" and not args.trust_tune_state:
            raise UsageError(
                f"'{args.resume}' is a ray-backed population: resuming it restores Ray Tune's experiment state, which Tune keeps as "
                "Python pickles that run code when loaded; pass --trust-tune-state if you or someone you trust wrote it"
            )
        if args.frames is not None and args.frames != spec.frames:
            if spec.backend == "ray":
                raise UsageError("--resume with --backend ray continues Tune's experiment as it was started: --frames cannot change")
            spec.frames = args.frames
        return spec, args.resume
    if not args.algo:
        raise UsageError("--algo is required (python -m ca12.fit --list)")
    for name in ("population", "ready", "frames"):
        if getattr(args, name) is None:
            raise UsageError(f"--{name} is required")
    try:
        factors = [float(f) for f in args.perturb.split(",")] if args.perturb else None
    except ValueError:
        raise UsageError(f"--perturb takes comma-separated numbers, e.g. 0.8,1.2; got '{args.perturb}'") from None
    given = {
        "algo": args.algo,
        "env": args.env or default_env(args.algo),
        "search": args.search,
        "population": args.population,
        "ready": args.ready,
        "frames": args.frames,
        "overrides": args.overrides,
        "seed": args.seed,
        "quantile": args.quantile,
        "perturbation_factors": factors,
        "resample_probability": args.resample,
        "backend": args.backend,
    }
    spec = PopulationSpec(**{name: value for name, value in given.items() if value is not None})  # the rest: PopulationSpec's defaults
    family, _, task = spec.env.partition("/")
    pbt_dir = args.dir or Path("runs") / "pbt" / spec.algo / f"{family}-{task}" / time.strftime("%Y%m%d-%H%M%S")
    if (pbt_dir / SPEC_FILE).is_file():
        raise UsageError(f"'{pbt_dir}' already holds a population; pass --resume {pbt_dir} to continue it or choose another --dir")
    return spec, pbt_dir


def run(args) -> list[dict]:
    """Check the population, then train it with its backend; returns the members table's rows."""
    spec, pbt_dir = spec_from_args(args)
    if spec.backend == "ray":
        require_tune()
    spec.score = check_spec(spec)
    spec.save(pbt_dir)
    print(
        f"ca12.pbt: {spec.population} members of {spec.algo} on {spec.env}, {spec.rounds} rounds of {spec.ready} frames, "
        f"scored by {spec.score}, backend {spec.backend}: {pbt_dir}"
    )
    if spec.backend == "ray":
        rows = run_ray(spec, pbt_dir)
    else:
        rows = run_local(spec, pbt_dir)
    print(f"ca12.pbt: tables {pbt_dir / 'members.csv'} and {pbt_dir / 'exploits.csv'}")
    return rows


def main(argv: list[str] | None = None) -> int:
    def body() -> None:
        args = build_parser().parse_intermixed_args(argv)
        if args.env is not None and is_env_factory(args.env):
            raise UsageError(
                f"--env {args.env}: populations do not train your own env (their members build envs in processes of their own); "
                "train it with python -m ca12.fit (-m for a sweep)"
            )
        quiet_libraries()
        run(args)

    return run_command("ca12.pbt", body, resume_hint="; continue with --resume")


if __name__ == "__main__":
    sys.exit(main())
