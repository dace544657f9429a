"""The thin base every ca12 algorithm shares: config, frame counting, timing and metrics.

Subclasses build their networks from the env's specs in `__init__`, expose the acting policy
as `policy`, and do their whole update in `training_step` (manual optimisation).
"""

from __future__ import annotations

import sys
import time

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDictBase
from torchrl.envs import EnvBase, InitTracker

import ca12
from ca12.algos.optim import Stepper
from ca12.data import RolloutDataModule
from ca12.data.collectors import episode_aligned
from ca12.envs.common import mean_at_episode_ends
from ca12.envs.layout import AgentLayout
from ca12.errors import UsageError
from ca12.nets.builder import is_recurrent
from ca12.nets.communication import message_stats


class RLModule(L.LightningModule):
    """Base LightningModule for ca12 algorithms.

    Keeps `frames` (env steps x envs over all ranks) and `iterations` as checkpointed counters,
    counted in Lightning's batch hooks, and logs the timing metrics of docs/ARCHITECTURE.md ("One iteration")
    around each `training_step`. A subclass builds its networks from `self.groups` (the agent
    groups it trains, from the env's specs) with the network builder, defines `policy` (the
    module the collector acts with), overrides `make_datamodule` if it does not learn from
    on-policy rollouts, and returns its metrics from `training_step`. The keys of its `algo`
    section are a schema in ca12/algos/schemas.py, apart from it so that a config is checked
    without importing torch.
    """

    # Action spaces the algorithm can act in; others are refused before training starts.
    action_spaces: tuple[str, ...] = ("continuous", "discrete")
    # Trains several agent groups at once (each its own networks); else exactly one is named.
    multi_group = False
    # Can act with a recurrent actor (model=gru|lstm).
    recurrent = False
    # Can learn with a recurrent critic (critic_model=gru|lstm).
    recurrent_critic = False
    # Leaves the steps an env marks as not acted (`Group.masked`: agents that left) out of its losses.
    masks_agents = False
    # Reads image observations through its networks only (`Group.image`: model=cnn, or mlp flattened).
    images = False

    @classmethod
    def make_datamodule(cls, cfg: DictConfig, make_env) -> L.LightningDataModule:
        """The data module this algorithm trains from (on-policy rollouts by default)."""
        return RolloutDataModule(make_env, cfg.collector.frames_per_batch, cfg.seed, episode_aligned(cfg), collector=cfg.collector)

    def __init__(self, cfg: DictConfig, env: EnvBase):
        """
        Args:
            cfg: the whole (validated) run config; the algorithm's keys are `cfg.algo`.
            env: an env to read specs from (never stepped here).
        """
        super().__init__()
        self.automatic_optimization = False
        self.cfg = cfg.algo
        self.model_cfg, self.critic_model_cfg = cfg.model, cfg.critic_model
        self.layout = AgentLayout.from_env(env)
        self.groups = self.layout.select(cfg.algo.groups) if self.multi_group else [self.layout.only(cfg.algo.name, cfg.algo.groups)]
        self._check(cfg)
        self.frames = 0
        self.iterations = 0
        self.skipped_updates = 0
        self.stepper = Stepper(self)  # guarded optimiser steps and their CUDA-graph fast path (ca12/algos/optim.py)
        # The whole resolved run config; saved so a checkpoint can resume alone.
        self.run_config: dict = OmegaConf.to_container(cfg, resolve=True)
        self._step_end_time: float | None = None
        # Last known episode return (NaN until an episode ends: no made-up 0); kept on device so
        # logging it needs no host sync.
        self.register_buffer("_last_return", torch.full((), float("nan")), persistent=False)

    def _check(self, cfg: DictConfig) -> None:
        """Refuse, in one line, an env or network this algorithm cannot act with."""
        name = cfg.algo.name
        for group in self.groups:
            if group.action_kind not in self.action_spaces:
                hint = " (VMAS envs switch with env.continuous_actions=false)" if self.action_spaces == ("discrete",) else ""
                raise UsageError(
                    f"{name} cannot train on this env: its actions are {group.action_kind}, "
                    f"{name} handles {' and '.join(self.action_spaces)} actions{hint}"
                )
        if not self.images and any(group.image is not None for group in self.layout.groups.values()):
            raise UsageError(f"{name} reads flat observations; image observations train with mappo, ippo or ppo (model=cnn)")
        masked = [group.name for group in self.groups if group.masked]
        if masked and not self.masks_agents:
            print(
                f"ca12.fit: note: the env marks which agents act in group {masked[0]} (agents that leave mid-episode); {name} trains "
                "on every agent's steps, the unmarked ones too (mappo, ippo and ppo leave them out)",
                file=sys.stderr,
            )
        if is_recurrent(cfg.model) and not self.recurrent:
            raise UsageError(
                f"{name} has no recurrent version yet: model={cfg.model.kind} keeps a state between steps and is refused (use model=mlp)"
            )
        if is_recurrent(cfg.critic_model) and not self.recurrent_critic:
            raise UsageError(
                f"critic_model={cfg.critic_model.kind}: {name}'s critics are feed-forward (critic_model=mlp); "
                f"recurrent actors take model={cfg.critic_model.kind}"
            )

    @property
    def group(self) -> str:
        """The name of the trained group, for algorithms that train one."""
        return self.groups[0].name

    def env_transforms(self) -> list:
        """Transforms the acting policy needs on every env it steps (collector, evaluation):
        recurrent networks need `InitTracker` and their hidden-state primers."""
        primers = [m.make_tensordict_primer() for m in self.modules() if hasattr(m, "make_tensordict_primer")]
        return [InitTracker(), *primers] if primers else []

    # --- counters and timing (Lightning's hooks: no algorithm can forget them) ---------------------
    def on_train_start(self) -> None:
        self._step_end_time = time.perf_counter()
        self.stepper.lean = self.trainer.world_size == 1 and "16-mixed" not in str(self.trainer.precision)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        now = time.perf_counter()
        self._collect_s = now - (self._step_end_time or now)
        self._update_start = now
        if self.cfg.anneal_lr:
            self.anneal_learning_rates()

    def anneal_learning_rates(self) -> None:
        """lr = initial lr x (1 - frames trained / collector.total_frames), for every optimiser's
        parameter groups; the initial value is kept in the group (`initial_lr`), so it is saved
        with the optimiser and a resumed run continues the same line."""
        left = max(0.0, 1.0 - self.frames / self.run_config["collector"]["total_frames"])
        optimisers = self.optimizers()
        for optimiser in optimisers if isinstance(optimisers, list) else [optimisers]:
            for group in optimiser.param_groups:
                group.setdefault("initial_lr", float(group["lr"]))
                if isinstance(group["lr"], torch.Tensor):  # a captured step reads it from the device
                    group["lr"].fill_(group["initial_lr"] * left)
                else:
                    group["lr"] = group["initial_lr"] * left

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        """Count the batch's frames and log what `training_step` returned with the timings."""
        self.skipped_updates += self.stepper.guard.check(self.iterations + 1, stop=not self.cfg.get("skip_nonfinite", False))
        now = time.perf_counter()
        update_s = now - self._update_start
        new_frames = self.frames_in(batch) * self.trainer.world_size
        self.frames += new_frames
        self.iterations += 1
        self._step_end_time = now
        self.log_metrics(
            {
                **(outputs or {}),
                "time/collect_s": self._collect_s,
                "time/update_s": update_s,
                "time/frames_per_second": new_frames / max(self._collect_s + update_s, 1e-9),
                "time/since_start_s": time.time() - ca12.STARTED_AT,
                "time/frames": float(self.frames),
                "time/iteration": float(self.iterations),
                "train/skipped_updates": float(self.skipped_updates),
                **message_stats(self),  # talking networks (model=commnet|tarmac|dial|graph): comm/...
                **self.episode_stats(batch.fresh if hasattr(batch, "fresh") else batch),
            }
        )

    def frames_in(self, batch) -> int:
        """Env steps this process's batch cost (a replay batch: its fresh frames)."""
        return (batch.fresh if hasattr(batch, "fresh") else batch).numel()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        wandb_ids = [lg.version for lg in self.loggers if type(lg).__name__ == "WandbLogger"]
        checkpoint["ca12"] = {
            "frames": self.frames,
            "iterations": self.iterations,
            "skipped_updates": self.skipped_updates,
            "run_config": self.run_config,
            "wandb_id": wandb_ids[0] if wandb_ids else None,
        }

    def upgrade_state(self, state_dict: dict) -> None:
        """Renames in place the entries an older ca12 wrote under other names (nothing here)."""

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.upgrade_state(checkpoint.get("state_dict", {}))
        state = checkpoint.get("ca12", {})
        self.frames = state.get("frames", 0)
        self.iterations = state.get("iterations", 0)
        self.skipped_updates = state.get("skipped_updates", 0)

    # --- metrics ----------------------------------------------------------------------------------
    def log_metrics(self, metrics: dict) -> None:
        # Under DDP every rank has its own batch: log the mean over ranks.
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=1, sync_dist=self.trainer.world_size > 1)

    def episode_stats(self, batch) -> dict:
        """`rollout/<name>_mean` of each env-level entry under ("next", "stats") (the traffic
        junction's success and collisions) over the episodes that ended in `batch`, read at their
        last step (NaN when none ended); nothing when the env has none or the batch is no TensorDict."""
        if not isinstance(batch, TensorDictBase) or ("next", "stats") not in batch.keys(include_nested=True):
            return {}
        done = batch["next", "done"]  # [B, T, 1]
        return {f"rollout/{name}_mean": mean_at_episode_ends(value, done) for name, value in batch["next", "stats"].items()}

    def team_returns(self, batch: TensorDictBase) -> torch.Tensor:
        """The running episode return at every step [*B, T, 1], averaged over the trained groups'
        agents (from the `RewardSum` counter every ca12 env carries); at a done step it is the
        finished episode's return."""
        return torch.cat([batch["next", g.name, "episode_reward"] for g in self.groups], -2).mean(-2)

    def episode_reward_mean(self, batch: TensorDictBase) -> torch.Tensor:
        """Mean return of the episodes that ended in `batch` (over episodes and the trained
        groups' agents).

        Uses the `RewardSum` counter every ca12 env carries. A batch in which no episode ended
        reports the last known value (NaN before any episode of the run ended, also right after
        a resume); nothing here waits on the device.
        """
        done = batch["next", "done"]  # [B, T, 1]
        returns = self.team_returns(batch)  # [B, T, 1]
        n_done = done.sum()
        mean = (returns * done).sum() / n_done.clamp(min=1)
        self._last_return = torch.where(n_done > 0, mean, self._last_return.to(mean.device))
        return self._last_return
