"""Typed config schemas: each part of ca12 declares the keys it reads as a dataclass next to its
code, and OmegaConf checks a composed config against it (types, unknown keys, missing values).

Values live in conf/ (the YAML is the truth); a schema holds each key's type, its one-line doc
(shown by `python -m ca12.fit --show-config`) and, where a type cannot say it, its bounds or
the allowed choices (`check` enforces those: OmegaConf has no such constraint).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from omegaconf import MISSING, DictConfig, OmegaConf

from ca12.errors import UsageError


def key(
    doc: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    below: float | None = None,
    positive: bool = False,
    choices: Sequence[str] | None = None,
) -> Any:
    """A schema field with no default (conf/ gives the value) and its documentation.

    Args:
        doc: one line shown by --show-config.
        minimum: the value must be >= minimum.
        maximum: the value must be <= maximum (a discount factor above 1 makes returns diverge).
        below: the value must be < below (a line search's shrink factor of 1 never shrinks).
        positive: the value must be > 0.
        choices: the value must be one of these strings.
    """
    meta = {"doc": doc, "minimum": minimum, "maximum": maximum, "below": below, "positive": positive, "choices": tuple(choices) if choices else None}
    return dataclasses.field(default=MISSING, metadata=meta)


def docs(schema: type) -> dict[str, str]:
    """Field name -> one-line doc of a schema dataclass (inherited fields included)."""
    return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(schema)}


def typed(schema: type, node: DictConfig | dict, where: str, open_keys: bool = False) -> DictConfig:
    """`node` merged onto `schema`: OmegaConf converts and checks every value's type and refuses
    keys the schema does not declare (unless `open_keys`, e.g. VMAS scenario kwargs), then the
    bounds and choices of `key` are checked. Errors are one-line `UsageError`s.

    Args:
        schema: a dataclass whose fields are `key(...)`s.
        node: the composed section.
        where: its dotted path in the run config, for messages ("algo", "collector").
    """
    base = OmegaConf.structured(schema)
    if open_keys:
        OmegaConf.set_struct(base, False)
    try:
        merged = OmegaConf.merge(base, node)
    except Exception as exc:  # omegaconf's ValidationError / ConfigKeyError, multi-line
        raise UsageError(schema_error(exc, where, schema)) from None
    missing = sorted(OmegaConf.missing_keys(merged))
    if missing:
        raise UsageError(f"{where}.{missing[0]} has no value (conf/ must give one)")
    check(schema, merged, where)
    return merged


_TYPE_WORDS = {"bool": "a boolean", "int": "an integer", "float": "a number", "str": "a string"}


def schema_error(exc: Exception, where: str, schema: type) -> str:
    """One line out of OmegaConf's multi-line validation messages."""
    leaf = getattr(exc, "key", None)
    full = f"{where}.{leaf}" if leaf is not None else where
    fields = {f.name: f for f in dataclasses.fields(schema)}
    if type(exc).__name__ == "ConfigKeyError" or (leaf is not None and leaf not in fields):
        return f"unknown key '{full}'; keys under '{where}': {', '.join(sorted(fields))}"
    ref = fields[leaf].type if leaf in fields else None  # a string: annotations are postponed
    word = _TYPE_WORDS.get(ref if isinstance(ref, str) else getattr(ref, "__name__", ""))
    text = str(exc).strip().splitlines()[0]
    if word:
        got = text.split("'")[1] if text.count("'") >= 2 else text
        return f"{full} expects {word}, got {got!r}"
    return f"{full}: {text}"


def check(schema: type, node: DictConfig, where: str) -> None:
    """The bounds and choices declared with `key` (OmegaConf checks only types)."""
    for f in dataclasses.fields(schema):
        value = node.get(f.name)
        meta = f.metadata
        if value is None or isinstance(value, bool):
            continue
        if meta.get("positive") and not value > 0:
            raise UsageError(f"{where}.{f.name} must be positive, got {value}")
        if meta.get("minimum") is not None and not value >= meta["minimum"]:
            raise UsageError(f"{where}.{f.name} must be >= {meta['minimum']}, got {value}")
        if meta.get("maximum") is not None and not value <= meta["maximum"]:
            raise UsageError(f"{where}.{f.name} must be <= {meta['maximum']}, got {value}")
        if meta.get("below") is not None and not value < meta["below"]:
            raise UsageError(f"{where}.{f.name} must be below {meta['below']}, got {value}")
        if meta.get("choices") and value not in meta["choices"]:
            raise UsageError(f"{where}.{f.name} must be one of {', '.join(meta['choices'])}, got {value!r}")
