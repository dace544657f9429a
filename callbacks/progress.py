"""A progress bar that counts frames, not batches: frames done, frames/s and the current return."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import ProgressBar
from tqdm.auto import tqdm


class FramesProgressBar(ProgressBar):
    def __init__(self, total_frames: int, return_key: str = "rollout/episode_reward_mean"):
        super().__init__()
        self.total_frames = total_frames
        self.return_key = return_key
        self._enabled = True
        self.bar: tqdm | None = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._enabled and trainer.is_global_zero:
            frames = getattr(pl_module, "frames", 0)
            self.bar = tqdm(total=self.total_frames, initial=frames, unit="frames", unit_scale=True, dynamic_ncols=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.bar is None:
            return
        self.bar.update(pl_module.frames - self.bar.n)
        metrics = trainer.callback_metrics  # one host sync per iteration, for display only
        postfix = {}
        if "time/frames_per_second" in metrics:
            postfix["fps"] = f"{float(metrics['time/frames_per_second']):.0f}"
        if self.return_key in metrics:
            postfix["return"] = f"{float(metrics[self.return_key]):.3f}"
        self.bar.set_postfix(postfix)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_exception(self, trainer, pl_module, exception) -> None:
        self.on_train_end(trainer, pl_module)  # end the bar's line before the error message
