"""Composing and validating run configs from conf/ (Hydra's compose API + typed schemas).

The YAML in conf/ gives the values; each section is checked against its schema (`ca12.schema`),
declared where no torch, TorchRL or Lightning is imported, so a config is composed, checked and
shown without them (docs/ARCHITECTURE.md, "What may be imported at start-up"): the algorithm's
(ca12/algos/schemas.py), the env's common keys (ca12/envs/catalog.py), the networks', the
collector's, the loggers' and evaluation's (ca12/sections.py), checkpoints' (ca12/run/trainer.py),
the Trainer's own arguments for `trainer.*`, and for `callbacks.*` (free-form entries) their
structure only: each `_target_` imports as a Lightning Callback that takes the given arguments
(callbacks/__init__.py). Nothing here knows any algorithm's keys, and nothing patches the config
after validation. Bad input is a one-line `UsageError`.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from ca12.algos import algo_schema
from ca12.algos.schemas import OnPolicyConfig
from ca12.callbacks import check_callbacks
from ca12.envs import check_task, env_families, family_key_docs
from ca12.envs.catalog import EnvConfig
from ca12.errors import UsageError
from ca12.paths import conf_dir, group_options
from ca12.run.experiments import check_option, experiment_choice, experiment_target, group_texts
from ca12.run.trainer import CheckpointConfig, check_trainer_args
from ca12.schema import docs, typed
from ca12.sections import MAX_SEED, CollectorConfig, EvalConfig, LoggerConfig, envs_per_batch, model_schema
from ca12.untrusted import check_callback_classes, check_env_factory, check_plain_config, is_env_factory

# Config groups a user may switch with GROUP=OPTION (algo and env are chosen by --algo/--env);
# critic_model takes the options of conf/model/.
SWITCHABLE_GROUPS = {
    "model": "model",
    "critic_model": "model",
    "collector": "collector",
    "trainer": "trainer",
    "logger": "logger",
    "callbacks": "callbacks",
    "experiment": "experiment",
    "debug": "debug",
}
# conf/env/<family>/scenario.yaml is the template for any scenario of a family without a YAML.
GENERIC_ENV = "scenario"
# Agent counts several env families take as a task kwarg (VMAS, generic, memory, market): checked
# when the config is validated, wherever the task has one, since VMAS answers n_agents=0 with a
# long assertion deep in a scenario. The family checks its other kwargs by name when it builds the env.
AGENT_COUNT_KEYS = ("n_agents",)


def algo_names() -> list[str]:
    return group_options("algo")


def env_config_names() -> list[str]:
    """Envs that have their own YAML (family/task), without the per-family generic template."""
    return [name for name in group_options("env") if not name.endswith("/" + GENERIC_ENV)]


def _env_choice(env: str) -> tuple[str, list[str]]:
    """Map `--env family/task` to the env group option plus any extra overrides it needs."""
    if env in env_config_names():
        return env, []
    if is_env_factory(env):  # your own env (ca12/envs/user.py): the user's command names the code it runs
        path = env.removeprefix("user/")
        check_env_factory({"family": "user", "task": path}, "--env")
        return f"user/{GENERIC_ENV}", [f"env.task={path}"]
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
        raise UsageError(
            f"bad override '{text}': expected callbacks.NAME..., e.g. +callbacks.lr_monitor._target_=lightning.pytorch.callbacks.LearningRateMonitor"
        )
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
    return len(parts) == 2 and parts[1] in _compose([]).callbacks and OmegaConf.select(cfg, key, default=_MISSING) is _MISSING


def _group_override(group: str, value: str) -> str:
    """`GROUP=OPTION` (or `logger=[a,b]`) checked against conf/, as Hydra's override string."""
    chosen = [v.strip() for v in value.strip("[]").split(",")] if group == "logger" else [value]
    for option in chosen:
        check_option(group, SWITCHABLE_GROUPS[group], option)
    if group == "critic_model":
        return f"model@critic_model={value}"
    return f"{group}={value}"


