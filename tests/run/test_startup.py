"""Listing, help, `--show-config` and the refusals decided from the command line and conf/ answer
without importing torch, TorchRL, Lightning or an env library (docs/ARCHITECTURE.md, "What may be
imported at start-up"), and say what they said before; the tables that let them (Lightning's
Trainer arguments, ca12's callbacks, the env families' tasks, the schemas' choices) agree with the
code they stand for. The timings: benchmarks/startup.py (no timed assertion here)."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from ca12.paths import group_options

ROOT = Path(__file__).resolve().parents[2]
# The commands benchmarks/startup.py times: every one must stay light.
_spec = importlib.util.spec_from_file_location("startup_benchmark", ROOT / "benchmarks" / "startup.py")
startup = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(startup)
COMMANDS = {name: (module, argv) for name, module, argv in startup.COMMANDS}

# What only a run (or a check that needs the library itself) may import.
HEAVY = (
    "torch",
    "torchrl",
    "tensordict",
    "lightning",
    "pytorch_lightning",
    "vmas",
    "pettingzoo",
    "mpe2",
    "sumo",
    "sumo_rl",
    "pandapower",
    "ray",
    "wandb",
)


@functools.cache
def _cli(name: str) -> tuple[int, str, list[str], set[str]]:
    """(exit code, stdout, stderr lines, top-level modules imported) of command `name`, run in a
    fresh interpreter with `-X importtime` (which lists every import on stderr); once per command."""
    module, argv = COMMANDS[name]
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", module, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = done.stderr.splitlines()
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in lines if line.startswith("import time:") and "|" in line}
    return done.returncode, done.stdout, [line for line in lines if not line.startswith("import time:")], imported


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_startup_command_imports_no_heavy_library(name):
    code, _, err, imported = _cli(name)
    assert code in (0, 2), err
    assert not imported & set(HEAVY), f"{name} imported {sorted(imported & set(HEAVY))}"
    if name != "list" and "gym" not in name:  # Gymnasium's registry lists the gym/ tasks (it imports quickly)
        assert "gymnasium" not in imported


def test_list_names_every_algorithm_and_the_env_families_tasks():
    code, out, _, _ = _cli("list")
    lines = out.splitlines()
    assert code == 0
    assert [line for line in lines if line.startswith("algo ")] == [f"algo {name}" for name in group_options("algo")]
    for env in (
        "vmas/navigation",
        "vmas/speaker_listener",
        "vmas/simple_speaker_listener",
        "vmas/wind_flocking",
        "matrix/climbing",
        "matrix/custom",
        "generic/coop",
        "memory/cue",
        "gym/CartPole-v1",
        "pettingzoo/simple_spread",
        "comm/traffic_junction",
        "market/allocation",
        "meta/opponent",
        "grid/cigre_lv",
        "traffic/grid4x4",
        "sumo/resco_grid4x4",
    ):
        assert f"env {env}" in lines
    envs = [line for line in lines if line.startswith("env ")]
    assert envs == sorted(envs) and len(envs) == len(set(envs))


@pytest.mark.parametrize("name", ["help", "help -h", "evaluate -h", "compare -h", "pbt -h"])
def test_help_is_printed(name):
    code, out, _, _ = _cli(name)
    assert code == 0 and out.startswith(f"usage: python -m {COMMANDS[name][0]}")


def test_show_config_documents_every_key():
    from ca12.algos.schemas import MAPPOConfig
    from ca12.schema import docs

    code, out, _, _ = _cli("show-config")
    assert code == 0
    section = None
    for line in out.splitlines():
        if not line.startswith(" "):
            section = line.split(":")[0]
        elif section != "callbacks":
            assert "  # " in line, f"{section}: {line}"
    for key, doc in docs(MAPPOConfig).items():
        assert any(line.startswith(f"  {key}: ") and line.endswith(f"  # {doc}") for line in out.splitlines()), key
    assert "  lr: 0.001  # Adam learning rate of actor and critic" in out.splitlines()  # conf/tuned/mappo/vmas/navigation.yaml


def test_show_config_documents_a_family_key():
    code, out, _, _ = _cli("show-config (gym)")
    assert code == 0
    assert any(line.startswith("  vectorization: gymnasium  # one Gymnasium vector env in process") for line in out.splitlines())


@pytest.mark.parametrize(
    "name, message",
    [
        ("unknown algorithm", "unknown algorithm 'nope'; choose one of: a3c, coma, es"),
        ("unknown env family", "unknown env 'nope/x'; expected FAMILY/TASK with FAMILY one of: comm, generic, grid, gym"),
        ("unknown env task", "unknown vmas task 'nope'; choose one of: balance, ball_passage"),
        ("unknown group option", "unknown model 'nope'; choose one of: cnn, commnet, dial, graph"),
        ("unknown key", "unknown override key 'algo.nope'; keys under 'algo': anneal_lr, clip_epsilon"),
        ("unknown trainer key", "unknown key 'trainer.nope'; Lightning's Trainer takes: accelerator, strategy, devices"),
        ("wrong type", "algo.lr expects a number, got 'abc'"),
        ("bad override syntax", "bad override 'algo.lr': expected KEY=VALUE"),
        ("missing --algo", "--algo is required (see --list)"),
    ],
)
def test_refusals_are_one_line(name, message):
    code, out, err, _ = _cli(name)
    assert code == 2 and out == "" and len(err) == 1
    assert err[0].startswith(f"ca12.fit: error: {message}"), err[0]


# --- the tables that stand in for heavy imports agree with what they stand for ------------------------
def test_trainer_arguments_are_lightnings_own():
    import lightning as L

    from ca12.run.trainer import trainer_arguments

    assert trainer_arguments() == [name for name in inspect.signature(L.Trainer.__init__).parameters if name != "self"]


def test_own_callbacks_table_matches_the_classes():
    from lightning.pytorch.callbacks import ProgressBar

    from ca12 import callbacks

    for name, (progress_bar, arguments) in callbacks.OWN_CALLBACKS.items():
        cls = getattr(callbacks, name)
        assert issubclass(cls, ProgressBar) == progress_bar, name
        assert tuple(inspect.signature(cls).parameters) == arguments, name


def test_every_algorithm_has_a_schema_and_its_choices_are_the_codes():
    from torch import nn

    from ca12.algos.schemas import A3C_MODES, A3C_OPTIMISERS, SCHEMAS
    from ca12.distributed.parameter_server import MODES, OPTIMISERS
    from ca12.sections import ACTIVATIONS

    assert sorted(SCHEMAS) == group_options("algo")
    assert A3C_OPTIMISERS == tuple(OPTIMISERS) and A3C_MODES == MODES
    assert all(issubclass(getattr(nn, cls), nn.Module) for cls in ACTIVATIONS.values())
    for schema in set(SCHEMAS.values()):
        assert dataclasses.is_dataclass(schema)


def test_vmas_tasks_are_vmas_scenarios_and_ca12s():
    import vmas

    from ca12.envs.catalog import vmas_tasks
    from ca12.envs.vmas.tasks import SCENARIOS

    assert vmas_tasks() == sorted([*vmas.scenarios, *vmas.mpe_scenarios, *SCENARIOS])


def test_cuda_available_is_torchs_answer():
    import torch

    from ca12.run.trainer import cuda_available

    assert cuda_available() == torch.cuda.is_available()
