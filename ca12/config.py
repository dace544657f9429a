"""Composing and validating run configs from conf/ (Hydra's compose API + typed schemas).

The YAML in conf/ gives the values; each section is checked against the schema that lives next
to the code reading it (`ca12.schema`): the algorithm's `schema` (ca12/algos/<name>.py), the
networks' (ca12/nets/builder.py), the collector's (ca12/data/collectors.py), the env's common
keys (ca12/envs/__init__.py), the loggers' (ca12/tracking.py), evaluation's and checkpoints',
the Trainer's own signature for `trainer.*`, and for `callbacks.*` (free-form entries) their
structure only: each `_target_` imports as a Lightning Callback that takes the given arguments
(callbacks/__init__.py). Nothing here knows any algorithm's keys, and nothing patches the config
after validation. Bad input is a one-line `UsageError`.
"""

from __future__ import annotations

from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from ca12.errors import UsageError
from ca12.paths import conf_dir, group_options

# Config groups a user may switch with GROUP=OPTION (algo and env are chosen by --algo/--env);
# critic_model takes the options of conf/model/.
SWITCHABLE_GROUPS = {"model": "model", "critic_model": "model", "collector": "collector", "trainer": "trainer", "logger": "logger", "callbacks": "callbacks"}
# conf/env/<family>/scenario.yaml is the template for any scenario of a family without a YAML.
GENERIC_ENV = "scenario"


def algo_names() -> list[str]:
    return group_options("algo")


def env_config_names() -> list[str]:
    """Envs that have their own YAML (family/task), without the per-family generic template."""
    return [name for name in group_options("env") if not name.endswith("/" + GENERIC_ENV)]


def _env_choice(env: str) -> tuple[str, list[str]]:
    """Map `--env family/task` to the env group option plus any extra overrides it needs."""
    from ca12.envs import check_task, env_families

    if env in env_config_names():
        return env, []
    family, _, task = env.partition("/")
    families = env_families()
    if family not in families or not task:
        raise UsageError(f"unknown env '{env}'; expected FAMILY/TASK with FAMILY one of: {', '.join(families)}")
    check_task(family, task)
    return f"{family}/{GENERIC_ENV}", [f"env.task={task}"]


