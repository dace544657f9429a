"""Every command line, `KEY=VALUE` and `--flag` README.md shows works as shown.

A reader copies them: a key that does not exist (`logger.mode` for `logger.wandb.mode`), a flag
no command takes or a command that no longer parses fails them on their first try. So every
`python -m ca12.<cmd> ...` in a bash block is parsed by its command's own parser and its config
composed and validated (`load_config` with the command's overrides); every `--flag` elsewhere
(the synopsis, prose) must be one some command takes; every config key in prose must exist in a
config the README's commands compose (`trainer.*`: also any Lightning Trainer argument), and a
`KEY=VALUE` there must compose and validate beside the first such command's algorithm and env.
A handful of representative commands run, shrunk to tiny sizes, in a temporary directory;
commands that need a GPU, Ray, SLURM or SUMO are checked for parsing and config only.
"""

from __future__ import annotations

import inspect
import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from conftest import tiny_args
from omegaconf import OmegaConf

from ca12.algos import default_env
from ca12.paths import group_options
from ca12.run.config import SWITCHABLE_GROUPS, load_config
from ca12.run.experiments import experiment_choice, experiment_target
from ca12.run.tracking import read_metrics_rows
from ca12.untrusted import name_env_factories_in

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
SECTIONS = {"algo", "env", "model", "critic_model", "collector", "trainer", "logger", "callbacks", "checkpoint", "eval"}
# KEY[=VALUE] of a config section, optionally with Hydra's +/~ prefix.
CONFIG_TOKEN = re.compile(r"^([+~]?)([a-z_]+(?:\.[A-Za-z0-9_]+)*)(?:=(.*))?$")
PROGRAMS = ("pip", "python", "python3", "wandb", "ray", "torchrun", "srun")
PLACEHOLDER = re.compile(r"^[A-Z]{2,}$")  # NAME, ARG: a key's part the reader replaces (`env.N` is a real one)


@dataclass(frozen=True)
class Command:
    module: str  # fit, evaluate, compare, pbt, game_theory
    argv: tuple[str, ...]
    line: str


def _readme() -> str:
    return README.read_text()


def _command(tokens: list[str], line: str) -> Command | None:
    """The ca12 command in a shell line's tokens (after `python -m`, `torchrun -m`...), `...` left out."""
    for i, token in enumerate(tokens[:-1]):
        if token == "-m" and tokens[i + 1].startswith("ca12."):
            return Command(tokens[i + 1].removeprefix("ca12."), tuple(t for t in tokens[i + 2 :] if t != "..."), line)
    return None


def readme_commands() -> list[Command]:
    """Every `python -m ca12.<cmd>` of the bash blocks (continuation lines joined, comments and
    the commands before `&&` dropped) and of inline code."""
    text, found = _readme(), []
    lines = [line for lang, body in FENCE.findall(text) if lang == "bash" for line in body.replace("\\\n", " ").splitlines()]
    lines += [span for span in re.findall(r"`([^`]+)`", FENCE.sub("", text)) if "python -m ca12." in span]
    for line in lines:
        tokens = shlex.split(line, comments=True)
        segments = " ".join(shlex.quote(t) for t in tokens).split(" && ")
        found += [c for segment in segments if (c := _command(shlex.split(segment), line.strip())) is not None]
    return [c for c in dict.fromkeys(found) if c.argv]  # `python -m ca12.pbt` alone names the command


def shown_flags() -> list[tuple[str, str]]:
    """(flag, where) for every `--flag` outside the bash blocks: usage synopses, the architecture
    sketch and inline code (the values after a flag that takes one are not flags)."""
    text = _readme()
    found = []
    for lang, body in FENCE.findall(text):
        for line in body.splitlines() if lang != "bash" else []:
            if "-m ca12." in line:
                found += [(t.strip("[]").split("=")[0], line.strip()) for t in line.split("-m ca12.", 1)[1].split() if t.lstrip("[").startswith("--")]
    for span in prose_spans():
        if not _program(span):  # `ray start --head`: another program's flag; a ca12 command: parsed whole
            found += [(token.split("=")[0], span) for token in span.split() if token.startswith("--")]
    return found


def _program(span: str) -> bool:
    """Whether inline code is a command of some program (`pip install ...`, `python -m ...`)."""
    return span.split()[0].rpartition("/")[2] in PROGRAMS if span.split() else False


