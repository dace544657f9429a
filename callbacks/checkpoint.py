"""Checkpoints per training iteration, written atomically, and a clean stop on Ctrl-C/SIGTERM.

`last.ckpt` is rewritten after every iteration and `iter_<N>.ckpt` kept every `every_n_iters`
(only the newest `keep` of them, when set: a long run of short iterations otherwise fills the disk).
With `every_s` (`checkpoint.every_s`), `last.ckpt` is rewritten only once that many seconds have
passed since its last write, for runs of many short iterations where writing it costs a real share
of each; the first and the last iteration, an iteration a stop signal (GracefulStop) ends and each
`iter_<N>.ckpt` still write it, so a stop loses nothing and a crash at most `every_s` seconds.
Each file is written under a temporary name and renamed into place, so a crash mid-write
leaves the previous `last.ckpt` intact. A replay buffer's contents go into segment files in
`buffer/` beside them (ca12/data/buffer_store.py), never modified once written; the files that
no checkpoint in the folder refers to any more are deleted after the iteration's checkpoints
are in place.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import lightning as L
from tqdm.auto import tqdm

from ca12.data.buffer_store import collect_garbage
from ca12.untrusted import unsafe_entry


class IterationCheckpoint(L.Callback):
    def __init__(self, dirpath: str | Path, every_n_iters: int, keep: int | None = None, every_s: float | None = None):
        self.dirpath = Path(dirpath)
        self.every_n_iters = every_n_iters
        self.keep = keep
        self.every_s = every_s
        self._written_at: float | None = None  # when last.ckpt was last written (time.monotonic)
        self._manifests: dict = {}  # the segment files each checkpoint refers to (collect_garbage's cache)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Tell a data module that saves files beside the checkpoints (a replay buffer's) where they go."""
        if hasattr(trainer.datamodule, "checkpoint_dir"):
            trainer.datamodule.checkpoint_dir = self.dirpath

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        """Refuse to write a state that `--resume` could not read back.

        Checkpoints are read with `torch.load(weights_only=True)`, so every entry (the data
        module's RNG, collector and buffer states, Lightning's own) must be a plain value; an
        object slipping in (a NumPy array, a TensorDict) fails the run at its first save instead
        of leaving checkpoints that no resume can load.
        """
        found = unsafe_entry(checkpoint)
        if found:
            raise TypeError(f"checkpoint entry {found} would not load with torch.load(weights_only=True); store plain values")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        iteration = trainer.current_epoch + 1  # one epoch is one iteration
        numbered = iteration % self.every_n_iters == 0
        if numbered or self.last_due(trainer, iteration):
            self.save(trainer, self.dirpath / "last.ckpt")
            self._written_at = time.monotonic()
        if numbered:
            self.save(trainer, self.dirpath / f"iter_{iteration:05d}.ckpt")
        if trainer.is_global_zero:
            if self.keep is not None:  # all but the newest `keep`, by iteration (past 99 999 the names outgrow their padding)
                numbered = [path for path in self.dirpath.glob("iter_*.ckpt") if path.stem.removeprefix("iter_").isdigit()]
                kept = sorted(numbered, key=lambda path: int(path.stem.removeprefix("iter_")))
                for path in kept[: -self.keep]:
                    path.unlink(missing_ok=True)
            collect_garbage(self.dirpath, self._manifests)  # and the buffer files only they referred to

    def last_due(self, trainer: L.Trainer, iteration: int) -> bool:
        """Whether `last.ckpt` is written after this iteration: always without `every_s`; with it,
        at the first and last iteration, when a stop was asked for, or `every_s` after the last
        write. Under DDP rank 0's clock decides for every rank (they all take part in a save)."""
        if self.every_s is None:
            return True
        stopping = trainer.should_stop or iteration >= trainer.max_epochs
        stopping = stopping or any(isinstance(cb, GracefulStop) and cb.requested is not None for cb in trainer.callbacks)
        due = stopping or self._written_at is None or time.monotonic() - self._written_at >= self.every_s
        return bool(trainer.strategy.broadcast(due, src=0))

    @staticmethod
    def save(trainer: L.Trainer, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        # weights_only=False here means the whole training state, not just the weights (it is
        # still all plain values, see `on_save_checkpoint`). Written by rank 0; all ranks take part.
        trainer.save_checkpoint(tmp, weights_only=False)
        if trainer.is_global_zero:
            os.replace(tmp, path)


class GracefulStop(L.Callback):
    """First SIGINT/SIGTERM: finish the current iteration, let its checkpoint be written, stop.
    A second one interrupts at once (the previous iteration's checkpoint is intact).

    The first signal is acknowledged at once on stderr (by rank 0): an iteration can take
    minutes, and a run that stays silent after Ctrl-C looks hung and gets killed, losing the
    iteration it was about to save.

    Must come after `IterationCheckpoint` in the callback list.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested: int | None = None
        self._previous: dict = {}
        self._speaks = True  # rank 0 only: under DDP every process gets the terminal's Ctrl-C

    def _handler(self, signum, frame):
        if self.requested is not None:
            self._restore()
            raise KeyboardInterrupt
        self.requested = signum
        if self._speaks:
            again = "Ctrl-C" if signum == signal.SIGINT else f"{signal.Signals(signum).name} or Ctrl-C"
            # tqdm.write clears a progress bar drawn on the terminal, prints, and redraws it
            tqdm.write(
                f"ca12.fit: {signal.Signals(signum).name} received: stopping after this iteration, once its checkpoint "
                f"is saved ({again} again to stop now)",
                file=sys.stderr,
            )

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_start(self, trainer, pl_module) -> None:
        self._speaks = trainer.is_global_zero
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handler) for s in self.SIGNALS}

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.requested is not None:
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._restore()
