"""Composing and validating run configs from conf/ (Hydra's compose API).

The YAML in conf/ is the truth: this module composes it with the command line's overrides,
checks every override against the composed defaults (key exists, value has the default's type)
and refuses what does not fit with a `UsageError` naming the bad input and what is allowed.
Nothing here patches the config after validation.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from ca12.errors import UsageError

# Config groups a user may switch with GROUP=OPTION; algo and env are chosen by --algo/--env.
SWITCHABLE_GROUPS = ("trainer", "logger")
# conf/env/<family>/scenario.yaml is the template for any scenario of a family without a YAML.
GENERIC_ENV = "scenario"


def conf_dir() -> Path:
    """Where conf/ lives: $CA12_CONF, the source tree beside the package, or the installed copy."""
    candidates = []
    if os.environ.get("CA12_CONF"):
        candidates.append(Path(os.environ["CA12_CONF"]))
    candidates.append(Path(__file__).resolve().parent.parent / "conf")
    candidates.append(Path(sys.prefix) / "share" / "ca12" / "conf")
    for path in candidates:
        if (path / "config.yaml").is_file():
            return path
    raise FileNotFoundError(f"ca12 cannot find its conf/ directory (looked in {[str(p) for p in candidates]})")


def group_options(group: str) -> list[str]:
    """Options of a config group, e.g. group_options('trainer') -> ['cpu', 'ddp', 'gpu']."""
    root = conf_dir() / group
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def algo_names() -> list[str]:
    return group_options("algo")


def env_config_names() -> list[str]:
    """Envs that have their own YAML (family/task), without the per-family generic template."""
    return [name for name in group_options("env") if not name.endswith("/" + GENERIC_ENV)]


def _env_choice(env: str) -> tuple[str, list[str]]:
    """Map `--env family/task` to the env group option plus any extra overrides it needs."""
    from ca12.envs import env_families, family_tasks

    if env in env_config_names():
        return env, []
    family, _, task = env.partition("/")
    families = env_families()
    if family not in families or not task:
        raise UsageError(f"unknown env '{env}'; expected FAMILY/TASK with FAMILY one of: {', '.join(families)}")
    tasks = family_tasks(family)
    if task not in tasks:
        raise UsageError(f"unknown {family} task '{task}'; choose one of: {', '.join(tasks)}")
    return f"{family}/{GENERIC_ENV}", [f"env.task={task}"]


def _split_override(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or key.startswith(("+", "~")):
        raise UsageError(f"bad override '{text}': expected KEY=VALUE, e.g. algo.lr=1e-4")
    return key.strip(), value


def _compose(overrides: list[str]) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        return compose(config_name="config", overrides=overrides)


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        type(value), type(value).__name__
    )


def _check_type(key: str, default: Any, value: Any) -> None:
    """Refuse an override whose value is not of the default's type (ints are fine for floats)."""
    if default is None or value is None:
        return
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(default, bool) and isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float))
    elif isinstance(default, int):
        ok = isinstance(value, int)
    elif OmegaConf.is_list(default):
        ok = OmegaConf.is_list(value) or isinstance(value, list)
    elif OmegaConf.is_dict(default):
        ok = OmegaConf.is_dict(value) or isinstance(value, dict)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise UsageError(f"{key} expects {_type_name(default)} (default {default!r}), got {value!r}")


def load_config(algo: str, env: str, overrides: list[str] | None = None, seed: int | None = None) -> DictConfig:
    """Compose conf/ for one run and validate the overrides.

    Args:
        algo: registered algorithm name (a file in conf/algo/).
        env: `family/task`; a task without its own YAML uses the family's generic template.
        overrides: Hydra-style `KEY=VALUE` strings; `trainer=`/`logger=` switch groups.
        seed: if given, sets `seed`.

    Raises:
        UsageError: unknown algorithm, env, group option or key, or a value of the wrong type.
    """
    if algo not in algo_names():
        raise UsageError(f"unknown algorithm '{algo}'; choose one of: {', '.join(algo_names())}")
    env_option, env_overrides = _env_choice(env)
    group_overrides = [f"algo={algo}", f"env={env_option}"]
    value_overrides: list[tuple[str, str]] = []
    for text in overrides or []:
        key, value = _split_override(text)
        if key in ("algo", "env"):
            raise UsageError(f"choose the {key} with --{key}, not {key}={value}")
        if key in SWITCHABLE_GROUPS:
            options = group_options(key)
            if value not in options:
                raise UsageError(f"unknown {key} '{value}'; choose one of: {', '.join(options)}")
            group_overrides.append(f"{key}={value}")
        else:
            value_overrides.append((key, value))
    base = _compose(group_overrides + env_overrides)

    final = group_overrides + env_overrides + ([f"seed={seed}"] if seed is not None else [])
    checked: list[tuple[str, Any]] = []
    for key, value in value_overrides:
        node = OmegaConf.select(base, key, default=_MISSING)
        if node is _MISSING:
            parent, _, leaf = key.rpartition(".")
            section = OmegaConf.select(base, parent) if parent else base
            if parent == "env" and OmegaConf.is_dict(section):
                # Scenario kwargs the env YAML does not list: the env itself checks the name.
                final.append(f"+{key}={value}")
                continue
            known = ", ".join(sorted(section.keys())) if OmegaConf.is_dict(section) else "none"
            raise UsageError(f"unknown override key '{key}'; keys under '{parent or '<root>'}': {known}")
        if OmegaConf.is_dict(node):
            raise UsageError(f"'{key}' is a section, not a value; set one of its keys: {', '.join(node.keys())}")
        final.append(f"{key}={value}")
        checked.append((key, node))
    try:
        cfg = _compose(final)
    except Exception as exc:  # Hydra's parse errors are multi-line; keep the first line.
        raise UsageError(f"bad override: {str(exc).strip().splitlines()[0]}") from None
    for key, default in checked:
        _check_type(key, default, OmegaConf.select(cfg, key))
    validate(cfg)
    return cfg


