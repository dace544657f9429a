"""Lightning data modules that turn TorchRL collectors into training batches."""

from ca12.data.replay import ReplayBatch, ReplayDataModule
from ca12.data.rollout import RolloutDataModule

__all__ = ["ReplayBatch", "ReplayDataModule", "RolloutDataModule"]
