"""Evaluation during training: every `every_n_iters` iterations and after the last one (so a
run shorter than the interval is still evaluated), run the evaluation episodes
(on rank 0) and log `eval/episode_reward_mean` (+ std, per-agent means); optionally render the
first episode to `<run-dir>/videos/iter_<N>.gif` and to W&B."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import WandbLogger

from ca12.data.evaluator import Evaluator, save_gif


class EvaluationCallback(L.Callback):
    def __init__(self, evaluator: Evaluator, every_n_iters: int, video_dir: str | Path | None = None):
        self.evaluator = evaluator
        self.every_n_iters = every_n_iters
        self.video_dir = Path(video_dir) if video_dir else None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        iteration = trainer.current_epoch + 1  # one epoch is one iteration
        last = iteration >= trainer.max_epochs
        if self.every_n_iters <= 0 or (iteration % self.every_n_iters and not last) or not trainer.is_global_zero:
            return
        result = self.evaluator.run(pl_module.policy, render=self.video_dir is not None)
        # Straight to the loggers, in this iteration's row/step, before its checkpoint is written.
        metrics = {**result.metrics(), "time/iteration": float(pl_module.iterations)}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=pl_module.iterations - 1)
            logger.save()
        pl_module.last_eval = result
        if self.video_dir is not None and result.frames:
            gif = save_gif(result.frames, self.video_dir / f"iter_{iteration:05d}.gif")
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    import wandb

                    logger.experiment.log({"eval/video": wandb.Video(str(gif), format="gif")})
