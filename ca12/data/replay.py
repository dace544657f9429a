"""Off-policy data: a TorchRL `Collector` feeding a TorchRL replay buffer.

One Lightning epoch is one iteration: the collector gathers `frames_per_batch` fresh frames with
the module's exploration policy, they are written to the buffer (flattened to single
transitions, each holding all agents: joint-action replay), and the batch handed to
`training_step` carries both the fresh frames (for rollout metrics) and the buffer to sample
minibatches from. The buffer's contents, its sampler and writer state, the random generators and
the collector's counters go into every checkpoint, so resume is exact; the contents of a buffer
larger than a segment go into segment files beside the checkpoint, each written again only
when it changed (ca12/data/buffer_store.py).

Recurrent learners replay sequences instead (`sequence_length`, `burn_in`; R2D2, Kapturowski et
al. 2019): each env's trajectory in a batch is cut into chunks of `sequence_length` steps that
overlap by `burn_in` steps, and the buffer stores and samples whole chunks ([N, L]). A chunk
keeps the hidden state the collector's policy had at its first step (the "stored state"); the
learner replays the first `burn_in` steps only to refresh that state with its current weights.
Chunks may span episode ends: recurrent modules reset their state where `is_init` is set. The
chunking is written here because TorchRL's `SliceSampler` needs trajectory ids or done flags to
find slices in a flat storage, which batches cut across envs and iterations do not give it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from omegaconf import DictConfig
from tensordict import TensorDictBase
from torchrl.data import LazyMemmapStorage, LazyTensorStorage, RandomSampler, TensorDictReplayBuffer
from torchrl.envs import EnvBase

from ca12.data.buffer_store import SEGMENT_TRANSITIONS, BufferCheckpoint
from ca12.data.priority import TensorPrioritizedSampler
from ca12.data.rollout import RolloutDataModule


@dataclass
class ReplayBatch:
    """What an off-policy `training_step` receives. Lightning moves `fresh` to the training
    device; the buffer stays on its own device (`buffer_device`)."""

    fresh: TensorDictBase  # [num_envs, T], this iteration's frames
    buffer: TensorDictReplayBuffer  # samples transitions [B], or sequences [B, L]
    stored: int  # transitions in the buffer (sequences x their length)


# Entries a learner never reads from replay: the collector's bookkeeping, envs' info, return
# counters. Leaving them out makes sampling much cheaper on CPU (fewer tensors to gather).
_NOT_REPLAYED = ("collector", "info", "episode_reward")


def replay_view(batch: TensorDictBase) -> TensorDictBase:
    """The entries of a collected batch that go into the replay buffer."""
    drop = [key for key in batch.keys(True, True) if isinstance(key, tuple) and set(key) & set(_NOT_REPLAYED)]
    return batch.exclude(*drop, "collector")


def sequence_chunks(batch: TensorDictBase, length: int, burn_in: int = 0) -> TensorDictBase:
    """Cut a batch [E, T] (time last) into chunks [N, length] of consecutive steps of one env.

    Consecutive chunks overlap by `burn_in` steps (their stride is `length - burn_in`) and the
    last one ends at step T. Each chunk gets a `learn` mask [N, length] that picks the steps its
    loss uses, so that every step of the batch is learnt from exactly once: all of the first
    chunk (its stored state is the collector's own), then in each later chunk the steps after
    its burn-in not covered by the chunk before.

    Raises:
        ValueError: `length` exceeds T, or `burn_in` is not smaller than `length`.
    """
    steps = batch.shape[-1]
    if not 0 <= burn_in < length <= steps:
        raise ValueError(f"sequences of {length} steps with a burn-in of {burn_in} do not fit batches of {steps} steps per env")
    starts = list(range(0, steps - length + 1, length - burn_in))
    if starts[-1] != steps - length:
        starts.append(steps - length)
    learn = torch.zeros(len(starts), length, dtype=torch.bool, device=batch.device)
    covered = 0  # steps [0, covered) are learnt from by an earlier chunk
    for i, start in enumerate(starts):
        first = 0 if i == 0 else max(start + burn_in, covered)
        learn[i, first - start :] = True
        covered = start + length
    chunks = torch.stack([batch[..., s : s + length] for s in starts], -2)  # [E, N_e, length]
    chunks.set("learn", learn.expand(*chunks.shape))
    return chunks.reshape(-1, length)


def _storage(kind: str, buffer_size: int, device: str) -> LazyTensorStorage:
    """The buffer's storage: tensors in memory on `device`, or memory-mapped files (CPU only) in
    a temporary directory removed at exit, for buffers larger than RAM. Either way checkpoints
    hold the contents as plain tensors (`BufferCheckpoint`)."""
    if kind == "memmap":  # config.validate refuses a memmap buffer on a GPU
        return LazyMemmapStorage(buffer_size, device="cpu")
    return LazyTensorStorage(buffer_size, device=device)


class ReplayDataModule(RolloutDataModule):
    """Collects with the module's exploration policy into a replay buffer.

    Args:
        make_env, frames_per_batch, seed, episode_aligned, collector: as for `RolloutDataModule`.
        buffer_size: transitions the buffer holds (oldest overwritten first).
        buffer_device: where the buffer's storage lives ("cpu", "cuda").
        buffer_storage: "memory" (tensors on `buffer_device`) or "memmap" (memory-mapped files).
        minibatch_size: transitions per sampled minibatch.
        prioritized: sample by TD error (Schaul et al. 2016) with exponents `alpha`, `beta`
            (`TensorPrioritizedSampler`; minibatches then carry `priority_weight`).
        sequence_length: store and sample chunks of this many steps (recurrent learners;
            see `sequence_chunks`); `buffer_size` and `minibatch_size` still count transitions.
        burn_in: steps by which consecutive chunks overlap (the learner's burn-in).

    Checkpoints put the buffer's contents in segment files in `checkpoint_dir/buffer/`
    (`BufferCheckpoint`); `IterationCheckpoint` sets `checkpoint_dir`, and a resumed run reads
    them from its checkpoint's folder.
    """

    def __init__(
        self,
        make_env: Callable[[int, torch.device], EnvBase],
        frames_per_batch: int,
        seed: int,
        episode_aligned: bool = False,
        collector: DictConfig | None = None,
        *,
        buffer_size: int,
        buffer_device: str = "cpu",
        buffer_storage: str = "memory",
        minibatch_size: int,
        prioritized: bool = False,
        alpha: float = 0.6,
        beta: float = 0.4,
        sequence_length: int | None = None,
        burn_in: int = 0,
    ):
        super().__init__(make_env, frames_per_batch, seed, episode_aligned, collector)
        self.sequence_length, self.burn_in = sequence_length, burn_in
        # Items are transitions, or sequences of `sequence_length` of them.
        per_item = sequence_length or 1
        capacity, items = max(1, buffer_size // per_item), max(1, minibatch_size // per_item)
        device = "cpu" if buffer_storage == "memmap" else buffer_device
        sampler = TensorPrioritizedSampler(capacity, alpha, beta, device=device) if prioritized else RandomSampler()
        self.buffer = TensorDictReplayBuffer(
            storage=_storage(buffer_storage, capacity, buffer_device),
            sampler=sampler,
            batch_size=items,
            priority_key="td_error",
        )
        self.buffer_checkpoint = BufferCheckpoint(self.buffer, max(1, SEGMENT_TRANSITIONS // per_item))
        self.checkpoint_dir: Path | None = None

    def next_batch(self) -> ReplayBatch:
        fresh = super().next_batch()
        view = replay_view(fresh)
        self.buffer.extend(sequence_chunks(view, self.sequence_length, self.burn_in) if self.sequence_length else view.reshape(-1))
        return ReplayBatch(fresh=fresh, buffer=self.buffer, stored=len(self.buffer) * (self.sequence_length or 1))

    def state_dict(self) -> dict:
        # Every DDP rank is asked; only rank 0's checkpoint is written, so only it writes segments.
        write = self.trainer is None or self.trainer.is_global_zero
        return {**super().state_dict(), "buffer": self.buffer_checkpoint.state_dict(self.checkpoint_dir, write)}

    def load_state_dict(self, state: dict) -> None:
        # Now rather than before the first batch: a missing segment file fails the resume at once.
        state = dict(state)
        if "buffer" in state:
            path = self.trainer.ckpt_path if self.trainer is not None else None
            self.buffer_checkpoint.load_state_dict(state.pop("buffer"), Path(path).parent if path else None)
        super().load_state_dict(state)
