"""Checkpoints per training iteration, written atomically.

`last.ckpt` is rewritten after every iteration and `iter_<N>.ckpt` kept every `every_n_iters`.
Each file is written under a temporary name and renamed into place, so a crash mid-write
leaves the previous `last.ckpt` intact.
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L


class IterationCheckpoint(L.Callback):
    def __init__(self, dirpath: str | Path, every_n_iters: int):
        self.dirpath = Path(dirpath)
        self.every_n_iters = every_n_iters

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        iteration = trainer.current_epoch + 1  # one epoch is one iteration
        self.save(trainer, self.dirpath / "last.ckpt")
        if iteration % self.every_n_iters == 0:
            self.save(trainer, self.dirpath / f"iter_{iteration:05d}.ckpt")

    @staticmethod
    def save(trainer: L.Trainer, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        trainer.save_checkpoint(tmp, weights_only=False)  # written by rank 0 only; all ranks take part
        if trainer.is_global_zero:
            os.replace(tmp, path)
