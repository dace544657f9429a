"""A run's pipeline, once its config and run directory are settled (ca12/run/train.py): the env,
the algorithm's LightningModule and data module, the callbacks and loggers, and a Lightning
Trainer that writes everything to the run directory (config.yaml, metrics.csv, checkpoints/,
wandb/). Imported only when a run starts: everything heavy is imported here, at the top.
"""

from __future__ import annotations

import os
import shutil
import sys
from functools import partial
from pathlib import Path

import lightning as L
from omegaconf import OmegaConf

from ca12.algos import algo_class
from ca12.callbacks import EvaluationCallback, GracefulStop, IterationCheckpoint, make_callbacks
from ca12.callbacks.hyperparameters import ConfigHyperparameters
from ca12.cli import Interrupted, out_of_memory
from ca12.data.evaluator import Evaluator
from ca12.envs import make_env, make_spec_env
from ca12.errors import UsageError
from ca12.run.config import num_iterations
from ca12.run.rundir import RUN_DIR_VAR, check_state, holds_run, launched_rank, read_checkpoint, remember_run, run_is_complete
from ca12.run.tracking import final_summary, finish_wandb, make_loggers
from ca12.run.trainer import check_devices, make_trainer


def train(cfg, run_dir: Path, ckpt_path: Path | None, saved: dict) -> Path:
    """Train the run `cfg` describes in `run_dir`, from `ckpt_path` (with its ca12 state `saved`)
    when it resumes; returns the run directory. A run that has trained its frames says so and
    returns; a run directory created here is removed again if it ends up holding no run."""
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
        trainer = make_trainer(cfg, run_dir, loggers, [ConfigHyperparameters(), *callbacks])
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
        print(final_summary(trainer.callback_metrics, module, run_dir, stop.requested))
    if stop.requested is not None:
        raise Interrupted(stop.requested)
    return run_dir


def make_run_callbacks(cfg, run_dir: Path, evaluator) -> list:
    """The Trainer's callbacks: the `callbacks` section's entries in its order (conf/callbacks/),
    ca12's own given what only the run knows (the evaluator, where its videos and checkpoints
    go), then `GracefulStop`, always last: after the checkpoint, so a signal stops the run once
    its iteration is saved."""
    runtime = {
        EvaluationCallback: {"evaluator": evaluator, "video_dir": run_dir / "videos" if cfg.eval.video else None},
        IterationCheckpoint: {"dirpath": run_dir / "checkpoints"},
    }
    return make_callbacks(cfg.callbacks, runtime) + [GracefulStop()]


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