_MISSING = object()


def validate(cfg: DictConfig) -> None:
    """Checks across keys that no single type can express."""
    fpb, total = cfg.collector.frames_per_batch, cfg.collector.total_frames
    num_envs = cfg.env.num_envs
    for key, value in (
        ("collector.frames_per_batch", fpb),
        ("collector.total_frames", total),
        ("env.num_envs", num_envs),
        ("env.max_steps", cfg.env.max_steps),
        ("checkpoint.every_n_iters", cfg.checkpoint.every_n_iters),
        ("trainer.devices", cfg.trainer.devices),
        ("trainer.num_nodes", cfg.trainer.num_nodes),
        ("eval.episodes", cfg.eval.episodes),
    ):
        if value <= 0:
            raise UsageError(f"{key} must be positive, got {value}")
    if fpb % num_envs:
        raise UsageError(
            f"collector.frames_per_batch ({fpb}) must be a multiple of env.num_envs ({num_envs}): "
            "every env steps the same number of times per batch"
        )
    for key in ("num_epochs", "actor_epochs", "minibatch_size"):
        if key in cfg.algo and cfg.algo[key] <= 0:
            raise UsageError(f"algo.{key} must be positive, got {cfg.algo[key]}")
    storage = cfg.algo.get("buffer_storage", "memory")
    if storage not in ("memory", "memmap"):
        raise UsageError(f"algo.buffer_storage must be memory or memmap, got {storage!r}")
    if storage == "memmap" and str(cfg.algo.buffer_device) != "cpu":
        raise UsageError(f"algo.buffer_storage=memmap keeps the buffer in files on the host: set algo.buffer_device=cpu (got {cfg.algo.buffer_device})")
    for key in ("priority_alpha", "priority_beta"):
        if key in cfg.algo and not cfg.algo[key] >= 0:
            raise UsageError(f"algo.{key} must be non-negative, got {cfg.algo[key]}")
    if cfg.eval.every_n_iters < 0:
        raise UsageError(f"eval.every_n_iters must be 0 (never) or positive, got {cfg.eval.every_n_iters}")
    if "lr" in cfg.algo and not cfg.algo.lr > 0:
        raise UsageError(f"algo.lr must be positive, got {cfg.algo.lr}")


def episode_aligned(cfg: DictConfig) -> bool:
    """Every env runs whole episodes in each batch (what exact resume relies on)."""
    steps_per_env = cfg.collector.frames_per_batch // cfg.env.num_envs
    return steps_per_env % cfg.env.max_steps == 0


def num_iterations(cfg: DictConfig, world_size: int = 1, done_iterations: int = 0, done_frames: int = 0) -> int:
    """Iterations (in all) after which collector.total_frames are collected, when each of
    `world_size` processes collects frames_per_batch per iteration (the last may overshoot).

    A resumed run passes what it has done: its earlier iterations may have run on another
    number of processes.
    """
    remaining = max(cfg.collector.total_frames - done_frames, 0)
    return done_iterations + -(-remaining // (cfg.collector.frames_per_batch * world_size))


# Settings that fix the shapes or the data of a run: a resumed run keeps them.
FROZEN_ON_RESUME = ("env.", "algo.name", "algo.share_params", "algo.hidden_sizes", "algo.activation", "collector.frames_per_batch", "seed")


def apply_overrides(cfg: DictConfig, overrides: list[str] | None, seed: int | None = None) -> DictConfig:
    """Apply `KEY=VALUE` overrides to a saved run config (for `--resume`), with the same checks
    as `load_config`; keys that cannot change mid-run are refused."""
    cfg = cfg.copy()
    texts = list(overrides or []) + ([f"seed={seed}"] if seed is not None else [])
    for text in texts:
        key, value = _split_override(text)
        if key in SWITCHABLE_GROUPS:  # e.g. resume a DDP run in one process with trainer=cpu
            options = group_options(key)
            if value not in options:
                raise UsageError(f"unknown {key} '{value}'; choose one of: {', '.join(options)}")
            cfg[key] = OmegaConf.load(conf_dir() / key / f"{value}.yaml")
            continue
        if key.startswith(FROZEN_ON_RESUME) or key in ("algo", "env"):
            raise UsageError(f"'{key}' cannot change when resuming a run (it fixes the run's shapes or data)")
        default = OmegaConf.select(cfg, key, default=_MISSING)
        if default is _MISSING or OmegaConf.is_dict(default):
            raise UsageError(f"unknown override key '{key}' for this run")
        parsed = _parse_value(value)
        _check_type(key, default, parsed)
        OmegaConf.update(cfg, key, parsed, merge=False)
    validate(cfg)
    return cfg


def _parse_value(text: str) -> Any:
    """A command-line value as Hydra's override grammar reads it (1 -> int, 1e-4 -> float,
    true -> bool, [1,2] -> list), so resume overrides read exactly like fresh ones."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(f"key={text}").value()
    except Exception:
        raise UsageError(f"cannot read the value '{text}'") from None
