"""Random-number state: capture and restore every generator a run draws from, and isolate
side computations (evaluation, env construction) from the training stream."""

from __future__ import annotations

import contextlib
import random
from typing import Any, Callable, Iterator

import numpy as np
import torch


# Generators that libraries keep apart from the global ones (VMAS keeps one for all its envs):
# name -> (get_state, set_state). Env families register theirs when imported.
_EXTRA_SOURCES: dict[str, tuple[Callable[[], Any], Callable[[Any], None]]] = {}


def register_rng_source(name: str, get_state: Callable[[], Any], set_state: Callable[[Any], None]) -> None:
    """Make `capture_rng_state`/`restore_rng_state` (and so checkpoints) cover another generator."""
    _EXTRA_SOURCES[name] = (get_state, set_state)


def capture_rng_state() -> dict:
    """Python, NumPy, torch (CPU and every CUDA device) and registered library generator states."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    state["extra"] = {name: get() for name, (get, _) in _EXTRA_SOURCES.items()}
    return state


def restore_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, value in state.get("extra", {}).items():
        if name in _EXTRA_SOURCES:
            _EXTRA_SOURCES[name][1](value)


@contextlib.contextmanager
def isolated_rng() -> Iterator[None]:
    """Whatever runs inside leaves every global generator as it found it.

    VMAS seeds the global generators when an env is built or seeded, and evaluation samples
    actions; neither may shift the training run's random stream.
    """
    state = capture_rng_state()
    try:
        yield
    finally:
        restore_rng_state(state)