def _split_override(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or key.startswith(("+", "~")):
        raise UsageError(f"bad override '{text}': expected KEY=VALUE, e.g. algo.lr=1e-4")
    return key.strip(), value


def _is_callback_override(text: str) -> bool:
    return text.lstrip("+~").startswith("callbacks.")


def _callback_override(text: str) -> tuple[str, str | None]:
    """`[+]callbacks.NAME[.ARG]=VALUE` (adds the entry or argument when new) -> (key, value);
    `~callbacks.NAME[.ARG]` (removes it) -> (key, None)."""
    if text.startswith("~"):
        key, sep, _ = text[1:].partition("=")
        if sep:
            raise UsageError(f"bad override '{text}': remove a callback with ~{key}")
        value = None
    else:
        key, value = _split_override(text.lstrip("+"))
    if not key.split(".")[1]:
        raise UsageError(f"bad override '{text}': expected callbacks.NAME..., e.g. +callbacks.lr_monitor._target_=lightning.pytorch.callbacks.LearningRateMonitor")
    return key, value


def _removable(cfg: DictConfig, key: str) -> str:
    """`key` (callbacks.NAME[.ARG]) checked to be in `cfg`, for `~key`."""
    if OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
        names = ", ".join(cfg.get("callbacks") or {}) or "none"
        raise UsageError(f"cannot remove '{key}': it is not in the config (callbacks: {names})")
    return key


def _already_removed(cfg: DictConfig, key: str) -> bool:
    """`~callbacks.NAME` on resume where NAME is one of the default callbacks and the saved run
    has none by that name: the run was started with the same removal. (A name that is not a
    default callback is still checked by `_removable`, so a typo is not silently ignored.)"""
    parts = key.split(".")
    return (len(parts) == 2 and parts[1] in _compose([]).callbacks
            and OmegaConf.select(cfg, key, default=_MISSING) is _MISSING)


def _group_override(group: str, value: str) -> str:
    """`GROUP=OPTION` (or `logger=[a,b]`) checked against conf/, as Hydra's override string."""
    options = group_options(SWITCHABLE_GROUPS[group])
    chosen = [v.strip() for v in value.strip("[]").split(",")] if group == "logger" else [value]
    for option in chosen:
        if option not in options:
            raise UsageError(f"unknown {group} '{option}'; choose one of: {', '.join(options)}")
    if group == "critic_model":
        return f"model@critic_model={value}"
    return f"{group}={value}"


def _compose(overrides: list[str]) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        return compose(config_name="config", overrides=overrides)


_MISSING = object()


def load_config(algo: str, env: str, overrides: list[str] | None = None, seed: int | None = None) -> DictConfig:
    """Compose conf/ for one run, apply the overrides and check the result against the schemas.

    Args:
        algo: registered algorithm name (a file in conf/algo/).
        env: `family/task`; a task without its own YAML uses the family's generic template.
        overrides: Hydra-style `KEY=VALUE` strings; `GROUP=OPTION` switches a group.
        seed: if given, sets `seed`.

    Raises:
        UsageError: unknown algorithm, env, group option or key, or a value of the wrong type.
    """
    if algo not in algo_names():
        raise UsageError(f"unknown algorithm '{algo}'; choose one of: {', '.join(algo_names())}")
    env_option, env_overrides = _env_choice(env)
    group_overrides = [f"algo={algo}", f"env={env_option}"]
    value_overrides: list[tuple[str, str]] = []
    callback_overrides: list[tuple[str, str | None]] = []
    for text in overrides or []:
        if _is_callback_override(text):
            callback_overrides.append(_callback_override(text))
            continue
        key, value = _split_override(text)
        if key in ("algo", "env"):
            raise UsageError(f"choose the {key} with --{key}, not {key}={value}")
        if key in SWITCHABLE_GROUPS:
            group_overrides.append(_group_override(key, value))
        else:
            value_overrides.append((key, value))
    base = _compose(group_overrides + env_overrides)

    final = group_overrides + env_overrides + ([f"seed={seed}"] if seed is not None else [])
    for key, value in value_overrides:
        node = OmegaConf.select(base, key, default=_MISSING)
        if node is _MISSING:
            parent, _, leaf = key.rpartition(".")
            section = OmegaConf.select(base, parent) if parent else base
            if parent in ("env", "trainer") and OmegaConf.is_dict(section):
                # Scenario kwargs the env YAML does not list (the env checks their names when
                # built) and Lightning Trainer arguments (checked against its signature).
                final.append(f"+{key}={value}")
                continue
            known = ", ".join(sorted(section.keys())) if OmegaConf.is_dict(section) else "none"
            raise UsageError(f"unknown override key '{key}'; keys under '{parent or '<root>'}': {known}")
        if OmegaConf.is_dict(node):
            raise UsageError(f"'{key}' is a section, not a value; set one of its keys: {', '.join(node.keys())}")
        final.append(f"{key}={value}")
    # Callback entries are free-form: `++` sets a key whether or not the group gave it.
    final += [f"~{_removable(base, key)}" if value is None else f"++{key}={value}" for key, value in callback_overrides]
    try:
        cfg = _compose(final)
    except Exception as exc:  # Hydra's parse errors are multi-line; keep the first line.
        raise UsageError(f"bad override: {str(exc).strip().splitlines()[0]}") from None
    return validate(cfg)


def _section_schemas(cfg: DictConfig) -> dict[str, tuple[type, bool]]:
    """Section -> (its schema, whether it may hold keys the schema does not name), for the
    algorithm and network kinds `cfg` chose; `trainer` is checked against Lightning itself."""
    from ca12.algos import algo_class
    from ca12.data.collectors import CollectorConfig
    from ca12.envs import EnvConfig
    from ca12.evaluation import EvalConfig
    from ca12.nets.builder import model_schema
    from ca12.tracking import LoggerConfig
    from ca12.trainer import CheckpointConfig

    return {
        "algo": (algo_class(cfg.algo.name).schema, False),
        "model": (model_schema(cfg.model.get("kind")), False),
        "critic_model": (model_schema(cfg.critic_model.get("kind")), False),
        "collector": (CollectorConfig, False),
        "env": (EnvConfig, True),  # scenario kwargs: the env checks their names when built
        "logger": (LoggerConfig, False),
        "eval": (EvalConfig, False),
        "checkpoint": (CheckpointConfig, False),
    }


def validate(cfg: DictConfig) -> DictConfig:
    """`cfg` checked section by section against the schemas, plus the checks across keys that
    no single schema can express. Returns the typed config."""
    from ca12.data.collectors import envs_per_batch
    from ca12.schema import typed
    from ca12.trainer import check_trainer_args
    from callbacks import check_callbacks

    if "name" not in cfg.get("algo", {}):
        raise UsageError("the config has no algo.name")
    sections = _section_schemas(cfg)
    unknown = sorted(set(cfg.keys()) - set(sections) - {"seed", "trainer", "callbacks"})
    if unknown:
        raise UsageError(f"unknown config section '{unknown[0]}'")
    out = OmegaConf.create({"seed": cfg.seed})
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool):
        raise UsageError(f"seed expects an integer, got {cfg.seed!r}")
    for name, (schema, open_keys) in sections.items():
        out[name] = typed(schema, cfg[name], name, open_keys=open_keys)
    out.trainer = check_trainer_args(cfg.trainer)
    out.callbacks = check_callbacks(cfg.callbacks if "callbacks" in cfg else OmegaConf.create({}))  # imports each class, builds none
    fpb, num_envs = out.collector.frames_per_batch, envs_per_batch(out)
    if fpb % num_envs:
        raise UsageError(
            f"collector.frames_per_batch ({fpb}) must be a multiple of env.num_envs ({out.env.num_envs})"
            + (f" x collector.workers ({out.collector.workers})" if num_envs != out.env.num_envs else "")
            + ": every env steps the same number of times per batch"
        )
    if out.algo.get("buffer_storage") == "memmap" and str(out.algo.buffer_device) != "cpu":
        raise UsageError(f"algo.buffer_storage=memmap keeps the buffer in files on the host: set algo.buffer_device=cpu (got {out.algo.buffer_device})")
    return out


