"""The thin base every ca12 algorithm shares: config, frame counting, timing and metrics.

Subclasses build their networks from the env's specs in `__init__`, expose the acting policy
as `policy`, and do their whole update in `training_step` (manual optimisation).
"""

from __future__ import annotations

import time

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDictBase


class RLModule(L.LightningModule):
    """Base LightningModule for ca12 algorithms.

    Keeps `frames` (env steps x envs over all ranks) and `iterations` as checkpointed counters,
    and logs the timing metrics of ../shared/ARCHITECTURE.md around each `training_step`.
    A subclass defines `policy` (the module the collector acts with), `datamodule_class`, and
    ends its `training_step` with `log_iteration`.
    """

    def __init__(self, cfg: DictConfig):
        super().__init__()
        self.automatic_optimization = False
        self.cfg = cfg
        self.frames = 0
        self.iterations = 0
        # The whole resolved run config (set by ca12.fit); saved so a checkpoint can resume alone.
        self.run_config: dict | None = None
        self._step_end_time: float | None = None
        # Last known episode return; kept on device so logging it needs no host sync.
        self.register_buffer("_last_return", torch.zeros(()), persistent=False)

    # --- counters and timing ------------------------------------------------------------------
    def on_train_start(self) -> None:
        self._step_end_time = time.perf_counter()

    def on_train_batch_start(self, batch: TensorDictBase, batch_idx: int) -> None:
        now = time.perf_counter()
        self._collect_s = now - (self._step_end_time or now)
        self._update_start = now

    def log_iteration(self, batch: TensorDictBase, metrics: dict) -> None:
        """Count the batch's frames and log `metrics` with the iteration's timings.

        Called by every algorithm at the end of `training_step`.
        """
        now = time.perf_counter()
        update_s = now - self._update_start
        new_frames = batch.numel() * self.trainer.world_size
        self.frames += new_frames
        self.iterations += 1
        self._step_end_time = now
        self.log_metrics(
            {
                **metrics,
                "time/collect_s": self._collect_s,
                "time/update_s": update_s,
                "time/frames_per_second": new_frames / max(self._collect_s + update_s, 1e-9),
                "time/frames": float(self.frames),
                "time/iteration": float(self.iterations),
            }
        )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        wandb_ids = [lg.version for lg in self.loggers if type(lg).__name__ == "WandbLogger"]
        checkpoint["ca12"] = {
            "frames": self.frames,
            "iterations": self.iterations,
            "run_config": self.run_config or {"algo": OmegaConf.to_container(self.cfg, resolve=True)},
            "wandb_id": wandb_ids[0] if wandb_ids else None,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("ca12", {})
        self.frames = state.get("frames", 0)
        self.iterations = state.get("iterations", 0)

    # --- metrics ----------------------------------------------------------------------------------
    def log_metrics(self, metrics: dict) -> None:
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=1, sync_dist=False)

    def episode_reward_mean(self, batch: TensorDictBase, group: str) -> torch.Tensor:
        """Mean return of the episodes that ended in `batch` (over episodes and agents).

        Uses the `RewardSum` counter every ca12 env carries. A batch in which no episode ended
        reports the last known value; nothing here waits on the device.
        """
        done = batch["next", "done"]  # [B, T, 1]
        returns = batch["next", group, "episode_reward"].mean(-2)  # [B, T, 1], mean over agents
        n_done = done.sum()
        mean = (returns * done).sum() / n_done.clamp(min=1)
        self._last_return = torch.where(n_done > 0, mean, self._last_return.to(mean.device))
        return self._last_return
