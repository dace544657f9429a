"""On-policy data: a TorchRL `Collector` as Lightning's data source.

One Lightning epoch is one training iteration: the dataloader yields exactly one collector
batch of `frames_per_batch` frames, shaped `[num_envs, frames_per_batch // num_envs]`. Before
each batch the collector pulls the module's current policy weights (a no-op copy when the policy
and env share a device), so every batch is sampled by the freshest policy. Sampling runs on the
env's device and the batch stays there; Lightning moves it to the training device.

Exact resume: when batches are aligned with episodes (every env runs whole episodes in a
batch), each batch starts from a reset, so the env's state between iterations is a function of
the random generators alone. `state_dict` saves those generators and the collector's counters;
a resumed run restores them right before its first batch, and continues bit for bit.
"""

from __future__ import annotations

from typing import Callable, Iterator

import lightning as L
import torch
from omegaconf import DictConfig
from tensordict import TensorDictBase
from torch.utils.data import DataLoader, IterableDataset
from torchrl.collectors import Collector
from torchrl.envs import EnvBase

from ca12.data.collectors import make_collector
from ca12.envs import env_device
from ca12.seeding import capture_rng_state, restore_rng_state


def _identity(batch):
    return batch


def one_batch_loader(datamodule) -> DataLoader:
    """A loader that yields `datamodule.next_batch()` once per epoch (one iteration); with its own
    generator, so creating its iterator does not draw from the global one."""
    return DataLoader(OneBatchPerEpoch(datamodule), batch_size=None, collate_fn=_identity, generator=torch.Generator())


class OneBatchPerEpoch(IterableDataset):
    """Yields the data module's next batch once per `iter()` (one Lightning epoch = one iteration)."""

    def __init__(self, datamodule: "RolloutDataModule"):
        self.datamodule = datamodule

    def __len__(self) -> int:
        return 1

    def __iter__(self):
        yield self.datamodule.next_batch()


class RolloutDataModule(L.LightningDataModule):
    """Collects on-policy batches with the training module's own policy.

    Args:
        make_env: `(seed, process_device) -> EnvBase`; called once per process with
            `seed + global_rank` and the process's device, so every DDP rank samples its own
            episodes on its own device.
        frames_per_batch: frames (env steps x envs) per batch.
        seed: base seed of this run.
        episode_aligned: every batch holds whole episodes of every env; the collector then resets
            the envs at the start of each batch, which makes resume exact.
    """

    def __init__(
        self,
        make_env: Callable[[int, torch.device], EnvBase],
        frames_per_batch: int,
        seed: int,
        episode_aligned: bool = False,
        collector: DictConfig | None = None,
    ):
        super().__init__()
        self.make_env = make_env
        self.collector_kind = collector.kind if collector is not None else "sync"
        self.workers = collector.workers if collector is not None else 1
        self.frames_per_batch = frames_per_batch
        self.seed = seed
        self.episode_aligned = episode_aligned
        self.env: EnvBase | None = None
        self.collector: Collector | None = None
        self._batches: Iterator[TensorDictBase] | None = None
        self._pending: dict | None = None

    def setup(self, stage: str) -> None:
        if self.env is None and self.collector_kind in ("sync", "cudagraph"):  # worker processes build their own
            self.env = self.make_env(self.seed + self.trainer.global_rank, self.trainer.strategy.root_device)

    def train_dataloader(self) -> DataLoader:
        # Asked for after the strategy moved the module to its device; the collector keeps a
        # copy of the policy on the env's device when the two differ.
        if self.collector is None:
            module = self.trainer.lightning_module
            # Worker processes build their envs themselves; the collector stores on their device.
            device = self.env.device if self.env is not None else env_device(module.run_config["env"]["device"], self.trainer.strategy.root_device)
            # A resumed run's workers take env seeds of their own, picked by the frames trained on so
            # far (Lightning restores the module's counters before it asks for the loader).
            self.collector = make_collector(
                self.collector_kind,
                self.workers,
                self.make_env,
                self.env,
                module.policy,
                self.frames_per_batch,
                self.seed + self.trainer.global_rank,
                device,
                self.episode_aligned,
                resumed_frames=module.frames,
            )
        return one_batch_loader(self)

    def next_batch(self) -> TensorDictBase:
        """Collect the next batch with the module's current weights."""
        if self._batches is None:
            self._batches = iter(self.collector)
        self.restore_pending_state()
        self.collector.update_policy_weights_()
        return next(self._batches)

    # --- checkpointed state ----------------------------------------------------------------
    def state_dict(self) -> dict:
        collector = {}
        # Not multiasync's: its workers are collecting the next batches when a checkpoint is
        # written, and a TorchRL worker that gets a message mid-collection drops that batch and
        # waits for orders, while the collector waits for its batch: the run would hang. Its state
        # holds nothing a resume needs: TorchRL's frame counters (ca12 keeps its own), the state of
        # stateless transforms, and the policy's weights (which the module holds).
        if self.collector is not None and self.collector_kind != "multiasync":
            collector = {k: v for k, v in self.collector.state_dict().items() if k != "policy_state_dict"}
        return {"rng": capture_rng_state(), "collector": collector}

    def load_state_dict(self, state: dict) -> None:
        # Applied right before the next batch, after the env and collector were built (building
        # a VMAS env reseeds the global generators).
        self._pending = state

    def restore_pending_state(self) -> None:
        if self._pending is None:
            return
        if self._pending.get("collector"):
            if self.collector_kind == "sync":
                self.collector.load_state_dict(self._pending["collector"], strict=False)
            else:  # the multi-process collectors take no `strict`
                self.collector.load_state_dict(self._pending["collector"])
        restore_rng_state(self._pending["rng"])
        self._pending = None

    def teardown(self, stage: str) -> None:
        if self.collector is not None:
            self.collector.shutdown()
            self.collector = None
            self._batches = None
            self.env = None
