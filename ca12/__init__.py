"""ca12: multi-agent reinforcement learning on PyTorch Lightning and TorchRL."""

__version__ = "0.1.0"
