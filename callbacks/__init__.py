"""Lightning callbacks ca12 runs with: progress in frames, atomic per-iteration checkpoints,
a clean stop on signals, and evaluation episodes."""

from callbacks.checkpoint import GracefulStop, IterationCheckpoint
from callbacks.evaluation import EvaluationCallback
from callbacks.progress import FramesProgressBar

__all__ = ["EvaluationCallback", "FramesProgressBar", "GracefulStop", "IterationCheckpoint"]
