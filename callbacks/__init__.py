"""Lightning callbacks ca12 runs with: frame-based progress bar and iteration checkpoints."""

from callbacks.checkpoint import IterationCheckpoint
from callbacks.progress import FramesProgressBar

__all__ = ["FramesProgressBar", "IterationCheckpoint"]
