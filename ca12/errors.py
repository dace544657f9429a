"""Exceptions raised at the library's boundary (CLI, config, env/algorithm choice, checkpoints).

The CLI turns a `UsageError` into one line on stderr and exit code 2; inside the library these
are ordinary exceptions that carry the offending value and the allowed choices.
"""

from __future__ import annotations


class UsageError(ValueError):
    """Bad input from the user: unknown name, wrong type, refused directory, bad checkpoint."""


class NonFiniteError(FloatingPointError):
    """A loss term or gradient became NaN/inf; training stops, the last good checkpoint stays."""
