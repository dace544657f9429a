"""The spine's foundations: config groups composed with every algorithm, agent layouts (two
groups, a group of one), recurrent policies on a memory task, and what a new user tripped over."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY, resume_pair, tiny_args

from ca12.algos import DEFAULT_ENV, algo_class, default_env
from ca12.envs import make_spec_env
from ca12.errors import UsageError
from ca12.fit import main
from ca12.nets.builder import is_recurrent
from ca12.paths import group_options
from ca12.run.config import algo_names, load_config


def _returns(run_dir: Path, key: str = "rollout/episode_reward_mean") -> list[float]:
    with open(run_dir / "metrics.csv") as f:
        return [float(row[key]) for row in csv.DictReader(f) if row.get(key)]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ca12.fit", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


# --- every conf/ group option with every algorithm it applies to ------------------------------------
@pytest.mark.parametrize("algo", algo_names())
def test_every_group_option_composes_with_every_algorithm(algo):
    cls = algo_class(algo)
    own = default_env(algo)
    env = own if own != DEFAULT_ENV else ("vmas/navigation" if "continuous" in cls.action_spaces else "matrix/climbing")
    fixed_batch = algo in ("es", "maml")  # es: fixed by its population, maml: by its meta-batch
    for group in ("model", "critic_model", "collector", "trainer", "logger"):
        for option in group_options("model" if group == "critic_model" else group):
            args = [a for a in tiny_args(algo) if fixed_batch or not a.startswith("collector.frames_per_batch")]
            cfg = load_config(algo, env, args + [f"{group}={option}"] + ([] if fixed_batch else ["collector.frames_per_batch=200"]))
            if algo in ("hatrpo", "happo") and group == "model" and option in ("commnet", "tarmac", "dial", "graph", "hierarchical", "ic3net"):
                with pytest.raises(UsageError, match="shares weights between agents"):  # per-agent trust regions
                    cls(cfg, make_spec_env(cfg.env, 0))
                continue
            recurrent = is_recurrent(cfg[group]) if group in ("model", "critic_model") else False
            if recurrent and not (cls.recurrent_critic if group == "critic_model" else cls.recurrent):
                with pytest.raises(UsageError, match="critic_model=|has no recurrent version"):
                    cls(cfg, make_spec_env(cfg.env, 0))
                continue
            if option == "cnn":  # convolutions read images: these envs observe flat vectors (an algorithm may not read the section)
                try:
                    cls(cfg, make_spec_env(cfg.env, 0))
                except UsageError as error:
                    assert "model=cnn" in str(error) or "one MLP shared by every agent" in str(error), (group, str(error))
                continue
            if algo == "maml" and group == "model" and option != "mlp":  # one MLP shared by any number of agents
                with pytest.raises(UsageError, match="one MLP shared by every agent"):
                    cls(cfg, make_spec_env(cfg.env, 0))
                continue
            module = cls(cfg, make_spec_env(cfg.env, 0))
            assert module.policy is not None, (group, option)


def test_show_config_prints_every_key_with_its_doc(capsys):
    assert main(["--algo", "maddpg", "--show-config"]) == 0
    out = capsys.readouterr().out
    assert "  actor_lr: 0.0005  # Adam learning rate of the actors" in out
    assert "  gamma: 0.9  # discount factor" in out
    assert "  gumbel_temperature: 1.0  # discrete actions" in out
    assert "  activation: relu  # activation between layers" in out


# --- agent layouts -----------------------------------------------------------------------------------
def test_two_group_env_trains_one_group_against_a_fixed_random_policy(tmp_path):
    run_dir = tmp_path / "pd"
    args = [
        "--algo",
        "mappo",
        "--env",
        "matrix/prisoners_dilemma",
        "--run-dir",
        str(run_dir),
        "logger=none",
        "env.group_per_player=true",
        "algo.groups=[player_0]",
        "collector.frames_per_batch=600",
        "collector.total_frames=6000",
        "algo.minibatch_size=200",
        "eval.every_n_iters=5",
        "eval.episodes=8",
    ]
    assert main(args) == 0
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert any("player_0" in k for k in state) and not any("player_1" in k for k in state), "only player_0 learns"
    # Against a uniform opponent defecting earns (5 + 1) / 2 = 3 a play, cooperating 1.5: 30 vs 15 over 10 plays.
    returns = _returns(run_dir)
    assert returns[0] < 26 and returns[-1] > 27, returns
    assert _returns(run_dir, "eval/episode_reward_mean")[-1] == pytest.approx(30.0, abs=2.0)


def test_an_algorithm_that_trains_one_group_refuses_two_in_one_line():
    cfg = load_config("qmix", "matrix/prisoners_dilemma", ["env.group_per_player=true"])
    with pytest.raises(
        UsageError, match=r"qmix trains one agent group; the env has groups \['player_0', 'player_1'\]: name one with algo.groups=\[NAME\]"
    ):
        algo_class("qmix")(cfg, make_spec_env(cfg.env, 0))
    cfg = load_config("qmix", "matrix/prisoners_dilemma", ["env.group_per_player=true", "algo.groups=[player_1]"])
    assert algo_class("qmix")(cfg, make_spec_env(cfg.env, 0)).group == "player_1"


def test_a_single_agent_gym_env_trains_through_mappo_as_a_group_of_one(tmp_path):
    pytest.importorskip("gymnasium")
    run_dir = tmp_path / "cartpole"
    assert (
        main(
            [
                "--algo",
                "mappo",
                "--env",
                "gym/CartPole-v1",
                "--run-dir",
                str(run_dir),
                "logger=none",
                "collector.frames_per_batch=1000",
                "collector.total_frames=8000",
                "algo.minibatch_size=250",
                "eval.every_n_iters=0",
            ]
        )
        == 0
    )
    returns = _returns(run_dir)
    assert returns[0] < 30 and max(returns[-2:]) > 40, returns  # random play lasts ~22 steps


# --- recurrence: a cue seen at the first step, acted on at the last -----------------------------------
MEMORY = [
    "--env",
    "memory/cue",
    "logger=none",
    "collector.frames_per_batch=2400",
    "algo.minibatch_size=400",
    "algo.entropy_coeff=0.01",
    "eval.every_n_iters=0",
]


@pytest.mark.slow
def test_mappo_with_a_gru_remembers_the_cue_and_the_mlp_cannot(tmp_path):
    assert main(["--algo", "mappo", "--run-dir", str(tmp_path / "gru"), *MEMORY, "model=gru", "collector.total_frames=33600"]) == 0
    assert main(["--algo", "mappo", "--run-dir", str(tmp_path / "mlp"), *MEMORY, "collector.total_frames=16800"]) == 0
    gru, mlp = _returns(tmp_path / "gru"), _returns(tmp_path / "mlp")
    assert sum(gru[-2:]) / 2 >= 0.9, gru  # success rate; chance is 1/3
    assert max(mlp) <= 0.45, mlp


def test_recurrent_policy_resumes_bit_for_bit_with_its_hidden_states(tmp_path):
    args = [
        *MEMORY,
        "model=gru",
        "model.hidden_size=16",
        "model.hidden_sizes=[16]",
        "collector.frames_per_batch=240",
        "algo.minibatch_size=40",
        "algo.num_epochs=2",
    ]
    a, b, one_go, split = resume_pair(tmp_path, "mappo", args, 960)
    assert any("w_hh" in key for key in a)  # the GRU's weights (its hidden states ride in the batches)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert _returns(one_go) == _returns(split)


# --- what a new user tripped over ----------------------------------------------------------------------
def test_overrides_may_stand_between_flags(tmp_path):
    run_dir = tmp_path / "run"
    assert main(["--algo", "mappo", "logger=none", "--seed", "1", *TINY, "--run-dir", str(run_dir), "collector.total_frames=100"]) == 0
    assert _returns(run_dir) and (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_resume_accepts_the_runs_own_command_and_refuses_only_a_change(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["--algo", "mappo", "--run-dir", str(run_dir), *TINY, "logger=none"]) == 0
    assert main(["--resume", str(run_dir), "--algo", "mappo", *TINY, "logger=none", "collector.total_frames=300"]) == 0
    assert main(["--resume", str(run_dir), "env.num_envs=8", "collector.total_frames=400"]) == 2
    assert "'env.num_envs' cannot change when resuming a run (it fixes the run's shapes or data): saved 4, given 8" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: trainer=gpu is valid here")
def test_trainer_gpu_without_a_gpu_is_one_line_and_writes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    out = _cli("--algo", "mappo", "--run-dir", str(run_dir), "trainer=gpu", cwd=tmp_path)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "trainer=gpu: this machine has no CUDA GPU" in out.stderr
    assert not run_dir.exists()


def test_out_of_memory_is_one_line_and_leaves_no_dead_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    huge = 4_000_000_000  # 4e9 worlds of generic/coop: ~100 GB of positions
    out = _cli(
        "--algo",
        "mappo",
        "--env",
        "generic/coop",
        "--run-dir",
        str(run_dir),
        "logger=none",
        f"env.num_envs={huge}",
        f"collector.frames_per_batch={huge}",
        f"collector.total_frames={huge}",
        cwd=tmp_path,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "out of memory" in lines[0] and "lower them" in lines[0], out.stderr[-2000:]
    assert not run_dir.exists(), "no run directory holding only config.yaml"
    out = _cli("--algo", "mappo", "--run-dir", str(run_dir), *TINY, "logger=none", "collector.total_frames=100", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]


def test_resume_last_finds_run_dir_runs_and_says_when_a_run_is_complete(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path / "elsewhere" / "mine"
    assert main(["--algo", "ippo", "--run-dir", str(elsewhere), *TINY, "logger=none"]) == 0
    capsys.readouterr()
    assert main(["--resume", "last", "--algo", "ippo"]) == 0
    out = capsys.readouterr().out
    assert f"the run in {elsewhere.resolve()} is complete (200 of collector.total_frames=200 frames)" in out
    assert f"--resume {elsewhere.resolve()} collector.total_frames=N" in out
    assert main(["--resume", "last", "--algo", "ippo", "collector.total_frames=300"]) == 0
    assert torch.load(elsewhere / "checkpoints" / "last.ckpt", weights_only=False)["ca12"]["frames"] == 300


def test_uneven_total_frames_is_announced_and_a_short_run_is_still_evaluated(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert (
        main(
            [
                "--algo",
                "mappo",
                "--run-dir",
                str(run_dir),
                *TINY,
                "logger=none",
                "collector.total_frames=250",
                "eval.every_n_iters=10",
                "eval.episodes=2",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "collector.total_frames=250 is not a multiple of collector.frames_per_batch=100; training runs 3 iterations = 300 frames" in err
    assert len(_returns(run_dir, "eval/episode_reward_mean")) == 1, "evaluated once, after the last iteration"


def test_tensorboard_and_several_loggers_at_once(tmp_path, no_wandb_credentials):
    run_dir = tmp_path / "run"
    assert main(["--algo", "mappo", "--run-dir", str(run_dir), *TINY, "logger=[wandb,tensorboard]"]) == 0
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert list((run_dir / "wandb").glob("offline-run-*"))


def test_library_chatter_stays_out_of_the_terminal(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("WANDB")}
    env["HOME"] = str(home)
    out = subprocess.run(
        [sys.executable, "-m", "ca12.fit", "--algo", "iql", "--run-dir", str(tmp_path / "run"), *tiny_args("iql"), "collector.total_frames=100"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    for chatter in ("anonymous", "INFO", "Creating a"):
        assert chatter not in out.stderr + out.stdout, chatter
