"""The traffic junction (`comm/traffic_junction`): specs and geometry of every difficulty, seeded
determinism, the dynamics on hand-built scenes (gas, brake, leaving, collisions, arrivals), the
success metric, bad kwargs, and a tiny MAPPO + CommNet fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torchrl.envs.utils import check_env_specs

from ca12.data.evaluator import success_rate
from ca12.envs import AgentLayout, make_env
from ca12.envs.comm.traffic_junction import PRESETS, TrafficJunctionEnv, episode_success, junction_layout
from ca12.errors import UsageError
from ca12.fit import main
from ca12.run.score import checkpoint_success_rate

GAS, BRAKE = 0, 1


def _env(**overrides):
    cfg = OmegaConf.merge(OmegaConf.load(Path(__file__).parents[2] / "conf/env/comm/traffic_junction.yaml"), overrides)
    return make_env(cfg, seed=0)


def _scene(max_steps: int = 5) -> TrafficJunctionEnv:
    """An empty medium junction without arrivals, one world."""
    env = TrafficJunctionEnv(num_envs=1, difficulty="medium", max_steps=max_steps, arrival_prob=0.0)
    env.reset()
    return env


def _step(env: TrafficJunctionEnv, actions: list[int]):
    action = torch.zeros(1, env.n_max, dtype=torch.long)
    action[0, : len(actions)] = torch.tensor(actions)
    return env.step(env.full_action_spec.zero().set(("agents", "action"), action))["next"]


@pytest.mark.parametrize("difficulty", list(PRESETS))
def test_every_difficulty_builds_with_its_routes_and_specs(difficulty):
    dim, n_max, _, _ = PRESETS[difficulty]
    env = _env(num_envs=3, difficulty=difficulty, max_steps=PRESETS[difficulty][3])
    check_env_specs(env)
    group = AgentLayout.from_env(env).only("mappo", None)
    n_routes = {"easy": 2, "medium": 12, "hard": 56}[difficulty]  # IC3Net: nPr(entries, 2)
    assert (group.name, group.n_agents, group.n_actions, group.obs_dim) == ("agents", n_max, 2, 4 + n_routes + 18)
    road, routes = junction_layout(difficulty, dim)
    for route in (r for entry in routes for r in entry):
        cells = torch.tensor(route)
        assert ((cells[1:] - cells[:-1]).abs().sum(-1) == 1).all(), route  # one cell per step
        assert road[cells[:, 0], cells[:, 1]].all() and len(set(route)) == len(route)
        assert cells[-1].min() == 0 or cells[-1].max() == dim - 1  # ends at the edge
    if difficulty == "medium":  # IC3Net's lengths: straight 14, right 13, left 15
        assert [len(r) for r in routes[0]] == [14, 13, 15]


def test_same_seed_same_traffic_and_another_seed_other_traffic():
    def traffic(seed: int) -> torch.Tensor:
        env = TrafficJunctionEnv(num_envs=16, seed=seed)
        return env.rollout(40, break_when_any_done=False, policy=lambda td: td.set(("agents", "action"), torch.zeros(16, 10, dtype=torch.long)))[
            "next", "agents", "observation"
        ]

    assert torch.equal(traffic(3), traffic(3))
    assert not torch.equal(traffic(3), traffic(4))


def test_gas_moves_along_the_route_and_brake_stays():
    env = _scene()
    env.place(0, slot=2, route=1, progress=3)  # a right turn from the top
    cells = env.route_cells(1)
    out = _step(env, [GAS, GAS, BRAKE])
    assert torch.equal(env.positions[0, 2], cells[3]) and env.active[0].tolist() == [False, False, True] + [False] * 7
    obs = out["agents", "observation"][0]
    assert obs[2, 2] == 1 and obs[2, 3] == BRAKE and obs[2, 4 + 1] == 1  # active, braked, route 1
    assert obs[[0, 1, 3]].abs().sum() == 0  # empty slots see nothing and their actions did nothing
    assert out["agents", "reward"][0, 2, 0] == pytest.approx(-0.01)  # tau = 1
    for progress in (4, 5):
        out = _step(env, [BRAKE, BRAKE, GAS])
        assert torch.equal(env.positions[0, 2], cells[progress])
    assert out["agents", "reward"][0, 2, 0] == pytest.approx(-0.03) and out["agents", "reward"][0, [0, 1]].abs().sum() == 0
    centre = obs[2, 4 + 12 :].view(9, 2)[4]  # the middle of the 3x3 square: a road with one car, itself
    assert centre.tolist() == [1.0, 1.0]


def test_a_car_leaves_at_the_end_of_its_route_and_frees_its_slot():
    env = _scene()
    last = len(env.route_cells(0)) - 1
    env.place(0, slot=0, route=0, progress=last)
    out = _step(env, [GAS])
    assert not env.active.any() and out["agents", "reward"].abs().sum() == 0 and out["agents", "observation"].abs().sum() == 0


def test_two_cars_in_one_cell_each_pay_ten_and_the_episode_fails():
    env = _scene(max_steps=2)
    a = env.dim // 2 - 1
    top, left = env.route_cells(0), env.route_cells(6)  # southwards down column a, eastwards along row a + 1
    assert torch.equal(top[a + 1], left[a])  # they cross there
    env.place(0, slot=0, route=0, progress=a)
    env.place(0, slot=1, route=6, progress=a - 1)
    out = _step(env, [BRAKE, GAS])  # no collision yet: the top car waits in front of the crossing
    assert out["stats", "success"].item() == 1 and out["agents", "reward"][0, :2, 0].tolist() == pytest.approx([-0.01, -0.01])
    out = _step(env, [GAS, BRAKE])  # the top car drives into the other one
    assert out["agents", "reward"][0, :2, 0].tolist() == pytest.approx([-10.02, -10.02])
    assert out["done"].item() and out["stats", "success"].item() == 0 and out["stats", "collisions"].item() == 1
    env.reset()
    assert env.reset()["stats", "success"].item() == 1 and not env.active.any()


def test_arrivals_fill_free_slots_up_to_n_max():
    env = TrafficJunctionEnv(num_envs=64, difficulty="medium", n_max=3, arrival_prob=1.0)
    env.reset()
    out = env.step(env.full_action_spec.zero())["next"]
    assert (env.active.sum(1) == 3).all()  # 4 entries want a car, 3 slots
    entries = {tuple(env.route_cells(r)[0].tolist()) for r in range(0, 12, 3)}
    assert {tuple(cell) for cell in env.positions[env.active].tolist()} <= entries
    assert (out["agents", "observation"][..., 2].sum(1) == 3).all()
    env = TrafficJunctionEnv(num_envs=8, difficulty="hard", arrival_prob=0.5, seed=2)
    rollout = env.rollout(80, break_when_any_done=False)
    active = rollout["next", "agents", "observation"][..., 2]  # [B, T, n]
    assert active.sum(-1).max() <= 20 and active.sum(-1).max() >= 15


def test_success_is_read_at_the_episode_end():
    env = TrafficJunctionEnv(num_envs=200, difficulty="easy", seed=1)
    gas = lambda td: td.set(("agents", "action"), torch.zeros(200, 5, dtype=torch.long))  # noqa: E731
    rollout = env.rollout(20, policy=gas, break_when_any_done=False)
    expected = rollout["next", "stats", "success"][:, -1].mean()
    assert 0 < float(expected) < 1  # never braking, cars sometimes meet at the crossing
    assert float(episode_success(rollout)) == pytest.approx(float(expected))
    assert success_rate(gas, TrafficJunctionEnv(num_envs=200, difficulty="easy", seed=1)) == pytest.approx(float(expected))


def test_bad_kwargs_are_refused_in_one_line():
    for kwargs, match in (
        ({"difficulty": "extreme"}, "difficulty"),
        ({"dim": 15}, "even"),
        ({"difficulty": "hard", "dim": 20}, "multiple of 3"),
        ({"arrival_prob": 1.5}, "probability"),
        ({"n_max": 0}, "n_max"),
        ({"vision": -1}, "vision"),
    ):
        with pytest.raises(UsageError, match=match):
            TrafficJunctionEnv(**kwargs)
    with pytest.raises(UsageError, match="does not take"):
        _env(n_targets=3)
    with pytest.raises(UsageError, match="discrete"):
        _env(continuous_actions=True)


def test_mappo_with_commnet_trains_and_its_checkpoint_gives_a_success_rate(tmp_path):
    run = tmp_path / "run"
    args = [
        "--algo",
        "mappo",
        "--env",
        "comm/traffic_junction",
        "--run-dir",
        str(run),
        "logger=csv",
        "eval.every_n_iters=0",
        "env.num_envs=4",
        "env.difficulty=easy",
        "env.max_steps=20",
        "collector.frames_per_batch=80",
        "collector.total_frames=160",
        "model=commnet",
        "model.hidden_sizes=[16]",
        "critic_model.hidden_sizes=[16]",
        "algo.minibatch_size=40",
        "algo.num_epochs=1",
    ]
    assert main(args) == 0
    rate = checkpoint_success_rate(run, episodes=32)
    assert 0.0 <= rate <= 1.0
    assert checkpoint_success_rate(run, episodes=32) == rate  # the evaluation seed is fixed
