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
    """Make `capture_rng_state`/`restore_rng_state` (and so checkpoints) cover another generator.

    `get_state` must return tensors, numbers, strings, lists, tuples or dicts only: the state goes
    into checkpoints, which are read with `torch.load(weights_only=True)`.
    """
    _EXTRA_SOURCES[name] = (get_state, set_state)


def numpy_state_to_plain(state: tuple) -> tuple:
    """NumPy's legacy `get_state()` tuple with its key array as an int64 tensor.

    Checkpoints hold only what `torch.load(weights_only=True)` accepts, and that refuses NumPy
    arrays; the 624 uint32 words of the Mersenne Twister fit an int64 tensor exactly.
    """
    name, keys, pos, has_gauss, cached_gaussian = state
    return (name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached_gaussian))


def numpy_state_from_plain(state: tuple) -> tuple:
    """The inverse of `numpy_state_to_plain`: a tuple `np.random.set_state` takes."""
    name, keys, pos, has_gauss, cached_gaussian = state
    return (name, torch.as_tensor(keys).cpu().numpy().astype(np.uint32), pos, has_gauss, cached_gaussian)


def capture_rng_state() -> dict:
    """Python, NumPy, torch (CPU and every CUDA device) and registered library generator states,
    as tensors, numbers and tuples only (see `numpy_state_to_plain`); registered sources must
    return such plain values too."""
    state = {
        "python": random.getstate(),
        "numpy": numpy_state_to_plain(np.random.get_state()),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    state["extra"] = {name: get() for name, (get, _) in _EXTRA_SOURCES.items()}
    return state


def restore_rng_state(state: dict) -> None:
    """Set every generator `capture_rng_state` covers back to `state` (sources unknown here are skipped)."""
    random.setstate(state["python"])
    np.random.set_state(numpy_state_from_plain(state["numpy"]))
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
