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
from torchrl.data import Categorical, OneHot
from torchrl.envs import EnvBase

from ca12.config import episode_aligned
from ca12.data import RolloutDataModule
from ca12.errors import NonFiniteError, UsageError


class RLModule(L.LightningModule):
    """Base LightningModule for ca12 algorithms.

    Keeps `frames` (env steps x envs over all ranks) and `iterations` as checkpointed counters,
    and logs the timing metrics of ../shared/ARCHITECTURE.md around each `training_step`.
    A subclass defines `policy` (the module the collector acts with), overrides
    `make_datamodule` if it does not learn from on-policy rollouts, and ends its
    `training_step` with `log_iteration`.
    """

    # Action spaces the algorithm can act in; `check_env` refuses others before training starts.
    action_spaces: tuple[str, ...] = ("continuous", "discrete")

    @classmethod
    def check_env(cls, env: EnvBase, group: str, name: str) -> None:
        """Refuse an env whose actions this algorithm cannot produce (one line, names both)."""
        spec = env.full_action_spec_unbatched[group, "action"]
        kind = "discrete" if isinstance(spec, (Categorical, OneHot)) else "continuous"
        if kind not in cls.action_spaces:
            hint = " (VMAS envs switch with env.continuous_actions=false)" if cls.action_spaces == ("discrete",) else ""
            raise UsageError(
                f"{name} cannot train on this env: its actions are {kind}, {name} handles {' and '.join(cls.action_spaces)} actions{hint}"
            )

    @classmethod
    def make_datamodule(cls, cfg: DictConfig, make_env) -> L.LightningDataModule:
        """The data module this algorithm trains from (on-policy rollouts by default)."""
        return RolloutDataModule(make_env, cfg.collector.frames_per_batch, cfg.seed, episode_aligned(cfg))

    def __init__(self, cfg: DictConfig):
        super().__init__()
        self.automatic_optimization = False
        self.cfg = cfg
        self.frames = 0
        self.iterations = 0
        self.skipped_updates = 0
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
                "train/skipped_updates": float(self.skipped_updates),
            }
        )

    # --- one guarded optimiser step ---------------------------------------------------------------
    def optimiser_step(self, optimiser, loss: torch.Tensor, terms: TensorDictBase) -> torch.Tensor:
        """Backward, clip (through Lightning), step; refuse or skip a non-finite update.

        With `algo.skip_nonfinite` a NaN/inf loss or gradient skips this update (counted in
        `train/skipped_updates`); otherwise it raises `NonFiniteError` naming the iteration and
        the loss term, before the bad update touches the weights. Returns the gradient norm
        before clipping.
        """
        optimiser.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        params = [p for group in optimiser.param_groups for p in group["params"] if p.grad is not None]
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        if not bool(torch.isfinite(loss) & torch.isfinite(grad_norm)):  # one host sync per update
            bad = [k for k, v in terms.items() if k.startswith("loss") and not torch.isfinite(v).all()]
            what = f"loss term '{bad[0]}' is {float(terms[bad[0]].detach())}" if bad else "the gradient is not finite"
            if not self.cfg.get("skip_nonfinite", False):
                raise NonFiniteError(f"iteration {self.iterations + 1}: {what}; stopped (set algo.skip_nonfinite=true to skip such updates)")
            optimiser.zero_grad(set_to_none=True)
            self.skipped_updates += 1
            return grad_norm
        self.clip_gradients(optimiser, gradient_clip_val=self.cfg.max_grad_norm, gradient_clip_algorithm="norm")
        optimiser.step()
        return grad_norm

    def minibatch_epochs(self, frames: TensorDictBase, loss=None, num_epochs: int | None = None, suffix: str = "") -> dict:
        """`num_epochs` (default `algo.num_epochs`) passes over `frames` [N] in shuffled
        minibatches of `algo.minibatch_size`, one guarded optimiser step on `loss` (default
        `self.loss`) each: the on-policy update of PPO and COMA. Returns the mean loss terms and
        gradient norm as `train/` metrics, each name followed by `suffix`.
        """
        optimiser, loss = self.optimizers(), loss or self.loss
        terms_sum, n_updates = None, 0
        for _ in range(self.cfg.num_epochs if num_epochs is None else num_epochs):
            for index in torch.randperm(frames.shape[0], device=frames.device).split(self.cfg.minibatch_size):
                total, terms = loss(frames[index])
                terms = terms.detach()
                terms["grad_norm"] = self.optimiser_step(optimiser, total, terms)
                terms_sum = terms if terms_sum is None else terms_sum + terms
                n_updates += 1
        if terms_sum is None:
            return {}
        return {f"train/{key}{suffix}": value.mean() / n_updates for key, value in terms_sum.items()}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        wandb_ids = [lg.version for lg in self.loggers if type(lg).__name__ == "WandbLogger"]
        checkpoint["ca12"] = {
            "frames": self.frames,
            "iterations": self.iterations,
            "skipped_updates": self.skipped_updates,
            "run_config": self.run_config or {"algo": OmegaConf.to_container(self.cfg, resolve=True)},
            "wandb_id": wandb_ids[0] if wandb_ids else None,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("ca12", {})
        self.frames = state.get("frames", 0)
        self.iterations = state.get("iterations", 0)
        self.skipped_updates = state.get("skipped_updates", 0)

    # --- metrics ----------------------------------------------------------------------------------
    def log_metrics(self, metrics: dict) -> None:
        # Under DDP every rank has its own batch: log the mean over ranks.
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=1, sync_dist=self.trainer.world_size > 1)

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
