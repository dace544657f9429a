"""Sweeps (`python -m ca12.fit -m`): one ordinary run per combination, a manifest, skipping
finished runs and resuming unfinished ones, Hydra's list syntax, bad input refused before
anything runs, and the Ray launcher."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from ca12.errors import UsageError
from ca12.fit import main
from ca12.multirun.sweep import parse_sweep

# Two iterations of 2 worlds x 10 steps, tiny nets, no evaluation.
TINY_SWEEP = [
    "env.num_envs=2",
    "env.max_steps=10",
    "collector.frames_per_batch=20",
    "collector.total_frames=40",
    "model.hidden_sizes=[16,16]",
    "critic_model.hidden_sizes=[16,16]",
    "algo.minibatch_size=10",
    "algo.num_epochs=1",
    "logger=none",
    "eval.every_n_iters=0",
]
NAMES = [f"{algo}/vmas-{task}/seed{seed}" for algo in ("mappo", "ippo") for task in ("navigation", "balance") for seed in (0, 1)]


def _manifest(sweep_dir: Path) -> dict:
    return json.loads((sweep_dir / "sweep.json").read_text())


def _weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_2x2x2_sweep_writes_eight_runs_and_a_manifest_and_a_second_invocation_skips_them(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    command = ["-m", "--algo", "mappo,ippo", "--env", "vmas/navigation,vmas/balance", "--seed", "0,1", "--run-dir", "sweep", *TINY_SWEEP]
    assert main(command) == 0
    assert "8 trained, 0 resumed, 0 skipped (complete), 0 failed" in capsys.readouterr().out

    manifest = _manifest(tmp_path / "sweep")
    assert [run["name"] for run in manifest["runs"]] == NAMES
    assert manifest["axes"] == {"algo": ["mappo", "ippo"], "env": ["vmas/navigation", "vmas/balance"], "seed": [0, 1]}
    assert manifest["overrides"] == TINY_SWEEP and manifest["command"][3:] == command
    for run in manifest["runs"]:
        assert (run["status"], run["action"], run["frames"], run["total_frames"], run["error"]) == ("done", "trained", 40, 40, None)
        run_dir = tmp_path / "sweep" / run["dir"]
        cfg = OmegaConf.load(run_dir / "config.yaml")
        assert (cfg.algo.name, f"{cfg.env.family}/{cfg.env.task}", cfg.seed) == (run["algo"], run["env"], run["seed"])
        assert (run_dir / "metrics.csv").is_file()
    mtimes = {name: (tmp_path / "sweep" / name / "checkpoints" / "last.ckpt").stat().st_mtime_ns for name in NAMES}
    assert not _same_weights(_weights(tmp_path / "sweep" / NAMES[0]), _weights(tmp_path / "sweep" / NAMES[1])), "seeds differ"

    assert main(command) == 0
    out = capsys.readouterr().out
    assert "8 already complete" in out and "0 trained, 0 resumed, 8 skipped (complete), 0 failed" in out
    assert {name: (tmp_path / "sweep" / name / "checkpoints" / "last.ckpt").stat().st_mtime_ns for name in NAMES} == mtimes
    assert [run["action"] for run in _manifest(tmp_path / "sweep")["runs"]] == ["skipped"] * 8


def test_an_unfinished_run_resumes_from_its_checkpoint_and_ends_as_an_uninterrupted_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    sweep = ["-m", "--algo", "mappo", "--seed", "0,1", *TINY_SWEEP]
    assert main([*sweep, "--run-dir", "whole"]) == 0
    # A run left after its first iteration, as a killed sweep leaves it: a checkpoint short of total_frames.
    unfinished = tmp_path / "split" / "mappo" / "vmas-navigation" / "seed0"
    assert main(["--algo", "mappo", "--seed", "0", "--run-dir", str(unfinished), *TINY_SWEEP, "collector.total_frames=20"]) == 0
    capsys.readouterr()

    assert main([*sweep, "--run-dir", "split"]) == 0
    assert "1 trained, 1 resumed, 0 skipped (complete), 0 failed" in capsys.readouterr().out
    runs = {run["name"]: run for run in _manifest(tmp_path / "split")["runs"]}
    assert runs["mappo/vmas-navigation/seed0"]["action"] == "resumed" and runs["mappo/vmas-navigation/seed1"]["action"] == "trained"
    for name in runs:
        assert _same_weights(_weights(tmp_path / "split" / name), _weights(tmp_path / "whole" / name)), name
    assert torch.load(unfinished / "checkpoints" / "last.ckpt", weights_only=True)["ca12"]["frames"] == 40


def test_bracketed_list_values_are_one_value_and_lists_of_them_are_swept(tmp_path, monkeypatch, capsys):
    parsed = parse_sweep(
        [
            "-m",
            "--algo",
            "mappo",
            "model.hidden_sizes=[16,16],[8,8,8]",
            "logger=[csv,tensorboard]",
            "critic_model.hidden_sizes=[16,16]",
            "env.hide_observation={agents:[0,1]}",
            "algo.lr=1e-3,1e-4",
            "seed=range(2)",
        ]
    )
    assert parsed.swept == {"model.hidden_sizes": ["[16,16]", "[8,8,8]"], "algo.lr": ["0.001", "0.0001"]}
    assert parsed.fixed == ["logger=[csv,tensorboard]", "critic_model.hidden_sizes=[16,16]", "env.hide_observation={agents:[0,1]}"]
    assert parsed.seeds == [0, 1]

    monkeypatch.chdir(tmp_path)
    assert main(["-m", "--algo", "mappo", "--run-dir", "sweep", *TINY_SWEEP, "model.hidden_sizes=[16,16],[8,8,8]"]) == 0
    runs = _manifest(tmp_path / "sweep")["runs"]
    assert [run["name"] for run in runs] == [
        "mappo/vmas-navigation/model.hidden_sizes=[16,16]/seed0",
        "mappo/vmas-navigation/model.hidden_sizes=[8,8,8]/seed0",
    ]
    assert [OmegaConf.load(tmp_path / "sweep" / run["dir"] / "config.yaml").model.hidden_sizes for run in runs] == [[16, 16], [8, 8, 8]]
    assert [run["swept"] for run in runs] == [{"model.hidden_sizes": "[16,16]"}, {"model.hidden_sizes": "[8,8,8]"}]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--algo", "mappo,dqn9"], "dqn9/vmas-navigation/seed0: unknown algorithm 'dqn9'"),
        (["--algo", ""], "--algo is required"),
        (["--algo", "mappo,"], "--algo: cannot read 'mappo,'"),
        (["--algo", "mappo", "--env", "vmas/navigation,vmas/nowhere"], "unknown vmas task 'nowhere'"),
        (["--algo", "mappo", "--seed", "0,x"], "--seed takes integers"),
        (["--algo", "mappo", "algo.lrr=1,2"], "mappo/vmas-navigation/algo.lrr=1/seed0: unknown override key 'algo.lrr'"),
        (["--algo", "mappo", "env.num_envs=2,many"], "env.num_envs expects an integer, got 'many'"),
        (["--algo", "mappo", "--seed", "0", "seed=1"], "give the seeds once"),
        (["--algo", "mappo", "trainer=ddp"], "a sweep trains each run in one process"),
        (["--algo", "mappo", "--launcher", "slurm"], "--launcher slurm needs submitit: pip install submitit"),
        (["--algo", "mappo", "--resume", "last"], "unrecognized arguments: --resume"),
    ],
)
def test_bad_sweep_input_fails_in_one_line_before_anything_runs(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "submitit", None)  # as where it is not installed (import raises ImportError)
    assert main(["-m", *args, "--run-dir", "sweep", *TINY_SWEEP]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("ca12.fit: error: ") and message in err, err
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "runs").exists()


def test_a_failing_run_is_recorded_and_the_others_still_run(tmp_path, monkeypatch, capsys):
    from ca12.algos.mappo import MAPPO

    monkeypatch.chdir(tmp_path)
    original = MAPPO.__init__

    def refuse_seed_1(self, cfg, env):  # a run that fails once started (bad input is refused before)
        if cfg.seed == 1:
            raise UsageError("seed 1 refused")
        original(self, cfg, env)

    monkeypatch.setattr(MAPPO, "__init__", refuse_seed_1)
    assert main(["-m", "--algo", "mappo", "--seed", "0,1", "--run-dir", "sweep", *TINY_SWEEP]) == 1
    runs = _manifest(tmp_path / "sweep")["runs"]
    assert [(run["status"], run["error"]) for run in runs] == [("done", None), ("failed", "seed 1 refused")]
    assert "1 trained, 0 resumed, 0 skipped (complete), 1 failed" in capsys.readouterr().out


@pytest.mark.slow  # about 20 s: starting Ray and two workers that import torch
@pytest.mark.xdist_group("ray")
def test_the_ray_launcher_runs_a_two_run_sweep_as_a_single_fit_would(tmp_path, monkeypatch, capsys):
    ray = pytest.importorskip("ray", reason="Ray is part of the test extra")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    started_here = not ray.is_initialized()  # else another test's Ray, which the sweep joins and leaves running
    assert main(["-m", "--algo", "mappo", "--seed", "0,1", "--run-dir", "sweep", "--launcher", "ray", *TINY_SWEEP]) == 0
    assert ray.is_initialized() != started_here, "a local Ray the sweep started is shut down, another one kept"
    assert "2 trained, 0 resumed, 0 skipped (complete), 0 failed" in capsys.readouterr().out
    runs = _manifest(tmp_path / "sweep")["runs"]
    assert [(run["name"], run["status"], run["frames"]) for run in runs] == [
        ("mappo/vmas-navigation/seed0", "done", 40),
        ("mappo/vmas-navigation/seed1", "done", 40),
    ]
    assert main(["--algo", "mappo", "--seed", "1", "--run-dir", "single", *TINY_SWEEP]) == 0
    assert _same_weights(_weights(tmp_path / "sweep" / runs[1]["dir"]), _weights(tmp_path / "single"))
    indexed = (tmp_path / "runs" / "index.txt").read_text().splitlines()
    assert str((tmp_path / "sweep" / runs[0]["dir"]).resolve()) in indexed, "the Ray task worked in the sweep's directory"


def test_the_slurm_launcher_runs_a_sweep_through_submitit(tmp_path, monkeypatch):
    """Without a Slurm cluster submitit's AutoExecutor runs the jobs as local processes: the
    same submit / wait / record path as on a cluster. The sweep runs as its own command (as a
    user runs it), so submitit's job handling stays out of the test process."""
    # Not imported here: submitit binds its log handlers to the sys.stderr of the moment it is
    # imported, which in a test that captures output is a stream pytest closes afterwards.
    assert importlib.util.find_spec("submitit"), "submitit is part of the test extra"
    monkeypatch.chdir(tmp_path)
    command = [
        sys.executable,
        "-m",
        "ca12.fit",
        "-m",
        "--algo",
        "mappo",
        "--seed",
        "0,1",
        "--run-dir",
        "sweep",
        "--launcher",
        "slurm",
        "--slurm",
        "timeout_min=10",
        *TINY_SWEEP,
    ]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 trained, 0 resumed, 0 skipped (complete), 0 failed" in done.stdout
    runs = _manifest(tmp_path / "sweep")["runs"]
    assert [(run["name"], run["status"], run["frames"]) for run in runs] == [
        ("mappo/vmas-navigation/seed0", "done", 40),
        ("mappo/vmas-navigation/seed1", "done", 40),
    ]
    assert all(run.get("slurm_job") for run in runs), "each run recorded its job id"
    assert main(["--algo", "mappo", "--seed", "1", "--run-dir", "single", *TINY_SWEEP]) == 0
    assert _same_weights(_weights(tmp_path / "sweep" / runs[1]["dir"]), _weights(tmp_path / "single"))