def prose_spans() -> list[str]:
    """Inline code outside the fenced blocks, one line each."""
    return [span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", FENCE.sub("", _readme()))]


def prose_config_tokens() -> list[tuple[str, str, str | None, str]]:
    """(prefix, key, value or None, span) of every config key in inline code, `a\\|b` alternatives
    (a markdown table's escaped `|`) expanded, flag values and programs' arguments skipped."""
    found = []
    for span in prose_spans():
        if _program(span):
            continue  # another program's arguments; a ca12 command is checked with the bash blocks'
        key_part, sep, values = span.partition("=")
        try:
            tokens = [f"{key_part}={v}" for v in values.split("\\|")] if "\\|" in span and sep else shlex.split(span)
        except ValueError:
            tokens = span.split()
        skip_next = False
        for token in tokens:
            if skip_next or token.startswith("--"):
                skip_next = token.startswith("--") and "=" not in token and _takes_value(token)
                continue
            match = CONFIG_TOKEN.match(token)
            if match and match.group(2).split(".")[0] in SECTIONS and ("." in match.group(2) or match.group(3) is not None):
                found.append((match.group(1), match.group(2), match.group(3), span))
    return found


@cache
def _parsers() -> dict:
    from ca12.compare import build_parser as compare
    from ca12.evaluate import build_parser as evaluate
    from ca12.fit import build_parser as fit
    from ca12.game_theory.cli import build_parser as game_theory
    from ca12.multirun.sweep import build_parser as sweep
    from ca12.pbt import build_parser as pbt

    return {"fit": fit(), "sweep": sweep(), "evaluate": evaluate(), "compare": compare(), "pbt": pbt(), "game_theory": game_theory()}


def _options() -> dict[str, bool]:
    """Every option string of every command -> whether it takes a value (not a switch)."""
    return {name: action.nargs != 0 for parser in _parsers().values() for action in parser._actions for name in action.option_strings}


def _takes_value(flag: str) -> bool:
    return _options().get(flag, False)


# --- composing a command's config -----------------------------------------------------------------
@cache
def command_configs(command: Command) -> tuple:
    """The configs `command` composes (several for a sweep), after its own parser accepted it;
    raises what the command would report (a `UsageError`)."""
    argv = list(command.argv)
    name_env_factories_in(argv)  # `--env my_envs:Meet`: the reader's own env, named as ca12.fit names it
    if command.module == "fit" and ("-m" in argv or "--multirun" in argv):
        from ca12.multirun.sweep import parse_sweep

        sweep = parse_sweep(argv)
        # Each algorithm x env once and each swept value once: seeds and the other pairings add no key.
        chosen, seen = [], set()
        for c in sweep.combinations():
            new = {(c.algo, c.env), *c.swept} - seen
            if new:
                chosen.append(c)
                seen |= new
        return tuple(load_config(c.algo, c.env, sweep.overrides(c), seed=c.seed) for c in chosen)
    if command.module == "fit":
        args = _parsers()["fit"].parse_intermixed_args(argv)
        if args.list:
            return ()
        experiment = experiment_choice(args.overrides)
        if experiment is not None and not args.algo:  # the experiment names its algorithm and env
            return (load_config(*experiment_target(experiment), args.overrides, seed=args.seed),)
        algo = args.algo or "mappo"  # --resume RUN: the README's example runs are mappo's
        return (load_config(algo, args.env or default_env(algo), args.overrides, seed=args.seed),)
    if command.module == "evaluate":
        from ca12.envs import family_baselines

        args = _parsers()["evaluate"].parse_args(argv)
        if args.baseline is None:
            return ()  # a run directory of the reader's
        assert args.baseline in family_baselines(args.env.split("/")[0]), command.line
        return (load_config("mappo", args.env, args.args, seed=args.seed),)
    if command.module == "pbt":
        from ca12.multirun.pbt.members import check_spec
        from ca12.pbt import spec_from_args

        spec, _ = spec_from_args(_parsers()["pbt"].parse_intermixed_args(argv))
        check_spec(spec)
        return (load_config(spec.algo, spec.env, spec.overrides),)
    if command.module == "game_theory":
        from ca12.game_theory.cli import load_game

        args = _parsers()["game_theory"].parse_args(argv)
        if not args.game.endswith((".json", ".npy")):  # a named classic; a file is the reader's
            load_game(args.game)
        return ()
    _parsers()[command.module].parse_args(argv)  # compare: the folders are the reader's
    return ()


def _flat_keys(cfg) -> set[str]:
    def walk(node, prefix: str):
        yield prefix
        if isinstance(node, dict):
            for name, value in node.items():
                yield from walk(value, f"{prefix}.{name}")

    return {key for name, value in OmegaConf.to_container(cfg, resolve=False).items() for key in walk(value, name)}


COMMANDS = readme_commands()
# One worker runs them all (`--dist loadgroup`): they share the composed configs (`command_configs`).
pytestmark = pytest.mark.xdist_group("readme")


def test_the_readme_shows_commands_of_every_kind():
    assert {c.module for c in COMMANDS} == {"fit", "evaluate", "compare", "pbt", "game_theory"}
    assert len(COMMANDS) > 40


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c.argv)[:60] or c.module for c in COMMANDS])
def test_every_command_parses_and_its_config_composes(command):
    command_configs(command)


