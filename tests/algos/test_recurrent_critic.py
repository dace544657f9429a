"""Recurrent critics (critic_model=gru|lstm) for MAPPO/IPPO: values for GAE replayed from the
collected hidden states, learning on a memory task, bit-exact resume."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from conftest import resume_pair

from ca12.algos import algo_class
from ca12.envs import make_env, make_spec_env
from ca12.errors import UsageError
from ca12.fit import main
from ca12.run.config import load_config

SMALL_GRU = ["critic_model.hidden_size=16", "critic_model.hidden_sizes=[16]", "model.hidden_size=16", "model.hidden_sizes=[16]"]


def _returns(run_dir: Path) -> list[float]:
    with open(run_dir / "metrics.csv") as f:
        return [float(row["rollout/episode_reward_mean"]) for row in csv.DictReader(f) if row.get("rollout/episode_reward_mean")]


@pytest.mark.parametrize("algo", ["mappo", "ippo"])
@pytest.mark.parametrize("actor", ["mlp", "gru"])
def test_sequence_values_reproduce_the_collected_ones_and_bootstrap_within_episodes(algo, actor):
    small = [o for o in SMALL_GRU if actor == "gru" or not o.startswith("model.hidden_size=")]
    cfg = load_config(algo, "memory/cue", ["logger=none", "env.num_envs=6", f"model={actor}", "critic_model=gru", *small])
    module = algo_class(algo)(cfg, make_spec_env(cfg.env, 0))
    env = make_env(cfg.env, 0, "cpu", transforms=module.env_transforms())
    with torch.no_grad():  # 10 steps of 4-step episodes: two resets inside each trajectory
        batch = env.rollout(10, module.policy, break_when_any_done=False)
    collected = batch["agents", "state_value"].clone()  # the critic steps with the collector
    module.estimators.sequence_values("agents", module.critics["agents"], batch)
    torch.testing.assert_close(batch["agents", "state_value"], collected, rtol=0, atol=1e-6)
    following, same_episode = batch["next", "agents", "state_value"][:, :-1], ~batch["is_init"][:, 1:, 0]
    torch.testing.assert_close(following[same_episode], collected[:, 1:][same_episode], rtol=0, atol=1e-6)
    module.compute_advantage(batch)
    assert torch.isfinite(batch["agents", "advantage"]).all()


def test_critics_of_other_algorithms_stay_feed_forward_and_say_so():
    cfg = load_config("coma", "matrix/climbing", ["logger=none", "critic_model=gru"])
    with pytest.raises(UsageError, match="critic_model=gru: coma's critics are feed-forward"):
        algo_class("coma")(cfg, make_spec_env(cfg.env, 0))


@pytest.mark.slow
def test_mappo_with_recurrent_actor_and_critic_remembers_the_cue(tmp_path):
    args = [
        "--algo",
        "mappo",
        "--env",
        "memory/cue",
        "--run-dir",
        str(tmp_path),
        "logger=csv",
        "eval.every_n_iters=0",
        "model=gru",
        "critic_model=gru",
        "collector.frames_per_batch=2400",
        "algo.minibatch_size=400",
        "algo.entropy_coeff=0.01",
        "collector.total_frames=24000",
    ]
    assert main(args) == 0
    returns = _returns(tmp_path)
    assert sum(returns[-2:]) / 2 >= 0.9, returns  # success rate; chance is 1/3


def test_recurrent_critic_resumes_bit_for_bit(tmp_path):
    args = [
        "--env",
        "memory/cue",
        "logger=csv",
        "eval.every_n_iters=0",
        "model=gru",
        "critic_model=gru",
        *SMALL_GRU,
        "collector.frames_per_batch=240",
        "algo.minibatch_size=40",
        "algo.num_epochs=2",
    ]
    a, b, one_go, split = resume_pair(tmp_path, "mappo", args, 960)
    assert any(key.startswith("critics.") and "w_hh" in key for key in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert _returns(one_go) == _returns(split)