def _compose(overrides: list[str]) -> DictConfig:
    """conf/ composed with Hydra `overrides`: a fresh copy of a composition kept per conf/
    directory and override list, since a Hydra compose is slow next to a copy and a sweep, a
    population or the tests compose the same lists again and again."""
    return copy.deepcopy(_composed(str(conf_dir()), tuple(overrides)))


@functools.lru_cache(maxsize=512)
def _composed(config_dir: str, overrides: tuple[str, ...]) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return compose(config_name="config", overrides=list(overrides))


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
    experiment = experiment_choice(overrides)
    tuned_algo, tuned_env = experiment_target(experiment) if experiment is not None else (algo, env)
    if (tuned_algo, tuned_env) != (algo, env):
        raise UsageError(
            f"experiment={experiment} is tuned for --algo {tuned_algo} --env {tuned_env}, not --algo {algo} --env {env} (leave both out)"
        )
    env_option, env_overrides = _env_choice(env)
    # conf/tuned/<algo>/<env>.yaml: the algorithm's settings for this env, unless an experiment
    # (a whole setup of its own) is chosen
    group_overrides = [f"algo={algo}", f"env={env_option}"] + (["~tuned"] if experiment is not None else [])
    value_overrides: list[tuple[str, str]] = []
    callback_overrides: list[tuple[str, str | None]] = []
    for text in overrides or []:
        if _is_callback_override(text):
            callback_overrides.append(_callback_override(text))
            continue
        key, value = _split_override(text)
        if key in ("algo", "env"):
            raise UsageError(f"choose the {key} with --{key}, not {key}={value}")
        if key == "tuned":
            if value.strip() != "none":
                raise UsageError(f"tuned={value}: the only choice is tuned=none (the algorithm's generic defaults, not its settings for this env)")
            group_overrides.append("~tuned")
            continue
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
    return {
        "algo": (algo_schema(cfg.algo.name), False),
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
    if "name" not in cfg.get("algo", {}):
        raise UsageError("the config has no algo.name")
    sections = _section_schemas(cfg)
    unknown = sorted(set(cfg.keys()) - set(sections) - {"seed", "trainer", "callbacks"})
    if unknown:
        raise UsageError(f"unknown config section '{unknown[0]}'")
    out = OmegaConf.create({"seed": check_seed(cfg.seed)})
    for name, (schema, open_keys) in sections.items():
        out[name] = typed(schema, cfg[name], name, open_keys=open_keys)
    for name in AGENT_COUNT_KEYS:
        count = out.env.get(name, 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise UsageError(f"env.{name} must be a positive integer, got {count!r}")
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
        raise UsageError(
            f"algo.buffer_storage=memmap keeps the buffer in files on the host: set algo.buffer_device=cpu (got {out.algo.buffer_device})"
        )
    if issubclass(sections["algo"][0], OnPolicyConfig) and out.algo.minibatch_size > fpb:
        raise UsageError(
            f"algo.minibatch_size ({out.algo.minibatch_size}) is larger than collector.frames_per_batch ({fpb}): "
            f"{out.algo.name} takes its minibatches from one collected batch"
        )
    return out


def check_seed(seed: Any, where: str = "seed") -> int:
    """`seed`, refused in one line unless it is an integer NumPy, torch and Lightning all accept
    (`MAX_SEED`): beyond, the run would fail only once it seeds, after its directory is written."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise UsageError(f"{where} expects an integer, got {seed!r}")
    if not 0 <= seed <= MAX_SEED:
        raise UsageError(f"{where} must be in 0..{MAX_SEED} (what NumPy, torch and Lightning seed with), got {seed}")
    return seed


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
FROZEN_ON_RESUME = (
    "env.",
    "algo.name",
    "algo.groups",
    "algo.opponent_model",
    "algo.value_norm",
    "algo.league.opponents",
    "algo.league.max_size",
    "model.",
    "critic_model.",
    "collector.frames_per_batch",
    "collector.kind",
    "collector.workers",
    "seed",
)


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
    # `experiment=`/`debug=` (the run's own command repeated) stand for their keys, in their place.
    texts = [each for text in texts for each in (group_texts(cfg, text) if text.partition("=")[0].strip() in ("experiment", "debug") else [text])]
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
        if key == "tuned":
            raise UsageError("'tuned' cannot change when resuming a run (the run's config already holds the settings it was composed with)")
        if key in ("algo", "env") or key in SWITCHABLE_GROUPS:
            # Each option of model/ and collector/ names itself in its section's `kind`: the one the
            # run was composed with may be restated (the run's own command repeated), no other.
            saved_kind = OmegaConf.select(cfg, f"{key}.kind", default=None) if key in SWITCHABLE_GROUPS else None
            given_kind = OmegaConf.select(_compose([_group_override(key, value)]), f"{key}.kind", default=None) if saved_kind is not None else None
            if saved_kind is not None and given_kind == saved_kind:
                continue
            raise UsageError(
                f"'{key}' cannot change when resuming a run (it fixes the run's shapes or data)"
                + (f": saved {key}={saved_kind}, given {key}={value}" if saved_kind is not None else "")
            )
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


def saved_config(run_config: Any, where: str, overrides: list[str] | None = None, seed: int | None = None, callbacks: bool = True) -> DictConfig:
    """The run config a checkpoint holds (`ca12.run_config`), read as data from anyone (ca12/untrusted.py):
    plain values only, no interpolation, no class but an allowed callback's or one the user's own
    `overrides` name; then the overrides applied (`apply_overrides`), validated, and its env task
    checked against its family's registry, before anything is built from it.

    Args:
        where: the file it came from, for the one-line errors.
        callbacks: False where the run's callbacks are not built (evaluation, loading a policy):
            the saved section comes back as the plain data it is, its classes neither checked
            against the allowlist nor imported, so one the run's owner wrote cannot stop them.
    """
    check_plain_config(run_config, where)
    if isinstance(run_config.get("env"), dict):
        check_env_factory(run_config["env"], where)
    run_config, saved_callbacks = dict(run_config), run_config.get("callbacks")
    if callbacks:
        check_callback_classes(run_config, where, overrides or [])
    else:
        run_config["callbacks"] = {}
    if not isinstance(run_config.get("algo"), dict) or not isinstance(run_config.get("env"), dict):
        raise UsageError(f"{where}: the run config has no algo or env section")
    cfg = apply_overrides(OmegaConf.create(run_config), overrides, seed)
    check_task(cfg.env.family, cfg.env.task)
    if not callbacks and saved_callbacks is not None:
        cfg.callbacks = saved_callbacks
    return cfg


def _fill_new_keys(cfg: DictConfig) -> None:
    """Keys ca12 gained after the run was saved (e.g. `algo.anneal_lr`) take their conf/ default,
    which is the behaviour the run had, so an older run still resumes; saved values are kept. The
    generic defaults, not an env's tuned ones (conf/tuned/): a run that lacks a key predates them."""
    fresh = _compose([f"algo={cfg.algo.name}", "~tuned"])
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
    try:
        return OverridesParser.create().parse_override(f"key={text}").value()
    except Exception:
        raise UsageError(f"cannot read the value '{text}'") from None


def describe(cfg: DictConfig) -> str:
    """The composed config as YAML-like lines, each key followed by its one-line doc
    (`python -m ca12.fit --show-config`)."""
    schemas = _section_schemas(cfg)
    lines = [f"seed: {cfg.seed}  # seeds Python, NumPy, torch and the env"]
    for section, node in cfg.items():
        if section == "seed":
            continue
        lines.append(f"{section}:")
        documented = docs(schemas[section][0]) if section in schemas else {}
        if section == "env":  # a family documents its own keys (e.g. gym's vectorization)
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