def num_iterations(cfg: DictConfig, world_size: int = 1, done_iterations: int = 0, done_frames: int = 0) -> int:
    """Iterations (in all) after which collector.total_frames are collected, when each of
    `world_size` processes collects frames_per_batch per iteration (the last may overshoot).

    A resumed run passes what it has done: its earlier iterations may have run on another
    number of processes.
    """
    remaining = max(cfg.collector.total_frames - done_frames, 0)
    return done_iterations + -(-remaining // (cfg.collector.frames_per_batch * world_size))


# Settings that fix the shapes or the data of a run: a resumed run keeps them.
# Keys fixing a run's shapes or data: a section (ending in ".") or one key.
FROZEN_ON_RESUME = ("env.", "algo.name", "algo.groups", "algo.opponent_model", "algo.league.opponents", "algo.league.max_size", "model.", "critic_model.",
                    "collector.frames_per_batch", "collector.kind", "collector.workers", "seed")


def is_frozen_on_resume(key: str) -> bool:
    """Whether `--resume` refuses to change `key` (see FROZEN_ON_RESUME)."""
    return any(key == f or (f.endswith(".") and key.startswith(f)) for f in FROZEN_ON_RESUME)


def apply_overrides(cfg: DictConfig, overrides: list[str] | None, seed: int | None = None) -> DictConfig:
    """Apply `KEY=VALUE` overrides to a saved run config (for `--resume`), with the same checks
    as `load_config`. A key that fixes the run's shapes or data may be restated with its saved
    value (a user repeating the run's own command) but not changed."""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg))
    _relink_callbacks(cfg)
    _fill_new_keys(cfg)
    texts = list(overrides or []) + ([f"seed={seed}"] if seed is not None else [])
    for text in texts:
        if _is_callback_override(text):  # callbacks may be added, changed or removed on resume
            key, value = _callback_override(text)
            if value is None:
                if _already_removed(cfg, key):
                    continue  # the run's own command repeated: it started without this callback
                parent, _, leaf = _removable(cfg, key).rpartition(".")
                OmegaConf.select(cfg, parent).pop(leaf)
            else:
                OmegaConf.update(cfg, key, _parse_value(value), merge=False)
            continue
        key, value = _split_override(text)
        if key in ("trainer", "logger", "callbacks"):  # e.g. resume a DDP run in one process with trainer=cpu
            _group_override(key, value)
            cfg[key] = _compose([f"{key}={value}"])[key]
            continue
        if key in ("algo", "env") or key in SWITCHABLE_GROUPS:
            raise UsageError(f"'{key}' cannot change when resuming a run (it fixes the run's shapes or data)")
        default = OmegaConf.select(cfg, key, default=_MISSING)
        if default is _MISSING or OmegaConf.is_dict(default):
            raise UsageError(f"unknown override key '{key}' for this run")
        parsed = _parse_value(value)
        if is_frozen_on_resume(key):
            saved = OmegaConf.to_container(default) if OmegaConf.is_config(default) else default
            if parsed != saved:
                raise UsageError(f"'{key}' cannot change when resuming a run (it fixes the run's shapes or data): saved {saved!r}, given {parsed!r}")
            continue
        OmegaConf.update(cfg, key, parsed, merge=False)
    return validate(cfg)


