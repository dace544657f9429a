"""A progress bar that counts frames, not batches: frames done, frames/s and the current return.

On a terminal it is a tqdm bar redrawn in place. Anywhere else (`python -m ca12.fit ... > log.txt
2>&1`, a batch job's log) a redrawn bar is one long line of carriage returns, so there it prints
a plain line each time the run passes another `every_percent` % of its frames, and the final
state at the end.

The bar moves in `on_train_epoch_end` (one epoch is one iteration), not `on_train_batch_end`:
Lightning calls the callbacks' `on_train_batch_end` before the module's, where the module counts
the batch's frames and logs its metrics, so a bar moved there trailed one iteration behind and a
2- or 3-iteration run ended at 50 or 67 %.
"""

from __future__ import annotations

import math
import sys
import time

import lightning as L
from lightning.pytorch.callbacks import ProgressBar
from tqdm.auto import tqdm

# Shown in place of the training return while it is NaN: no episode has ended in the run yet
# (a replay method's first iterations, long episodes, right after a resume).
NO_RETURN = "–"
NO_RETURN_WHY = "– (no episode ended yet)"


class FramesProgressBar(ProgressBar):
    def __init__(self, total_frames: int, return_key: str = "rollout/episode_reward_mean", every_percent: int = 10):
        super().__init__()
        if not 0 < every_percent <= 100:
            raise ValueError(f"every_percent must be in 1..100, got {every_percent}")
        self.total_frames = total_frames
        self.return_key = return_key
        self.every_percent = every_percent
        self._enabled = True
        self.bar: tqdm | None = None
        self._lines = False  # plain lines instead of a bar (stderr is not a terminal)
        self._next_percent = 0
        self._shown_frames = -1  # the frames of the last plain line
        self._said_why = False
        self._started = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not (self._enabled and trainer.is_global_zero):
            return
        frames = getattr(pl_module, "frames", 0)
        self._lines = not sys.stderr.isatty()
        if self._lines:
            self._started = time.perf_counter()
            self._next_percent = self._next_line_at(frames)
        else:
            self.bar = tqdm(total=self.total_frames, initial=frames, unit="frames", unit_scale=True, dynamic_ncols=True)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        frames = pl_module.frames
        if self.bar is not None:
            self.bar.set_postfix(self._postfix(trainer), refresh=False)
            self.bar.update(frames - self.bar.n)  # one redraw, with the postfix
        elif self._lines and self._percent(frames) >= self._next_percent:
            self._print_line(trainer, frames)

    def _percent(self, frames: int) -> int:
        return min(100, int(100 * frames / max(self.total_frames, 1)))

    def _next_line_at(self, frames: int) -> int:
        """The percentage at which the next plain line is due: the next multiple of `every_percent`."""
        return self._percent(frames) // self.every_percent * self.every_percent + self.every_percent

    def _postfix(self, trainer) -> dict[str, str]:
        """fps and the training return, read from the metrics of the iteration just logged (one
        host sync per iteration, for display only)."""
        metrics = trainer.callback_metrics
        postfix = {}
        if "time/frames_per_second" in metrics:
            postfix["fps"] = f"{float(metrics['time/frames_per_second']):.0f}"
        if self.return_key in metrics:
            value = float(metrics[self.return_key])
            if not math.isnan(value):
                postfix["return"] = f"{value:.3f}"
            else:  # a redrawn bar keeps the reason in view; a log says it once
                postfix["return"] = NO_RETURN if self._said_why else NO_RETURN_WHY
                self._said_why = self._lines
        return postfix

    def _print_line(self, trainer, frames: int) -> None:
        percent = self._percent(frames)
        elapsed = tqdm.format_interval(time.perf_counter() - self._started)
        postfix = "".join(f", {name}={value}" for name, value in self._postfix(trainer).items())
        print(f"{percent:3d}% | {frames}/{self.total_frames} frames [{elapsed}{postfix}]", file=sys.stderr, flush=True)
        self._next_percent = self._next_line_at(frames)
        self._shown_frames = frames

    def on_train_end(self, trainer, pl_module) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self._lines and pl_module.frames != self._shown_frames:  # a log ends with where the run stopped
            self._print_line(trainer, pl_module.frames)
        self._lines = False

    def on_exception(self, trainer, pl_module, exception) -> None:
        self.on_train_end(trainer, pl_module)  # end the bar's line before the error message
