"""Lightning data modules that turn TorchRL collectors into training batches."""

from ca12.data.rollout import RolloutDataModule

__all__ = ["RolloutDataModule"]
