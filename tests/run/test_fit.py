"""End-to-end runs of `ca12.fit`: tiny fits of every algorithm, resume, and CLI errors."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY, tiny_args
from omegaconf import OmegaConf

from ca12.algos import algo_class
from ca12.fit import main
from ca12.run.config import algo_names


def _rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


ALGO_ACTIONS = [(algo, actions) for algo in algo_names() for actions in algo_class(algo).action_spaces]


@pytest.mark.parametrize("algo, actions", ALGO_ACTIONS)
def test_tiny_fit_writes_checkpoints_metrics_and_an_offline_wandb_run(algo, actions, tmp_path, no_wandb_credentials):
    run_dir = tmp_path / "run"
    continuous = f"env.continuous_actions={str(actions == 'continuous').lower()}"
    assert main(["--algo", algo, "--run-dir", str(run_dir), *tiny_args(algo), continuous]) == 0  # maml: its own default env

    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "checkpoints" / "iter_00001.ckpt").is_file()
    assert (run_dir / "checkpoints" / "iter_00002.ckpt").is_file()
    assert not list((run_dir / "checkpoints").glob("*.tmp"))
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("*.wandb"))

    cfg = OmegaConf.load(run_dir / "config.yaml")
    assert cfg.algo.name == algo and cfg.collector.frames_per_batch == 100

    rows = _rows(run_dir)
    assert len(rows) == 2
    on_policy = "minibatch_size" in cfg.algo and "num_epochs" in cfg.algo  # PPO's family, COMA, TRPO, IMPALA
    loss_keys = ("train/loss_objective", "train/loss_critic") if on_policy else ("train/loss",)
    if algo == "es":  # no loss: a search gradient from the population's fitness
        loss_keys = ("train/fitness_max",)
    for key in ("rollout/episode_reward_mean", *loss_keys, "train/grad_norm", "time/frames_per_second", "time/collect_s", "time/update_s"):
        assert all(row[key] != "" for row in rows), key
    assert [float(r["time/frames"]) for r in rows] == [100.0, 200.0]

    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["ca12"]["frames"] == 200 and state["ca12"]["wandb_id"] == offline[0].name.split("-")[-1]


def test_resume_continues_frames_metrics_and_wandb_run(tmp_path, no_wandb_credentials):
    run_dir = tmp_path / "run"
    assert main(["--algo", "mappo", "--run-dir", str(run_dir), *TINY]) == 0
    first_id = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["ca12"]["wandb_id"]
    assert main(["--resume", str(run_dir), "collector.total_frames=400"]) == 0
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["ca12"]
    assert state["frames"] == 400 and state["iterations"] == 4
    assert state["wandb_id"] == first_id
    assert [float(r["time/frames"]) for r in _rows(run_dir)][-2:] == [300.0, 400.0]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ca12.fit", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_cli_list_names_algorithms_and_envs(tmp_path):
    out = _cli("--list", cwd=tmp_path)
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert "algo mappo" in lines and "algo ippo" in lines
    assert "env vmas/navigation" in lines and "env vmas/dispersion" in lines


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--algo", "dqn9"], f"unknown algorithm 'dqn9'; choose one of: {', '.join(algo_names())}"),
        (["--algo", "mappo", "--env", "vmas/nowhere"], "unknown vmas task 'nowhere'"),
        (["--algo", "mappo", "algo.lrr=1"], "unknown override key 'algo.lrr'"),
        (["--algo", "mappo", "env.num_envs=many"], "env.num_envs expects an integer"),
        (["--algo", "mappo", "--seed", "x"], "--seed: invalid int value: 'x'"),
        (["--algo", "mappo", "--resume", "nowhere"], "no checkpoint at 'nowhere"),
    ],
)
def test_cli_errors_exit_2_with_one_line(args, fragment, tmp_path):
    out = _cli(*args, cwd=tmp_path)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert fragment in lines[0]


def test_cli_refuses_a_run_directory_that_holds_a_run(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"precious")
    out = _cli("--algo", "mappo", "--run-dir", str(run_dir), cwd=tmp_path)
    assert out.returncode == 2 and "already holds a run" in out.stderr
    assert (run_dir / "checkpoints" / "last.ckpt").read_bytes() == b"precious"


def test_cli_refuses_a_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    out = _cli("--resume", str(bad), cwd=tmp_path)
    assert out.returncode == 2 and "is not a readable checkpoint" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_ddp_with_two_cpu_processes_trains_and_resumes_in_one_process(tmp_path):
    run_dir = tmp_path / "ddp"
    out = _cli(
        "--algo",
        "mappo",
        "--run-dir",
        str(run_dir),
        *TINY,
        "logger=csv",
        "trainer=ddp",
        "trainer.devices=2",
        "collector.total_frames=400",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["ca12"]
    assert state["iterations"] == 2 and state["frames"] == 400, "each iteration collects 100 frames on each of 2 ranks"
    assert [float(r["time/frames"]) for r in _rows(run_dir)] == [200.0, 400.0]
    assert len(list(run_dir.rglob("config.yaml"))) == 1, "only rank 0 writes"

    out = _cli("--resume", str(run_dir), "trainer=cpu", "collector.total_frames=600", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["ca12"]
    assert state["iterations"] == 4 and state["frames"] == 600
    assert [float(r["time/frames"]) for r in _rows(run_dir)] == [200.0, 400.0, 500.0, 600.0]


def test_resume_last_finds_the_newest_run_and_refuses_frozen_overrides(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--algo", "ippo", *TINY, "logger=none"]) == 0
    (run_dir,) = (tmp_path / "runs" / "ippo" / "vmas-navigation").iterdir()
    assert main(["--resume", "last", "--algo", "ippo", "env.num_envs=8"]) == 2
    assert "'env.num_envs' cannot change when resuming" in capsys.readouterr().err
    assert main(["--resume", "last", "--algo", "mappo"]) == 2
    assert "--resume last: no run of mappo on vmas/navigation under runs/mappo/vmas-navigation/ or in runs/index.txt" in capsys.readouterr().err
    assert main(["--resume", str(run_dir), "--algo", "mappo"]) == 2
    assert "is a ippo run, not mappo" in capsys.readouterr().err
    assert main(["--resume", "last", "--algo", "ippo", "collector.total_frames=300", "algo.lr=1e-4"]) == 0
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["ca12"]
    assert state["frames"] == 300 and state["run_config"]["algo"]["lr"] == 1e-4
    assert OmegaConf.load(run_dir / "config.yaml").collector.total_frames == 300


def test_anneal_lr_decays_linearly_over_the_frame_budget_and_resumes_on_the_same_line(tmp_path):
    """lr = 3e-4 x (1 - frames / total_frames) before each batch; a run resumed from its second
    iteration's checkpoint ends with the uninterrupted run's weights."""
    import shutil

    one_go, copy = tmp_path / "one_go", tmp_path / "copy"
    args = [*TINY, "tuned=none", "logger=none", "algo.anneal_lr=true", "collector.total_frames=400"]
    assert main(["--algo", "mappo", "--run-dir", str(one_go), *args]) == 0
    shutil.copytree(one_go, copy)
    assert main(["--resume", str(copy / "checkpoints" / "iter_00002.ckpt")]) == 0
    for i, frames_before in ((2, 100), (4, 300)):
        group = torch.load(one_go / "checkpoints" / f"iter_0000{i}.ckpt", weights_only=False)["optimizer_states"][0]["param_groups"][0]
        assert group["initial_lr"] == 3e-4 and group["lr"] == pytest.approx(3e-4 * (1 - frames_before / 400))
    a, b = (torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for run in (one_go, copy))
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_run_saved_before_a_key_existed_resumes_with_its_default(tmp_path):
    """A checkpoint from an older ca12 lacks keys added since (here `algo.anneal_lr`): they take
    their conf/ default, the behaviour the run had."""
    run_dir = tmp_path / "run"
    assert main(["--algo", "mappo", "--run-dir", str(run_dir), *TINY, "logger=none"]) == 0  # navigation's tuned settings anneal
    last = run_dir / "checkpoints" / "last.ckpt"
    state = torch.load(last, weights_only=False)
    del state["ca12"]["run_config"]["algo"]["anneal_lr"]
    torch.save(state, last)
    assert main(["--resume", str(run_dir), "collector.total_frames=300"]) == 0
    resumed = torch.load(last, weights_only=False)["ca12"]
    assert resumed["frames"] == 300 and resumed["run_config"]["algo"]["anneal_lr"] is False
