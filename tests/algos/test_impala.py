"""IMPALA: V-trace targets from a collected batch (on-policy: n-step returns, cut episodes
bootstrapped), the policy lag measured with asynchronous actors, resume, bad input."""

from __future__ import annotations

import csv

import pytest
import torch
from conftest import TINY, resume_pair

from ca12.algos import algo_class
from ca12.envs import make_env, make_spec_env
from ca12.fit import main
from ca12.run.config import load_config

IMPALA_TINY = [*TINY, "algo.num_epochs=1", "algo.minibatch_size=100"]


def _metrics(run_dir) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        return [row for row in csv.DictReader(f) if row.get("train/policy_lag")]


def test_on_policy_targets_are_n_step_returns_and_a_cut_episode_bootstraps_from_its_next_value():
    """With the learner's policy the actors' (rho = c = 1), v_s is the discounted sum of rewards to
    the end of the batch or of the episode: 0 after a termination, V(true next observation) after
    a truncation (time limit), V(x_T) after the batch's last step."""
    cfg = load_config("impala", "gym/CartPole-v1", ["collector=sync", "env.num_envs=4", "env.max_steps=10", "algo.gamma=0.9"])
    module = algo_class("impala")(cfg, make_spec_env(cfg.env, 0))
    env = make_env(cfg.env, 0)
    torch.manual_seed(0)
    with torch.no_grad():
        batch = env.rollout(30, module.policy, break_when_any_done=False, auto_reset=True)  # [4, 30]
    ended = batch["next", "done"].squeeze(-1)
    assert batch["next", "truncated"].any() and batch["next", "terminated"].any(), "both kinds of ends in the batch"
    module.compute_targets(batch)
    critic = module.critics["agent"]
    with torch.no_grad():
        next_values = critic(batch["next"].clone())["agent", "state_value"][..., 0, 0]  # [4, 30]
    rewards, terminated = batch["next", "agent", "reward"][..., 0, 0], batch["next", "terminated"].squeeze(-1)
    expected = torch.zeros_like(rewards)
    for b in range(4):
        target = next_values[b, -1]  # bootstrap past the batch
        for t in reversed(range(30)):
            if ended[b, t]:
                target = 0.0 if terminated[b, t] else next_values[b, t]
            target = rewards[b, t] + 0.9 * target
            expected[b, t] = target
    torch.testing.assert_close(batch["agent", "value_target"][..., 0, 0], expected)


def test_a_sync_run_has_no_lag_and_resumes_bit_for_bit(tmp_path):
    args = ["--algo", "impala", "logger=csv", "eval.every_n_iters=0", "collector=sync", *IMPALA_TINY]
    a, b, one_go, split = resume_pair(tmp_path, "impala", args[2:], 300)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert a["version.version"] == 3, "one version per batch learnt"
    rows = _metrics(one_go)
    assert [float(r["train/policy_lag_max"]) for r in rows] == [0.0] * 3


def test_asynchronous_actors_lag_and_the_lag_is_logged(tmp_path):
    """MultiAsyncCollector's workers keep acting while the learner updates: later batches hold
    frames from older weights, which the version counter that travels with them shows."""
    run = tmp_path / "run"
    assert (
        main(
            [
                "--algo",
                "impala",
                "--env",
                "gym/CartPole-v1",
                "--run-dir",
                str(run),
                "logger=csv",
                "eval.every_n_iters=0",
                "collector.workers=2",
                "env.num_envs=2",
                "collector.frames_per_batch=100",
                "algo.minibatch_size=100",
                "collector.total_frames=600",
                "model.hidden_sizes=[16]",
                "critic_model.hidden_sizes=[16]",
            ]
        )
        == 0
    )
    lags = [float(r["train/policy_lag_max"]) for r in _metrics(run)]
    assert len(lags) == 6 and lags[0] == 0.0 and all(lag >= 0 for lag in lags)
    assert max(lags) >= 1.0, lags


@pytest.mark.parametrize(
    "override, message",
    [
        ("algo.clip_rho=0", "algo.clip_rho must be positive, got 0.0"),
        ("algo.baseline_coeff=-1", "algo.baseline_coeff must be >= 0.0, got -1.0"),
    ],
)
def test_bad_clips_are_refused_in_one_line(override, message, capsys):
    assert main(["--algo", "impala", "--env", "gym/CartPole-v1", override]) == 2
    assert message in capsys.readouterr().err
