"""One training run, as `python -m ca12.fit` starts it: the command line read into a config and
a run directory (fresh or resumed), then the pipeline that builds the env, the algorithm's
LightningModule and its data module and hands them to a Lightning Trainer that writes everything
to the run directory: config.yaml, metrics.csv, checkpoints/ and wandb/.

`ca12.fit` (the command), `ca12.train` (the Python API), sweeps and PBT's members all train
through `run(fit_args(...))`, so they train as the command does and fail with its messages.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from functools import cache, partial
from pathlib import Path

from ca12.algos import DEFAULT_ENV, default_env
from ca12.cli import Interrupted, OneLineParser, check_writable, out_of_memory, quiet_libraries
from ca12.errors import UsageError
from ca12.run.rundir import RUN_DIR_VAR, default_run_dir, find_resume_checkpoint, holds_run, launched_rank, remember_run


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
    from ca12.run.config import load_config, saved_config
    from ca12.run.experiments import experiment_choice, experiment_target
    from ca12.run.trainer import gpu_overrides

    if args.resume:
        from ca12.run.rundir import read_checkpoint, run_dir_of  # torch, Lightning: a fresh run's refusals answer without them
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
    from ca12.run.config import load_config

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


def run_is_complete(cfg, saved: dict) -> bool:
    """Whether the run a checkpoint's ca12 state `saved` belongs to has trained the
    `collector.total_frames` of `cfg` (False for a fresh run: `saved` is empty)."""
    return bool(saved) and saved.get("frames", 0) >= cfg.collector.total_frames


def run(args: argparse.Namespace) -> Path | None:
    """Train as `args` say; returns the run directory (None when there was nothing to do)."""
    cfg, run_dir, ckpt_path, saved = resolve_run(args)
    if args.show_config:
        from ca12.run.config import describe

        print(describe(cfg))
        return None
    # Only a run imports torch, TorchRL and Lightning: a refused config and --show-config answer
    # without them (docs/ARCHITECTURE.md, "What may be imported at start-up").
    quiet_libraries()
    import lightning as L
    from omegaconf import OmegaConf

    from ca12.algos import algo_class
    from ca12.data.evaluator import Evaluator
    from ca12.envs import make_env, make_spec_env
    from ca12.run.config import num_iterations
    from ca12.run.tracking import finish_wandb, make_loggers
    from ca12.run.trainer import check_devices, make_trainer

    check_devices(cfg)
    if run_is_complete(cfg, saved):
        print(
            f"ca12.fit: the run in {run_dir} is complete ({saved['frames']} of collector.total_frames={cfg.collector.total_frames} frames); "
            f"train it longer with --resume {run_dir} collector.total_frames=N (N > {saved['frames']})"
        )
        return run_dir
    _note_rounding(cfg)
    algorithm = algo_class(cfg.algo.name)

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    spec_env = make_spec_env(cfg.env, cfg.seed)
    module = algorithm(cfg, spec_env)
    if ckpt_path:  # weights that do not fit the config are refused before anything of the run is written
        from ca12.run.rundir import check_state, read_checkpoint

        check_state(module, read_checkpoint(ckpt_path, mmap=True)["state_dict"], ckpt_path)
    transforms = module.env_transforms()
    env_factory = partial(make_env, cfg.env, transforms=transforms, training=True)
    datamodule = algorithm.make_datamodule(cfg, env_factory)
    evaluator = Evaluator(cfg.env, cfg.eval.episodes, cfg.seed, cfg.eval.deterministic, cfg.algo.groups, transforms)
    callbacks = make_run_callbacks(cfg, run_dir, evaluator)  # before the run directory: bad arguments write nothing
    stop = callbacks[-1]

    created = launched_rank() == 0 and not run_dir.exists()
    try:
        if launched_rank() == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
            os.environ[RUN_DIR_VAR] = str(run_dir.resolve())
            if not ckpt_path:
                remember_run(run_dir)
        loggers = make_loggers(cfg, run_dir, wandb_id=saved.get("wandb_id"), resume_iteration=saved.get("iterations"))
        trainer = make_trainer(cfg, run_dir, loggers, [config_hyperparameters(), *callbacks])
        # One epoch = one collector batch per process = one iteration; frames count over all processes.
        trainer.fit_loop.max_epochs = num_iterations(cfg, trainer.world_size, saved.get("iterations", 0), saved.get("frames", 0))
        try:
            # weights_only=True: PyTorch's safe loader; a checkpoint holds plain values only (ca12.run.rundir).
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True)
        finally:
            finish_wandb(loggers)
            if launched_rank() == 0:
                os.environ.pop(RUN_DIR_VAR, None)
    except BaseException as exc:
        if created and not holds_run(run_dir):  # never leave a run directory that holds no run
            shutil.rmtree(run_dir, ignore_errors=True)
        if out_of_memory(exc):
            raise UsageError(
                f"out of memory ({type(exc).__name__}) with env.num_envs={cfg.env.num_envs}, "
                f"collector.frames_per_batch={cfg.collector.frames_per_batch}: lower them"
            ) from None
        raise
    if trainer.is_global_zero:
        from ca12.run.tracking import final_summary

        print(final_summary(trainer.callback_metrics, module, run_dir, stop.requested))
    if stop.requested is not None:
        raise Interrupted(stop.requested)
    return run_dir


def make_run_callbacks(cfg, run_dir: Path, evaluator) -> list:
    """The Trainer's callbacks: the `callbacks` section's entries in its order (conf/callbacks/),
    ca12's own given what only the run knows (the evaluator, where its videos and checkpoints
    go), then `GracefulStop`, always last: after the checkpoint, so a signal stops the run once
    its iteration is saved."""
    from ca12.callbacks import EvaluationCallback, GracefulStop, IterationCheckpoint, make_callbacks

    runtime = {
        EvaluationCallback: {"evaluator": evaluator, "video_dir": run_dir / "videos" if cfg.eval.video else None},
        IterationCheckpoint: {"dirpath": run_dir / "checkpoints"},
    }
    return make_callbacks(cfg.callbacks, runtime) + [GracefulStop()]


def _config_buffers(module) -> dict:
    """The buffers of `module` that hold a config value rather than learnt state: those TorchRL's
    losses declare schedulable (`entropy_coeff`, `critic_coeff`, `clip_epsilon`, `clip_value`,
    SAC's alpha bounds, DQN's `gamma`...) and every buffer of a value estimator (`gamma`,
    `lmbda`, V-trace's clips). Name -> a copy."""
    from torchrl.objectives import LossModule
    from torchrl.objectives.value import ValueEstimatorBase

    found = {}
    for prefix, sub in module.named_modules():
        if isinstance(sub, LossModule):
            names = type(sub)._all_schedulable_buffers
        elif isinstance(sub, ValueEstimatorBase):
            names = set(sub._buffers)
        else:
            continue
        for name in names:
            if sub._buffers.get(name) is not None:
                found[f"{prefix}.{name}" if prefix else name] = sub._buffers[name].detach().clone()
    return found


def config_hyperparameters():
    """A Lightning callback by which a resumed run trains with its config's hyperparameters, not
    the checkpoint's.

    Lightning restores the module's state dict and each optimiser's state dict, and both carry
    hyperparameters: the optimisers' parameter groups their `lr` (and betas, eps, weight decay),
    TorchRL's losses and value estimators their coefficients as buffers (`entropy_coeff`,
    `clip_epsilon`, `gamma`, `lmbda`...). So `--resume RUN algo.lr=...` (PBT's explore step) would
    silently keep the old values. The callback notes what the config built, before the restore
    (`setup`: the module's buffers; `on_fit_start`: the optimisers' groups), and puts it back after
    (`on_train_start`), keeping the learnt state (weights, Adam's moments and step counts). A
    group with `initial_lr` (an annealed or scheduled lr) gets the config's lr as its schedule's
    base. On a run resumed with its own config this changes nothing.
    """
    return _config_hyperparameters_class()()


@cache
def _config_hyperparameters_class() -> type:
    import torch
    from lightning.pytorch import Callback  # here, not at the top: `--list` and usage errors stay fast

    class ConfigHyperparameters(Callback):
        def setup(self, trainer, pl_module, stage: str) -> None:
            self.buffers = _config_buffers(pl_module)

        def on_fit_start(self, trainer, pl_module) -> None:
            self.groups = [[{k: v for k, v in group.items() if k != "params"} for group in opt.param_groups] for opt in trainer.optimizers]

        @torch.no_grad()
        def on_train_start(self, trainer, pl_module) -> None:
            for name, value in self.buffers.items():
                pl_module.get_buffer(name).copy_(value)
            for opt, groups in zip(trainer.optimizers, self.groups):
                for group, fresh in zip(opt.param_groups, groups):
                    if "initial_lr" in group:
                        group["initial_lr"] = fresh["lr"]
                    group.update(fresh)

    return ConfigHyperparameters


def _note_rounding(cfg) -> None:
    """Say so when total_frames is not a whole number of batches (the last batch overshoots)."""
    fpb, total = cfg.collector.frames_per_batch, cfg.collector.total_frames
    if total % fpb:
        iterations = -(-total // fpb)
        print(
            f"ca12.fit: note: collector.total_frames={total} is not a multiple of collector.frames_per_batch={fpb}; "
            f"training runs {iterations} iterations = {iterations * fpb} frames",
            file=sys.stderr,
        )
