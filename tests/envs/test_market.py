"""The market/allocation env: the batched auctions of ca12.game_theory against the per-world ones,
the env's specs, seeding and errors, its auction, quotes and baselines on hand-checked cases, and
MAPPO learning to bid better than the greedy baseline."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import resume_pair
from omegaconf import OmegaConf
from scipy.optimize import linear_sum_assignment
from torchrl.envs.utils import check_env_specs

import ca12.envs.market as market
from ca12.envs import AgentLayout, make_env
from ca12.envs.market import AllocationEnv, efficiency, greedy_choice, optimal_welfare, price_quotes, surplus_choice, welfare
from ca12.errors import UsageError
from ca12.fit import main
from ca12.game_theory.mechanisms import first_price_auction, per_item_auctions, second_price_auction


def _env(**overrides):
    cfg = OmegaConf.merge(OmegaConf.load(Path(__file__).parents[2] / "conf/env/market/allocation.yaml"), overrides)
    return make_env(cfg, seed=0)


# --- batched auctions (ca12.game_theory.mechanisms) ------------------------------------------------
@pytest.mark.parametrize("rule", ["first", "second"])
@pytest.mark.parametrize("n_bidders", [1, 2, 4])
def test_batched_auctions_equal_the_per_world_ones(rule, n_bidders):
    rng = np.random.default_rng(0)
    bids = rng.integers(0, 4, size=(50, n_bidders, 3)).astype(float)  # small integers: many ties
    single = first_price_auction if rule == "first" else second_price_auction
    for reserve in (0.0, 2.0):
        sales = per_item_auctions(torch.as_tensor(bids), reserve=reserve, rule=rule)  # a torch tensor goes in too
        assert sales.winner.shape == sales.price.shape == (50, 3)
        for world in range(50):
            result = single(bids[world], reserve=reserve)
            for bidder, items in enumerate(result.allocation):
                assert tuple(np.flatnonzero(sales.winner[world] == bidder)) == items
            payments = [sales.price[world][sales.winner[world] == bidder].sum() for bidder in range(n_bidders)]
            np.testing.assert_allclose(payments, result.payments)
            assert sales.winning_bid[world].sum() == pytest.approx(result.reported_welfare)


def test_batched_auction_hand_case_and_bad_input():
    sales = per_item_auctions([[[10.0, 3.0], [6.0, 5.0], [2.0, 4.0]]], reserve=4.5)
    assert sales.winner.tolist() == [[0, 1]] and sales.price.tolist() == [[6.0, 4.5]]  # the reserve lifts item 1's price
    assert per_item_auctions([[1.0], [2.0]], reserve=3.0).winner.tolist() == [-1]  # no bid reaches it: unsold
    with pytest.raises(ValueError, match="rule"):
        per_item_auctions([[1.0]], rule="dutch")
    with pytest.raises(ValueError, match="finite"):
        per_item_auctions([[[np.nan]]])


# --- the env ---------------------------------------------------------------------------------------
def test_specs_layout_and_observation():
    env = _env(num_envs=16)
    check_env_specs(env)
    group = AgentLayout.from_env(env).only("mappo", None)
    assert (group.name, group.n_agents, group.obs_dim, group.n_actions) == ("agents", 6, 12, 6)
    obs, values = env.reset()["agents", "observation"], env.base_env.values
    assert torch.equal(obs[..., :6], values) and torch.equal(obs[..., 6:], price_quotes(values))
    blind = _env(num_envs=4, observe_quotes=False, n_agents=3, n_tasks=5)
    assert blind.reset()["agents", "observation"].shape == (4, 3, 5)
    check_env_specs(blind)


def test_values_follow_the_documented_distribution():
    values = AllocationEnv(num_envs=4000, skill_spread=0.5).reset()["agents", "observation"][..., :6]
    quality = values.mean(1, keepdim=True)  # q * mean skill (about q)
    ratio = values / values[:, :1]  # s[i, j] / s[0, j]: the quality cancels
    assert 0.0 <= float(values.min()) and float(values.max()) <= 1.5
    assert abs(float(quality.mean()) - 0.5) < 0.02  # E[q] E[s] = 0.5
    assert float(ratio.min()) >= 0.5 / 1.5 - 1e-6 and float(ratio.max()) <= 1.5 / 0.5 + 1e-6


def test_same_seed_same_values_and_set_seed_restarts_the_stream():
    a, b, c = AllocationEnv(num_envs=5, seed=3), AllocationEnv(num_envs=5, seed=3), AllocationEnv(num_envs=5, seed=4)
    choice = torch.randint(6, (5, 6))
    first = a.reset()
    assert torch.equal(first["agents", "observation"], b.reset()["agents", "observation"])
    assert not torch.equal(first["agents", "observation"], c.reset()["agents", "observation"])
    after = a.step(first.set(("agents", "action"), choice))["next"]
    b.rand_step(b.reset())  # b moves on ...
    b.set_seed(3)  # ... and restarts
    again = b.reset()
    assert torch.equal(again["agents", "observation"], first["agents", "observation"])
    assert (b.step(again.set(("agents", "action"), choice))["next", "agents"] == after["agents"]).all()


def test_bad_kwargs_and_sizes_are_one_line_errors():
    for overrides, match in (
        ({"n_cues": 3}, "does not take n_cues"),
        ({"n_agents": 1}, "n_agents"),
        ({"skill_spread": 1.0}, "skill_spread"),
        ({"observe_quotes": 1}, "observe_quotes"),
        ({"continuous_actions": True}, "discrete"),
    ):
        with pytest.raises(UsageError, match=match) as error:
            _env(**overrides)
        assert "\n" not in str(error.value)


def test_quotes_are_the_indicative_rounds_second_prices():
    values = torch.tensor([[[0.9, 0.5], [0.8, 0.1], [0.3, 0.4]]])
    # Task 0: agent 0 leads (0.9) and would pay the runner-up's 0.8; the others would pay 0.9.
    # Task 1: agent 0 leads (0.5) and would pay 0.4; the others would pay 0.5.
    assert torch.allclose(price_quotes(values), torch.tensor([[[0.8, 0.4], [0.9, 0.5], [0.9, 0.5]]]))


def test_the_step_runs_the_game_theory_auction(monkeypatch):
    calls = []
    monkeypatch.setattr(market, "per_item_auctions", lambda *args, **kwargs: calls.append(args) or per_item_auctions(*args, **kwargs))
    env = AllocationEnv(num_envs=300, n_agents=4, seed=1)
    td = env.reset()
    values, choice = env.values, torch.randint(4, (300, 4))
    calls.clear()
    reward = env.step(td.set(("agents", "action"), choice))["next", "agents", "reward"]
    assert calls and tuple(calls[0][0].shape) == (300, 4, 4)  # one batched call for the bids
    assert torch.equal(reward, reward[:, :1].expand(-1, 4, -1))  # shared
    for world in range(0, 300, 37):  # the welfare of game_theory's one-world Vickrey auction on the same bids
        bids = np.full((4, 4), market.NO_BID)
        bids[np.arange(4), choice[world].numpy()] = values[world, np.arange(4), choice[world]].numpy()
        best = max(sum(values[world, i, p[i]] for i in range(4)) for p in itertools.permutations(range(4)))
        assert float(reward[world, 0]) == pytest.approx(second_price_auction(bids, reserve=0.0).reported_welfare / float(best), rel=1e-5)


def test_greedy_collides_on_a_hand_case_and_the_optimum_bounds_every_policy():
    values = torch.tensor([[[0.9, 0.5], [0.8, 0.1]]])
    assert greedy_choice(values).tolist() == [[0, 0]]  # both want task 0: agent 0 wins it, task 1 stays unused
    assert float(welfare(values, greedy_choice(values))) == pytest.approx(0.9)
    assert float(optimal_welfare(values)) == pytest.approx(1.3)  # agent 0 takes task 1, agent 1 task 0
    assert float(efficiency(values, greedy_choice(values))) == pytest.approx(0.9 / 1.3)
    assert surplus_choice(values).tolist() == [[1, 0]]  # surpluses (0.1, 0.1) vs (-0.1, -0.4): the optimum here
    env = AllocationEnv(num_envs=2000, seed=2)
    env.reset()
    values = env.values
    best = torch.stack([torch.as_tensor(linear_sum_assignment(world.numpy(), maximize=True)[1]) for world in values[:50]])
    assert torch.allclose(efficiency(values[:50], best), torch.ones(50, dtype=torch.float64))  # bidding as the optimum assigns scores 1
    scores = {
        name: efficiency(values, choice)
        for name, choice in (("greedy", greedy_choice(values)), ("surplus", surplus_choice(values)), ("random", torch.randint(6, (2000, 6))))
    }
    assert all(bool((score <= 1 + 1e-9).all() and (score > 0).all()) for score in scores.values())
    assert 0.55 < float(scores["greedy"].mean()) < 0.7 < 0.78 < float(scores["surplus"].mean())  # the documented ~0.63 and ~0.83
    brute = [max(sum(values[w, i, p[i]] for i in range(6)) for p in itertools.permutations(range(6))) for w in range(3)]
    assert torch.allclose(optimal_welfare(values[:3]), torch.tensor(brute, dtype=torch.float64), rtol=1e-6)


# --- checkpoints and learning ----------------------------------------------------------------------
def _returns(run_dir: Path) -> list[float]:
    with open(run_dir / "metrics.csv") as f:
        return [float(row["rollout/episode_reward_mean"]) for row in csv.DictReader(f) if row.get("rollout/episode_reward_mean")]


# Settings found for speed (benchmarks/market.py): 1000 one-round markets per batch, 4 epochs of 500, lr 3e-3.
MARKET = [
    "--env",
    "market/allocation",
    "logger=csv",
    "eval.every_n_iters=0",
    "env.num_envs=1000",
    "collector.frames_per_batch=1000",
    "algo.minibatch_size=500",
    "algo.num_epochs=4",
    "algo.lr=3e-3",
]


def test_a_run_resumes_bit_for_bit(tmp_path):
    args = [
        *MARKET,
        "env.num_envs=32",
        "collector.frames_per_batch=64",
        "algo.minibatch_size=64",
        "model.hidden_sizes=[16]",
        "critic_model.hidden_sizes=[16]",
    ]
    a, b, one_go, split = resume_pair(tmp_path, "mappo", args, 256)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert _returns(one_go) == _returns(split)  # the env's generator came back with the checkpoint


def test_mappo_bids_better_than_greedy(tmp_path):
    env = AllocationEnv(num_envs=4000, seed=5)
    env.reset()
    greedy = float(efficiency(env.values, greedy_choice(env.values)).mean())  # about 0.63
    assert main(["--algo", "mappo", "--run-dir", str(tmp_path / "run"), *MARKET, "collector.total_frames=14000"]) == 0
    learned = _returns(tmp_path / "run")
    assert learned[0] < greedy  # the untrained policy bids at random (about 0.55)
    assert sum(learned[-2:]) / 2 >= greedy + 0.1, (greedy, learned)
