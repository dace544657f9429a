"""One training run, as `python -m ca12.fit` starts it: the command line read into a config and
a run directory (fresh or resumed), refused in one line where it cannot run, then handed to the
pipeline (ca12/run/pipeline.py) that builds the env, the algorithm's LightningModule and its data
module and trains them with a Lightning Trainer. This module imports nothing heavy (the
pipeline is imported when a run starts), so usage errors and `--show-config` answer fast.

`ca12.fit` (the command), `ca12.train` (the Python API), sweeps and PBT's members all train
through `run(fit_args(...))`, so they train as the command does and fail with its messages.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ca12.algos import DEFAULT_ENV, default_env
from ca12.cli import OneLineParser, check_writable, quiet_libraries
from ca12.errors import UsageError
from ca12.run.config import describe, load_config, saved_config
from ca12.run.experiments import experiment_choice, experiment_target
from ca12.run.rundir import (
    RUN_DIR_VAR,
    default_run_dir,
    find_resume_checkpoint,
    holds_run,
    launched_rank,
    read_checkpoint,
    run_dir_of,
    run_is_complete,
)
from ca12.run.trainer import gpu_overrides


def fit_parser() -> argparse.ArgumentParser:
    """The command line of `python -m ca12.fit` (a single run; `-m` sweeps have their own)."""
    parser = OneLineParser(prog="python -m ca12.fit", description="Train a ca12 algorithm.")
    parser.add_argument("--algo", help="algorithm name (see --list)")
    parser.add_argument("--env", default=None, help=f"FAMILY/TASK (default {DEFAULT_ENV}, or the algorithm's own family: maml meta/navigation)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    parser.add_argument("--run-dir", type=Path, default=None, help="run directory (default runs/<algo>/<family>-<task>/<timestamp>)")
    parser.add_argument(
        "--resume", default=None, metavar="last|PATH", help="continue the newest run of this algo/env, or a run directory / checkpoint file"
    )
    parser.add_argument("--list", action="store_true", help="print the known algorithms and envs, one per line")
    parser.add_argument("--show-config", action="store_true", help="print the composed config with each key's one-line doc, and exit")
    parser.add_argument(
        "-m",
        "--multirun",
        action="store_true",
        help="a sweep: every combination of the comma lists in --algo, --env, --seed and KEY=a,b, one run each under --run-dir "
        "(-m --help: its launchers and options)",
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. algo.lr=1e-4 trainer=gpu")
    return parser


def resolve_run(args: argparse.Namespace):
    """The run's config, run directory, checkpoint to resume from and that checkpoint's ca12 state."""
    if args.resume:
        from ca12.run.tracking import resumed_rows

        ckpt_path = find_resume_checkpoint(args.resume, args.algo, args.env or default_env(args.algo))
        saved = read_checkpoint(ckpt_path)["ca12"]
        cfg = saved_config(saved["run_config"], str(ckpt_path), args.overrides, seed=args.seed)
        if args.algo and args.algo != cfg.algo.name:
            raise UsageError(f"--resume: {ckpt_path} is a {cfg.algo.name} run, not {args.algo}")
        run_dir = run_dir_of(ckpt_path)
        _check_resume_flags(args, cfg, run_dir)
        if launched_rank() == 0 and not run_is_complete(cfg, saved):
            # a metrics.csv that training would replace is refused here, before config.yaml is rewritten
            resumed_rows(run_dir / "metrics.csv", saved.get("iterations", 0))
        return cfg, run_dir, ckpt_path, saved
    algo, env = args.algo, args.env
    experiment = experiment_choice(args.overrides)
    if experiment is not None and not algo:  # the experiment names its algorithm and env
        algo, tuned_env = experiment_target(experiment)
        env = env or tuned_env
    if not algo:
        raise UsageError("--algo is required (see --list)")
    env = env or default_env(algo)
    cfg = load_config(algo, env, [*args.overrides, *gpu_overrides(env, args.overrides)], seed=args.seed)
    launched_many = int(os.environ.get("WORLD_SIZE", "1")) > 1 or int(os.environ.get("SLURM_NTASKS", "1")) > 1
    if args.run_dir is None and launched_many and not (launched_rank() > 0 and os.environ.get(RUN_DIR_VAR)):
        raise UsageError("launched as several processes (torchrun/SLURM): pass the same --run-dir to every process")
    inherited = os.environ.get(RUN_DIR_VAR) if launched_rank() > 0 else None
    run_dir = args.run_dir or Path(inherited or default_run_dir(algo, env))
    if holds_run(run_dir) and launched_rank() == 0:
        raise UsageError(f"run directory '{run_dir}' already holds a run; pass --resume {run_dir} to continue it or choose another --run-dir")
    if launched_rank() == 0:
        check_writable(run_dir, "--run-dir" if args.run_dir else "run directory")
    return cfg, run_dir, None, {}


def _check_resume_flags(args: argparse.Namespace, cfg, run_dir: Path) -> None:
    """`--env` and `--run-dir` choose a fresh run's env and directory; with `--resume` they may
    only restate the resumed run's own (the user repeating its command), as they would otherwise
    be ignored without a word. An `--env` that names the run's env through its YAML (whose task
    may read otherwise, e.g. matrix/rps5_switching's `custom`) is composed to compare."""
    env = f"{cfg.env.family}/{cfg.env.task}"
    if args.env is not None and args.env != env:
        given = load_config(cfg.algo.name, args.env).env
        if (given.family, given.task) != (cfg.env.family, cfg.env.task):
            raise UsageError(f"--resume: the run in {run_dir} trains on {env}, not --env {args.env}; a resumed run keeps its env (leave --env out)")
    if args.run_dir is not None and args.run_dir.resolve() != run_dir.resolve():
        raise UsageError(f"--resume: the run continues in its own directory {run_dir}, not --run-dir {args.run_dir} (leave --run-dir out)")


def fit_args(
    algo: str | None = None,
    env: str | None = None,
    seed: int | None = None,
    run_dir: str | Path | None = None,
    resume: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> argparse.Namespace:
    """The parsed command line `python -m ca12.fit --algo ALGO --env ENV --seed SEED --run-dir DIR
    --resume RUN KEY=VALUE...` (flags left out when None): `ca12.train` and sweeps hand it to
    `run`, so they train as that command does and fail with its messages."""
    flags = {"--algo": algo, "--env": env, "--seed": seed, "--run-dir": run_dir, "--resume": resume}
    argv = [text for flag, value in flags.items() if value is not None for text in (flag, str(value))]
    return fit_parser().parse_intermixed_args([*argv, *overrides])


def run(args: argparse.Namespace) -> Path | None:
    """Train as `args` say; returns the run directory (None when there was nothing to do)."""
    cfg, run_dir, ckpt_path, saved = resolve_run(args)
    if args.show_config:
        print(describe(cfg))
        return None
    # Only a run imports torch, TorchRL and Lightning: a refused config and --show-config answer
    # without them (docs/ARCHITECTURE.md, "What may be imported at start-up").
    quiet_libraries()
    from ca12.run.pipeline import train

    return train(cfg, run_dir, ckpt_path, saved)
