"""What every command (`python -m ca12.fit|evaluate|compare|pbt`) shares: the parser whose
errors are one line, the quiet console, the signal stop, and the one ladder from an exception to
an exit code. Foundations only (errors, paths); the libraries a command needs are imported by the
command, after its arguments were read.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Callable

from ca12.errors import NonFiniteError, UsageError

# Exit codes: 0 done, 1 a run failed (NaN losses, a sweep's member), 2 bad input, 128 + N a signal.
EXIT_FAILED, EXIT_USAGE, EXIT_KEYBOARD = 1, 2, 130


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one-line `UsageError`s (exit 2 through `run_command`)."""

    def error(self, message: str):  # one line, exit 2, no usage dump
        raise UsageError(message)


class Interrupted(Exception):
    """A signal stopped the run after its iteration was saved (exit 128 + signal number)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def run_command(prog: str, body: Callable[[], int | None], resume_hint: str = "") -> int:
    """`body()`'s exit code (None is 0), or the code of what it raised, with one line on stderr:
    `UsageError` 2, `NonFiniteError` 1 (the last good checkpoint is kept), `Interrupted` 128 + the
    signal, Ctrl-C 130. `resume_hint` ends the lines of a stopped command (e.g. "; continue with
    --resume"); a stopped single run says nothing more (its progress bar said where it stopped)."""
    try:
        return body() or 0
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except NonFiniteError as exc:
        print(f"{prog}: {exc}; the last good checkpoint is kept", file=sys.stderr)
        return EXIT_FAILED
    except Interrupted as exc:
        if resume_hint:
            print(f"{prog}: stopped by a signal{resume_hint}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print(f"{prog}: interrupted{resume_hint}", file=sys.stderr)
        return EXIT_KEYBOARD


def out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is the host or the device running out of memory."""
    import torch

    text = str(exc)
    return isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or (
        isinstance(exc, RuntimeError) and ("out of memory" in text or "DefaultCPUAllocator: can't allocate memory" in text)
    )


def check_writable(path: Path, what: str, directory: bool = True) -> None:
    """Refuse, in one line and before anything is built, a path this process cannot create or
    write: an existing one must be a directory (`directory`) or a file, and writable; a new one
    needs its nearest existing parent to be a directory it may write in. A run that got past
    this check and then failed in `mkdir` would have built its env and networks for nothing.

    Raises:
        UsageError: naming `what` (the flag) and the path (or the parent) at fault.
    """
    kind = "directory" if directory else "file"
    if path.exists():
        if path.is_dir() != directory:
            raise UsageError(f"{what} '{path}' is not a {kind}")
        place = path
    else:
        place = next(parent for parent in path.absolute().parents if parent.exists())
        if not place.is_dir():
            raise UsageError(f"{what} '{path}' cannot be created: '{place}' is a file, not a directory")
    if not os.access(place, os.W_OK | (os.X_OK if place.is_dir() else 0)):
        raise UsageError(f"{what} '{path}' cannot be written: '{place}' is not writable here")


def quiet_libraries() -> None:
    """Keep the console to our progress bar, errors and summary."""
    # TorchRL sets its logger's level from RL_LOGGING_LEVEL when first imported (INFO by default,
    # which printed every replay buffer's storage size).
    os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")
    import lightning  # noqa: F401  (sets its loggers' levels on import; override them after)

    os.environ.setdefault("WANDB_SILENT", "true")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "torchrl"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="lightning.*")
    warnings.filterwarnings("ignore", category=UserWarning, module="torchrl")
