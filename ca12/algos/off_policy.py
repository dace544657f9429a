"""The replay loop every off-policy ca12 algorithm shares (IQL, VDN, QMIX, MADDPG, IDDPG,
MASAC, ISAC): a `ReplayDataModule`, exploration annealed by collected frames, no updates before
`warmup_frames`, `updates_per_frame` minibatches per collected frame, a soft target update after
each, priorities written back when sampling is prioritised, and the mean loss terms as metrics.

A subclass builds its networks, `loss_module` and `target_updater`, exposes `policy`, and
defines `update(sample) -> terms`: the optimiser steps of one minibatch, returning its detached
scalar terms (with `loss`, the sum of the loss terms).
"""

from __future__ import annotations

from omegaconf import DictConfig
from tensordict import TensorDictBase

from ca12.algos.base import RLModule
from ca12.config import episode_aligned
from ca12.data import ReplayBatch, ReplayDataModule


def per_agent_flags(sample: TensorDictBase, group: str) -> TensorDictBase:
    """Env-level done/terminated [*B, 1] -> per agent [*B, n_agents, 1], for per-agent targets;
    a prioritised minibatch's importance weights [B] -> [B, n_agents], the shape of the
    per-agent losses TorchRL reduces with them (a [B] weight would not broadcast against them)."""
    n_agents = sample["next", group, "reward"].shape[-2]
    for key in ("done", "terminated"):
        flag = sample["next", key]
        sample.set(("next", group, key), flag.unsqueeze(-2).expand(*flag.shape[:-1], n_agents, 1))
    if "priority_weight" in sample.keys():
        weight = sample["priority_weight"]
        sample.set("priority_weight", weight.unsqueeze(-1).expand(*weight.shape, n_agents))
    return sample


class OffPolicyModule(RLModule):
    """Base LightningModule of the replay methods; `training_step` consumes a `ReplayBatch`."""

    # TorchRL's DQN, QMIX and DDPG losses write the squared TD error as "td_error", SAC's |TD error|.
    squared_td_error = False

    @classmethod
    def make_datamodule(cls, cfg: DictConfig, make_env) -> ReplayDataModule:
        return ReplayDataModule(
            make_env, cfg.collector.frames_per_batch, cfg.seed, episode_aligned(cfg),
            buffer_size=cfg.algo.buffer_size, buffer_device=cfg.algo.buffer_device,
            buffer_storage=cfg.algo.get("buffer_storage", "memory"),
            minibatch_size=cfg.algo.minibatch_size, prioritized=cfg.algo.prioritized,
            alpha=cfg.algo.get("priority_alpha", 0.6), beta=cfg.algo.get("priority_beta", 0.4),
        )

    def prepare(self, sample: TensorDictBase) -> TensorDictBase:
        """Shape a sampled minibatch for the loss (default: per-agent done flags)."""
        return per_agent_flags(sample, self.group)

    def exploration_metrics(self, fresh_frames: int) -> dict:
        """Anneal exploration by this batch's frames; its current scale as metrics."""
        return {}

    def training_step(self, batch: ReplayBatch, batch_idx: int) -> None:
        fresh_frames = batch.fresh.numel()
        metrics = {"rollout/episode_reward_mean": self.episode_reward_mean(batch.fresh, self.group), **self.exploration_metrics(fresh_frames)}
        if len(batch.buffer) >= self.cfg.warmup_frames:
            terms_sum, n_updates = None, max(1, round(self.cfg.updates_per_frame * fresh_frames))
            for _ in range(n_updates):
                sample = self.prepare(batch.buffer.sample().to(self.device))
                terms = self.update(sample)
                self.target_updater.step()
                if self.cfg.prioritized:  # one priority per transition: the largest |TD error| over agents
                    td_error = sample["td_error"].reshape(sample.shape[0], -1).abs().amax(-1)
                    batch.buffer.update_priority(sample["index"], td_error.sqrt() if self.squared_td_error else td_error)
                terms_sum = terms if terms_sum is None else terms_sum + terms
            metrics.update({f"train/{k}": v / n_updates for k, v in terms_sum.items()})
        self.log_iteration(batch.fresh, metrics)
