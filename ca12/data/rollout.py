"""On-policy data: a TorchRL `Collector` as Lightning's data source.

One Lightning epoch is one training iteration: the dataloader yields exactly one collector
batch of `frames_per_batch` frames, shaped `[num_envs, frames_per_batch // num_envs]`. Before
each batch the collector pulls the module's current policy weights (a no-op copy when the policy
and env share a device), so every batch is sampled by the freshest policy. Sampling runs on the
env's device and the batch stays there; Lightning moves it to the training device.
"""

from __future__ import annotations

from typing import Callable, Iterator

import lightning as L
from tensordict import TensorDictBase
from torch.utils.data import DataLoader, IterableDataset
from torchrl.collectors import Collector
from torchrl.envs import EnvBase


def _identity(batch):
    return batch


class _OneBatchPerEpoch(IterableDataset):
    """Yields the collector's next batch once per `iter()`, keeping the collector running."""

    def __init__(self, collector: Collector):
        self.collector = collector
        self._batches: Iterator[TensorDictBase] | None = None

    def __len__(self) -> int:
        return 1

    def __iter__(self):
        if self._batches is None:
            self._batches = iter(self.collector)
        self.collector.update_policy_weights_()
        yield next(self._batches)


class RolloutDataModule(L.LightningDataModule):
    """Collects on-policy batches with the training module's own policy.

    Args:
        make_env: `seed -> EnvBase`; called once per process with `seed + global_rank`, so every
            DDP rank samples its own episodes.
        frames_per_batch: frames (env steps x envs) per batch.
        seed: base seed of this run.
    """

    def __init__(self, make_env: Callable[[int], EnvBase], frames_per_batch: int, seed: int):
        super().__init__()
        self.make_env = make_env
        self.frames_per_batch = frames_per_batch
        self.seed = seed
        self.env: EnvBase | None = None
        self.collector: Collector | None = None

    def setup(self, stage: str) -> None:
        if self.env is None:
            self.env = self.make_env(self.seed + self.trainer.global_rank)

    def train_dataloader(self) -> DataLoader:
        # Asked for after the strategy moved the module to its device; the collector keeps a
        # copy of the policy on the env's device when the two differ.
        if self.collector is None:
            policy = self.trainer.lightning_module.policy
            self.collector = Collector(
                self.env,
                policy,
                frames_per_batch=self.frames_per_batch,
                total_frames=-1,
                env_device=self.env.device,
                policy_device=self.env.device,
                storing_device=self.env.device,
                auto_register_policy_transforms=False,
            )
        return DataLoader(_OneBatchPerEpoch(self.collector), batch_size=None, collate_fn=_identity)

    def teardown(self, stage: str) -> None:
        if self.collector is not None:
            self.collector.shutdown()
            self.collector = None
