"""`experiment=NAME` and `debug=NAME`: the config groups that stand for a set of keys rather than
one section (conf/experiment/, conf/debug/ with conf/debug_algo/<debug>/<algo>.yaml). An
experiment is tuned for one algorithm and env, which its defaults list names; on `--resume` either
group (the run's own command repeated) stands for its keys, each checked as a restated override.
"""

from __future__ import annotations

import json

import yaml
from omegaconf import DictConfig

from ca12.errors import UsageError
from ca12.paths import conf_dir, group_options


def check_option(name: str, group: str, option: str) -> None:
    """Refuse in one line an option the config group `group` (a folder of conf/) does not hold;
    `name` is how the command line calls the group (`critic_model` for conf/model/)."""
    options = group_options(group)
    if option not in options:
        raise UsageError(f"unknown {name} '{option}'; choose one of: {', '.join(options)}")


def experiment_choice(overrides: list[str] | None) -> str | None:
    """The `experiment=NAME` among command-line overrides, checked against conf/experiment/."""
    chosen = [text.partition("=")[2] for text in overrides or [] if text.partition("=")[0].strip() == "experiment"]
    if not chosen:
        return None
    check_option("experiment", "experiment", chosen[-1])
    return chosen[-1]


def experiment_target(name: str) -> tuple[str, str]:
    """(algorithm, env) an experiment is tuned for: its defaults list's `override /algo: A` and
    `override /env: FAMILY/TASK` (conf/experiment/NAME.yaml, a file of ca12's own)."""
    path = conf_dir() / "experiment" / f"{name}.yaml"
    entries = yaml.safe_load(path.read_text()).get("defaults", [])
    found = {key.removeprefix("override /"): value for entry in entries if isinstance(entry, dict) for key, value in entry.items()}
    if "algo" not in found or "env" not in found:
        raise UsageError(f"experiment={name}: {path} names no algorithm and env (its defaults need 'override /algo: A' and 'override /env: F/T')")
    return found["algo"], found["env"]


def group_texts(cfg: DictConfig, text: str) -> list[str]:
    """`experiment=NAME` or `debug=NAME` on `--resume`, as the `KEY=VALUE` texts its files set for
    the run's algorithm (group switches among them as `GROUP=OPTION`), so that `apply_overrides`
    lets the run's own command be repeated and refuses, key by key, what would change a frozen one."""
    group, _, option = (part.strip() for part in text.partition("="))
    check_option(group, group, option)
    files = [conf_dir() / group / f"{option}.yaml"]
    run = (cfg.algo.name, f"{cfg.env.family}/{cfg.env.task}")
    if group == "debug":
        files.append(conf_dir() / "debug_algo" / option / f"{cfg.algo.name}.yaml")
    elif experiment_target(option) != run:
        tuned = experiment_target(option)
        raise UsageError(f"experiment={option} is tuned for --algo {tuned[0]} --env {tuned[1]}; this run trains {run[0]} on {run[1]}")
    texts = []
    for path in filter(lambda path: path.is_file(), files):
        data = yaml.safe_load(path.read_text()) or {}
        for entry in data.pop("defaults", []):
            for target, choice in entry.items() if isinstance(entry, dict) else []:
                name = target.removeprefix("override /").partition("@")[2] or target.removeprefix("override /")
                texts += [] if name in ("algo", "env") else [f"{name}={choice}"]  # algo and env: checked by experiment_target
        texts += [f"{key}={value if isinstance(value, str) else json.dumps(value)}" for key, value in _leaves(data)]
    return texts


def _leaves(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value