def test_every_flag_shown_is_one_a_command_takes():
    unknown = [(flag, where) for flag, where in shown_flags() if flag not in _options()]
    assert not unknown, unknown


def test_every_config_key_shown_exists_and_every_value_composes():
    from lightning.pytorch import Trainer

    configs = [(command, cfg) for command in COMMANDS for cfg in command_configs(command)]
    keys = set().union(*(_flat_keys(cfg) for _, cfg in configs))
    trainer_args = set(inspect.signature(Trainer).parameters)  # `trainer.<any Trainer argument>`
    unknown, batches = [], {}
    for prefix, key, value, span in prose_config_tokens():
        parts = key.split(".")
        if prefix == "~" or any(PLACEHOLDER.match(part) for part in parts):
            continue  # `~callbacks.NAME`, `+callbacks.NAME._target_=CLASS`: the reader names them
        if len(parts) == 1:  # GROUP=OPTION (or GROUP=[A,B])
            options = {v.strip() for v in value.strip("[]").split(",")}
            if key not in SWITCHABLE_GROUPS or not options <= set(group_options(SWITCHABLE_GROUPS[key])):
                unknown.append(span)
            continue
        if parts[0] != "callbacks" and key not in keys and not (parts[0] == "trainer" and parts[1] in trainer_args):
            unknown.append(span)
            continue
        if value is None or value in ("...", "[...]") or re.fullmatch(r"[A-Z]+", value):
            continue  # a key alone, or a value the reader chooses (`env.history=K`)
        # Composed beside the first command whose config has the key: its algorithm, env and groups.
        command, cfg = next(((c, cfg) for c, cfg in configs if OmegaConf.select(cfg, key, default=None) is not None), (None, None))
        context = (
            ("mappo", default_env("mappo"), ())
            if command is None
            else (cfg.algo.name, f"{cfg.env.family}/{cfg.env.task}", tuple(o for o in command.argv if o.partition("=")[0] in SWITCHABLE_GROUPS))
        )
        override = f"{prefix}{key}={value}"  # a batch per context, each key once in a batch
        found = batches.setdefault(context, [])
        batch = next((b for b in found if not any(o.partition("=")[0] == override.partition("=")[0] for o in b)), None)
        if batch is None:
            found.append(batch := [])
        batch.append(override)
    assert not unknown, f"the README names config keys or options that do not exist: {unknown}"
    assert batches, "no KEY=VALUE found in the README's prose"
    for (algo, env, groups), found in batches.items():
        for batch in found:
            load_config(algo, env, [*groups, *batch])


def _tiny(command: Command, algo: str) -> list[str]:
    """`command`'s arguments shrunk: the tiny settings of tests/conftest.py (and W&B off, 2
    evaluation episodes) replace the command's own values of the keys they set."""
    tiny = [*tiny_args(algo), "logger=csv", "eval.episodes=2"]
    keys = {text.partition("=")[0] for text in tiny}
    return [text for text in command.argv if text.partition("=")[0] not in keys] + tiny


def test_representative_commands_run_with_tiny_sizes(tmp_path, monkeypatch, capsys):
    from ca12.evaluate import main as evaluate
    from ca12.fit import main as fit
    from ca12.game_theory.cli import main as game_theory

    shown = {(c.module, c.argv): c for c in COMMANDS}

    def readme(module: str, *argv: str) -> Command:
        assert (module, argv) in shown, f"the README no longer shows python -m ca12.{module} {' '.join(argv)}: pick another to run here"
        return shown[module, argv]

    monkeypatch.chdir(tmp_path)  # runs/ and runs/index.txt, where `--resume last` looks
    assert fit(_tiny(readme("fit", "--algo", "mappo"), "mappo")) == 0  # the first command: runs/mappo/vmas-navigation/<stamp>
    assert fit([*readme("fit", "--resume", "last", "--algo", "mappo", "collector.total_frames=480000").argv[:-1], "collector.total_frames=400"]) == 0
    (run_dir,) = Path("runs/mappo/vmas-navigation").iterdir()
    assert [row["time/frames"] for row in read_metrics_rows(run_dir / "metrics.csv")] == ["100.0", "200.0", "300.0", "400.0"]
    evaluation = readme("evaluate", "runs/mappo/vmas-navigation/20261124-020111", "--episodes", "16")
    assert evaluate([str(run_dir) if text.startswith("runs/") else text for text in evaluation.argv]) == 0
    assert "16 episodes after 400 training frames" in capsys.readouterr().out
    replay = readme("fit", "--algo", "qmix", "--env", "vmas/navigation", "env.continuous_actions=false")  # the replay family
    assert fit(_tiny(replay, "qmix")) == 0
    assert game_theory(list(readme("game_theory", "chicken").argv)) == 0
    assert fit(list(readme("fit", "--list").argv)) == 0
    assert "algo qmix" in capsys.readouterr().out.splitlines()
