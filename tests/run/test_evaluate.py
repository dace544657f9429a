"""`python -m ca12.evaluate` and the training-time evaluation agree; bad checkpoints are refused."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from conftest import TINY

from ca12.evaluate import main as evaluate_main
from ca12.fit import main as fit_main


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("eval") / "run"
    args = [
        "--algo",
        "mappo",
        "--run-dir",
        str(run_dir),
        *TINY,
        "logger=none",
        "collector.total_frames=300",
        "eval.every_n_iters=3",
        "eval.episodes=5",
        "eval.video=true",
    ]
    assert fit_main(args) == 0
    return run_dir


def _logged_eval(run_dir) -> float:
    with open(run_dir / "metrics.csv") as f:
        rows = [row for row in csv.DictReader(f) if row.get("eval/episode_reward_mean")]
    assert [row["time/iteration"] for row in rows] == ["3"]
    return float(rows[0]["eval/episode_reward_mean"])


def test_evaluate_reproduces_the_training_time_eval_return(trained_run, capsys):
    logged = _logged_eval(trained_run)
    assert evaluate_main([str(trained_run), "--episodes", "5", "--deterministic", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["eval/episode_reward_mean"] == pytest.approx(logged, abs=1e-6)
    assert result["episodes"] == 5 and result["frames"] == 300
    assert "eval/agent_2_reward_mean" in result
    # a new user runs it without flags: deterministic, like training's evaluation, is the default
    assert evaluate_main([str(trained_run), "--episodes", "5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["eval/episode_reward_mean"] == result["eval/episode_reward_mean"]
    # stochastic actions give another (but again reproducible) result
    assert evaluate_main([str(trained_run), "--episodes", "5", "--stochastic", "--json"]) == 0
    stochastic = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["eval/episode_reward_mean"]
    assert evaluate_main([str(trained_run), "--episodes", "5", "--stochastic", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["eval/episode_reward_mean"] == stochastic
    assert stochastic != result["eval/episode_reward_mean"]


def test_training_eval_renders_a_gif_and_evaluate_writes_one(trained_run, tmp_path, capsys):
    from PIL import Image

    gif = trained_run / "videos" / "iter_00003.gif"
    assert gif.is_file()
    with Image.open(gif) as image:
        assert image.n_frames > 10 and image.size == (700, 700)
    out = tmp_path / "episode.gif"
    assert evaluate_main([str(trained_run / "checkpoints" / "last.ckpt"), "--episodes", "1", "--video", str(out)]) == 0
    assert out.is_file() and "episode return:" in capsys.readouterr().out


@pytest.mark.parametrize(
    "content, fragment",
    [
        (None, "no checkpoint file at"),
        (b"garbage", "is not a readable checkpoint"),
        ("foreign", "is not a ca12 checkpoint"),
        ("truncated", "is not a readable checkpoint"),
    ],
)
def test_evaluate_refuses_missing_corrupt_and_foreign_checkpoints(content, fragment, tmp_path, trained_run):
    import torch

    path = tmp_path / "x.ckpt"
    if content == "foreign":
        torch.save({"state_dict": {}, "epoch": 3}, path)
    elif content == "truncated":
        data = (trained_run / "checkpoints" / "last.ckpt").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif content is not None:
        path.write_bytes(content)
    out = subprocess.run([sys.executable, "-m", "ca12.evaluate", str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0]


# ---- baselines: an env family's classical policies through the same evaluation ------------------
def _baseline(capsys, *args: str) -> dict:
    assert evaluate_main(["--json", *args]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_market_baselines_are_the_greedy_floor_and_the_optimal_ceiling(capsys):
    greedy = _baseline(capsys, "--baseline", "greedy", "--env", "market/allocation", "--episodes", "500")
    optimal = _baseline(capsys, "--baseline", "optimal", "--env", "market/allocation", "--episodes", "500")
    quotes = _baseline(capsys, "--baseline", "quote_rule", "--env", "market/allocation", "--episodes", "500")
    assert optimal["eval/episode_reward_mean"] == pytest.approx(1.0, abs=1e-6)  # efficiency is welfare / the optimum's
    assert 0.55 < greedy["eval/episode_reward_mean"] < 0.7 < quotes["eval/episode_reward_mean"] < 0.95  # the module docstring's 0.63, 0.83
    assert greedy["baseline"] == "greedy" and greedy["episodes"] == 500
    fewer = _baseline(capsys, "--baseline", "optimal", "--env", "market/allocation", "--episodes", "50", "env.n_agents=4", "env.n_tasks=3")
    assert fewer["eval/episode_reward_mean"] == pytest.approx(1.0, abs=1e-6) and "eval/agent_3_reward_mean" in fewer


def test_the_evaluator_reports_the_envs_episode_statistics():
    from omegaconf import OmegaConf

    from ca12.data.evaluator import Evaluator
    from ca12.run.config import load_config

    cfg = load_config("mappo", "comm/traffic_junction", ["env.difficulty=easy"])
    evaluator = Evaluator(cfg.env, 20, 0, deterministic=True)
    gas = evaluator.env.full_action_spec["agents", "action"].zero()  # every car always drives on: collisions happen
    result = evaluator.run(lambda td: td.update({("agents", "action"): gas}))
    assert set(result.stats) == {"success", "collisions"}
    success, _ = result.stats["success"]
    assert 0.0 <= success <= 1.0 and result.metrics()["eval/success_mean"] == success
    assert OmegaConf.select(cfg, "env.difficulty") == "easy"


def test_a_trace_is_world_0s_first_episode_step_by_step():
    from ca12.run.score import evaluate_baseline

    result = evaluate_baseline("fixed_time", "traffic/grid2x2", ["env.max_steps=30"], episodes=3, trace=True)
    assert set(result.trace) == {"reward", "waiting_time", "queue", "throughput"}
    assert all(len(series) == 30 for series in result.trace.values())
    alone = evaluate_baseline("fixed_time", "traffic/grid2x2", ["env.max_steps=30"], episodes=3)
    assert alone.trace == {} and alone.stats == result.stats  # tracing changes nothing it measures
    # one episode: its return is the sum of its steps' rewards, its statistic at the end the episode's
    one = evaluate_baseline("fixed_time", "traffic/grid2x2", ["env.max_steps=30"], episodes=1, trace=True)
    assert one.episode_reward_mean == pytest.approx(sum(one.trace["reward"]), rel=1e-5)
    assert one.stats["waiting_time"][0] == pytest.approx(one.trace["waiting_time"][-1])


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--baseline", "foo", "--env", "market/allocation"],
            "unknown baseline 'foo' for market/allocation; its family offers: greedy, optimal, quote_rule",
        ),
        (["--baseline", "greedy", "--env", "comm/referential"], "its family offers: none"),
        (["--baseline", "greedy"], "--baseline needs --env FAMILY/TASK"),
        (["--baseline", "greedy", "--env", "market/allocation", "algo.lr=0.1"], "env settings only"),
        (["--baseline", "greedy", "--env", "market/allocation", "--episodes", "0"], "--episodes must be positive"),
        (["some/run", "--env", "market/allocation"], "--env goes with --baseline"),
        ([], "give one checkpoint or run directory"),
    ],
)
def test_bad_baseline_requests_are_refused_in_one_line(args, message, capsys):
    assert evaluate_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
