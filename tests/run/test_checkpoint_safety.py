"""Checkpoints are data, never code: they hold plain values only and are read with PyTorch's safe
loader, so a crafted file is refused in one line and nothing in it runs."""

from __future__ import annotations

import pathlib
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_args

import ca12.envs.vmas  # noqa: F401  (registers VMAS's generator as an RNG source)
from ca12.callbacks import IterationCheckpoint
from ca12.fit import main
from ca12.seeding import capture_rng_state, restore_rng_state
from ca12.untrusted import unsafe_entry

# (name, algo, extra args): on-policy on VMAS and on the generic env (its own torch.Generator is an
# RNG source), off-policy with a replay buffer in memory with priorities, and in memory-mapped files.
RUNS = [
    ("mappo", "mappo", []),
    ("mappo_generic", "mappo", ["--env", "generic/coop"]),
    ("qmix_prioritized", "qmix", ["algo.prioritized=true"]),
    ("iql_memmap", "iql", ["algo.buffer_storage=memmap"]),
]


class _Payload:
    """Unpickling this creates `marker`: it stands for any code a crafted checkpoint would run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """`last.ckpt` of a tiny run of each of `RUNS`."""
    root = tmp_path_factory.mktemp("runs")
    paths = {}
    for name, algo, extra in RUNS:
        run_dir = root / name
        assert main(["--algo", algo, "--run-dir", str(run_dir), *tiny_args(algo), "logger=none", *extra]) == 0
        paths[name] = run_dir / "checkpoints" / "last.ckpt"
    return paths


def _crafted(path: Path, marker: Path, around: dict) -> Path:
    torch.save({**around, "payload": _Payload(marker)}, path)
    return path


def _run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=180, cwd=cwd)


@pytest.mark.parametrize("around", ["nothing", "a real ca12 checkpoint"])
def test_a_crafted_checkpoint_is_refused_and_its_payload_never_runs(around, checkpoints, tmp_path):
    # Around the payload: nothing, or everything a genuine checkpoint holds (its ca12 section
    # included), which ca12 would accept if it were unpickled with weights_only=False.
    content = {} if around == "nothing" else torch.load(checkpoints["mappo"], weights_only=True)

    armed = tmp_path / "armed"  # the payload is live: the unsafe loader runs it
    torch.load(_crafted(tmp_path / "armed.ckpt", armed, content), weights_only=False)
    assert armed.exists()

    marker = tmp_path / "pwned"
    path = _crafted(tmp_path / "crafted.ckpt", marker, content)
    for command in (["ca12.evaluate", str(path)], ["ca12.fit", "--resume", str(path)]):
        out = _run_cli(*command, cwd=tmp_path)
        assert not marker.exists(), f"{command[0]} ran the checkpoint's payload"
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2, out.stderr
        assert len(lines) == 1 and f"'{path}' is not a readable checkpoint" in lines[0], lines


@pytest.mark.parametrize("name", [name for name, _, _ in RUNS])
def test_a_real_checkpoint_holds_plain_values_only(name, checkpoints):
    checkpoint = torch.load(checkpoints[name], weights_only=True)  # raises on anything else
    assert "run_config" in checkpoint["ca12"]
    (datamodule,) = [key for key in checkpoint if key.endswith("DataModule")]
    assert torch.is_tensor(checkpoint[datamodule]["rng"]["numpy"][1])
    if name.startswith(("qmix", "iql")):
        assert checkpoint[datamodule]["buffer"]["_storage"]["_len"] == 200


def test_rng_state_survives_the_safe_loader_exactly(tmp_path):
    """Every generator a checkpoint covers (Python, NumPy, torch, VMAS's) comes back bit for bit."""

    def draws() -> tuple:
        return random.random(), np.random.rand(3).tolist(), np.random.randn(), torch.rand(3).tolist()

    np.random.randn()  # leaves a cached Gaussian in NumPy's state
    state = capture_rng_state()
    expected = draws()
    torch.save(state, tmp_path / "rng.pt")
    draws()
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert draws() == expected
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert unsafe_entry(capture_rng_state()) is None
    assert _same(capture_rng_state(), state)


def _same(a, b) -> bool:
    if torch.is_tensor(a):
        return torch.is_tensor(b) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_a_state_that_could_not_be_read_back_is_not_written():
    assert unsafe_entry({"rng": [1, ("MT19937", torch.zeros(2), 3, 0, 0.5)], "n": None}) is None
    assert unsafe_entry({"rng": [1, ("MT19937", np.zeros(2))]}) == "checkpoint['rng'][1][1]: numpy.ndarray"
    assert unsafe_entry({"lr": np.float64(0.1)}) == "checkpoint['lr']: numpy.float64"
    with pytest.raises(TypeError, match=r"checkpoint\['DataModule'\]\['rng'\]: numpy.ndarray"):
        IterationCheckpoint("unused", 1).on_save_checkpoint(None, None, {"DataModule": {"rng": np.zeros(2)}})