def _fill_new_keys(cfg: DictConfig) -> None:
    """Keys ca12 gained after the run was saved (e.g. `algo.anneal_lr`) take their conf/ default,
    which is the behaviour the run had, so an older run still resumes; saved values are kept."""
    fresh = _compose([f"algo={cfg.algo.name}"])
    for section in ("algo", "collector", "eval", "checkpoint"):
        if section in cfg and section in fresh:
            for key, value in fresh[section].items():
                if key not in cfg[section]:
                    cfg[section][key] = value


def _relink_callbacks(cfg: DictConfig) -> None:
    """A saved run config holds resolved values (`callbacks.progress.total_frames: 200`): where an
    entry of the default group still has its class and the value its `${...}` resolves to, put the
    interpolation back, so that `collector.total_frames=N` on resume reaches the progress bar again.
    A config saved before callbacks were a config group gets the default group (what it ran with)."""
    default = _compose([]).callbacks
    if "callbacks" not in cfg:
        cfg.callbacks = default
        return
    for name, entry in default.items():
        saved = cfg.callbacks.get(name)
        if not OmegaConf.is_dict(saved) or saved.get("_target_") != entry._target_:
            continue
        raw = OmegaConf.to_container(entry)  # interpolations as their "${...}" text
        for arg, text in raw.items():
            if OmegaConf.is_interpolation(entry, arg) and arg in saved and not OmegaConf.is_interpolation(saved, arg):
                value = saved[arg]
                saved[arg] = text
                if OmegaConf.select(cfg, f"callbacks.{name}.{arg}", throw_on_resolution_failure=False) != value:
                    saved[arg] = value  # set to something else: keep it


def _parse_value(text: str) -> Any:
    """A command-line value as Hydra's override grammar reads it (1 -> int, 1e-4 -> float,
    true -> bool, [1,2] -> list), so resume overrides read exactly like fresh ones."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(f"key={text}").value()
    except Exception:
        raise UsageError(f"cannot read the value '{text}'") from None


def describe(cfg: DictConfig) -> str:
    """The composed config as YAML-like lines, each key followed by its one-line doc
    (`python -m ca12.fit --show-config`)."""
    from ca12.schema import docs

    schemas = _section_schemas(cfg)
    lines = [f"seed: {cfg.seed}  # seeds Python, NumPy, torch and the env"]
    for section, node in cfg.items():
        if section == "seed":
            continue
        lines.append(f"{section}:")
        documented = docs(schemas[section][0]) if section in schemas else {}
        if section == "env":  # a family documents its own keys (e.g. gym's vectorization)
            from ca12.envs import family_key_docs

            documented = {**family_key_docs(node.family), **documented}
        for name, value in node.items():
            if section == "logger" and value is None:
                continue
            shown = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
            doc = documented.get(name) or _OPEN_SECTION_DOCS.get(section, "")
            lines.append(f"  {name}: {_yaml_value(shown)}" + (f"  # {doc}" if doc else ""))
    return "\n".join(lines)


_OPEN_SECTION_DOCS = {
    "trainer": "Lightning Trainer argument",
    "env": "scenario kwarg",
    "callbacks": "Lightning callback (they run in this order, then GracefulStop)",
}


def _yaml_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value).replace("'", "") if isinstance(value, (list, dict)) else str(value)
