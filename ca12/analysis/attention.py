"""Plots of TarMAC's attention (ca12/nets/communication.py, `AttentionCommunication.last_attention`):
a receiver x sender heat map of the weights, drawn with matplotlib (imported when called).
"""

from __future__ import annotations

import torch


def plot_attention(weights: torch.Tensor, path, title: str = "TarMAC attention") -> None:
    """A heat map of attention weights [..., n, n] (averaged over leading dims: batch, heads),
    receivers as rows, senders as columns (one tick per agent), written to `path` (PNG)."""
    import matplotlib.pyplot as plt

    mean = weights.detach().float().reshape(-1, *weights.shape[-2:]).mean(0).cpu()
    fig, ax = plt.subplots(figsize=(4, 3.5))
    image = ax.imshow(mean, vmin=0.0, vmax=1.0, cmap="viridis")
    ax.set_xticks(range(mean.shape[-1]))
    ax.set_yticks(range(mean.shape[-2]))
    ax.set_xlabel("sender j")
    ax.set_ylabel("receiver i")
    ax.set_title(title)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
