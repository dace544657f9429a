"""What every off-policy ca12 algorithm (IQL, VDN, QMIX, MADDPG, IDDPG, MASAC, ISAC) shares.

* `OffPolicyModule`: an `RLModule` that learns from a `ReplayDataModule` (transitions, or
  sequences with burn-in for recurrent learners) and shapes sampled minibatches (`prepare`).
* `replay_updates`: the helper an algorithm's `training_step` calls with its own `update`:
  no updates before `warmup_frames`, `updates_per_frame` minibatches per collected frame, a
  soft target update after each, priorities written back when sampling is prioritised, and the
  mean loss terms as metrics.

An algorithm builds its networks, loss and target updater, exposes `policy`, anneals its own
exploration in `training_step`, and passes `replay_updates` its `update(sample) -> terms`: the
optimiser steps of one minibatch, returning detached scalar terms (with `loss`, their sum).
"""

from __future__ import annotations

from typing import Callable

import torch
from omegaconf import DictConfig
from tensordict import TensorDictBase

from ca12.algos.base import RLModule
from ca12.data import ReplayBatch, ReplayDataModule
from ca12.data.collectors import episode_aligned
from ca12.nets.builder import is_recurrent


def per_agent_flags(sample: TensorDictBase, group: str) -> TensorDictBase:
    """Env-level done/terminated [*B, 1] -> per agent [*B, n_agents, 1], for per-agent targets;
    a prioritised minibatch's importance weights [B] -> [B, n_agents], the shape of the
    per-agent losses TorchRL reduces with them (a [B] weight would not broadcast against them)."""
    n_agents = sample["next", group, "reward"].shape[-2]
    for name in ("done", "terminated"):
        flag = sample["next", name]
        sample.set(("next", group, name), flag.unsqueeze(-2).expand(*flag.shape[:-1], n_agents, 1))
    if "priority_weight" in sample.keys() and sample.batch_dims == 1:  # (sequences: weighed by the loss)
        weight = sample["priority_weight"]
        sample.set("priority_weight", weight.unsqueeze(-1).expand(*weight.shape, n_agents))
    return sample


def replay_updates(
    batch: ReplayBatch,
    cfg: DictConfig,
    update: Callable[[TensorDictBase], TensorDictBase],
    target_updater,
    device: torch.device,
    squared_td_error: bool = False,
    fast: Callable | None = None,
) -> dict:
    """The updates of one iteration of a replay method, as `train/` metrics ({} during warm-up).

    Args:
        batch: this iteration's fresh frames and the buffer (`ReplayDataModule.next_batch`).
        cfg: the `algo` section (`warmup_frames`, `updates_per_frame`, `prioritized`).
        update: the algorithm's optimiser steps on one minibatch; returns detached scalar terms.
            With prioritised replay it writes `td_error` into the minibatch.
        target_updater: a TorchRL target updater (`SoftUpdate`), stepped after every update.
        device: where minibatches are moved before `update`.
        squared_td_error: `td_error` holds the squared TD error (TorchRL's DQN, QMIX and DDPG
            losses) rather than its absolute value (SAC's).
        fast: the fast path (`Stepper.fast_update`) of `update` followed by the target update,
            used instead of both when given (never with prioritised replay).
    """
    if batch.stored < cfg.warmup_frames:
        return {}
    terms_sum, n_updates = None, max(1, round(cfg.updates_per_frame * batch.fresh.numel()))
    for _ in range(n_updates):
        sample = batch.buffer.sample().to(device)
        if fast is not None:
            terms = fast(sample)
        else:
            terms = update(sample)
            target_updater.step()
        if cfg.prioritized:  # one priority per item: the largest |TD error| over agents (and steps)
            td_error = sample["td_error"].reshape(sample.shape[0], -1).abs().amax(-1)
            index = sample["index"].reshape(sample.shape[0], -1)[:, 0]  # a sequence's index repeats along it
            batch.buffer.update_priority(index, td_error.sqrt() if squared_td_error else td_error)
        terms_sum = terms if terms_sum is None else terms_sum + terms
    return {f"train/{k}": v / n_updates for k, v in terms_sum.items()}


class OffPolicyModule(RLModule):
    """Base LightningModule of the replay methods: its data module, and minibatch shaping.

    `training_step` receives a `ReplayBatch`; the algorithm writes it with `replay_updates`.
    """

    @classmethod
    def make_datamodule(cls, cfg: DictConfig, make_env) -> ReplayDataModule:
        return ReplayDataModule(
            make_env,
            cfg.collector.frames_per_batch,
            cfg.seed,
            episode_aligned(cfg),
            collector=cfg.collector,
            buffer_size=cfg.algo.buffer_size,
            buffer_device=cfg.algo.buffer_device,
            buffer_storage=cfg.algo.buffer_storage,
            minibatch_size=cfg.algo.minibatch_size,
            prioritized=cfg.algo.prioritized,
            alpha=cfg.algo.priority_alpha,
            beta=cfg.algo.priority_beta,
            **cls.sequence_replay(cfg),
        )

    @classmethod
    def sequence_replay(cls, cfg: DictConfig) -> dict:
        """The data module's sequence arguments: recurrent learners replay sequences with burn-in."""
        if cls.recurrent and is_recurrent(cfg.model):
            return {"sequence_length": cfg.algo.sequence_length, "burn_in": cfg.algo.burn_in}
        return {}

    def replay(self, batch: ReplayBatch, squared_td_error: bool = False) -> dict:
        """This iteration's updates (`replay_updates` of `self.update` and `self.target_updater`),
        on the fast path (ca12/algos/cuda_graphs.py) when it is on and replay is not prioritised (the
        priorities are written from each minibatch's TD errors, outside any capture)."""
        fast = None if self.cfg.prioritized else self.stepper.fast_update("replay", self.update_and_target)
        return replay_updates(batch, self.cfg, self.update, self.target_updater, self.device, squared_td_error, fast=fast)

    def update_and_target(self, sample: TensorDictBase) -> TensorDictBase:
        terms = self.update(sample)
        self.target_updater.step()
        return terms

    def prepare(self, sample: TensorDictBase) -> TensorDictBase:
        """Shape a sampled minibatch for the loss (here: per-agent done flags); `update` calls it."""
        return per_agent_flags(sample, self.group)
