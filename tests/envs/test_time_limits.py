"""Time limits per env family (docs/ARCHITECTURE.md, "Time limits"): at `env.max_steps` an episode cut
by a time limit reports `truncated` and not `terminated` (value targets bootstrap there), while a
task whose horizon is the game itself (a repeated game, a day, an answer) reports `terminated`.
VMAS's own terminal states stay terminated, at the limit too; and a learner's value target
bootstraps from the value of the state it was cut in."""

from __future__ import annotations

import pytest
import torch

from ca12.envs import make_env
from ca12.run.config import load_config

B, T = 3, 4  # worlds, steps to the limit

# (env, its flag at the limit, overrides): every family, and VMAS's own tasks, an MPE port and a swarm task.
FAMILIES = [
    ("vmas/navigation", "truncated", ()),
    ("vmas/simple_spread", "truncated", ()),
    ("vmas/flocking", "truncated", ()),
    ("vmas/balance", "truncated", ()),
    ("gym/Pendulum-v1", "truncated", ()),
    ("pettingzoo/simple_spread", "truncated", ()),
    ("generic/coop", "truncated", ()),
    ("meta/navigation", "truncated", ()),
    ("traffic/grid2x2", "truncated", ()),
    ("sumo/grid2x2", "truncated", ()),
    ("comm/predator_prey", "truncated", ()),
    # The horizon is the task's: the repeated game's last play (its observation counts the plays), one
    # day of the grid (its observation is the hour), the memory task's answer, the rounds of the
    # referential game and the market, the papers' fixed traffic-junction episode.
    ("matrix/coordination", "terminated", ()),
    ("grid/cigre_lv", "terminated", ()),
    ("memory/cue", "terminated", ()),
    ("comm/referential", "terminated", ()),
    ("comm/traffic_junction", "terminated", ()),
    ("market/allocation", "terminated", ()),
]


def _env(name: str, *overrides: str, steps: int = T):
    cfg = load_config("mappo", name, [f"env.num_envs={B}", f"env.max_steps={steps}", *overrides]).env
    return make_env(cfg, seed=0)


@pytest.mark.parametrize("name,flag,overrides", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_at_the_limit_the_episode_is_cut_by_the_documented_flag(name, flag, overrides):
    env = _env(name, *overrides)
    other = {"truncated": "terminated", "terminated": "truncated"}[flag]
    td = env.rollout(T, break_when_any_done=False)
    last, before = td["next"][:, -1], td["next"][:, :-1]
    assert last["done"].all() and last[flag].all(), f"{name}: every world is {flag} at step {T}"
    assert not last[other].any(), f"{name}: the limit is not {other}"
    assert not before[flag].any() or name == "vmas/balance", f"{name}: nothing is cut before the limit"
    assert set(env.full_done_spec.keys()) >= {"done", "terminated", "truncated"}


def test_a_vmas_terminal_state_stays_terminated_before_and_at_the_limit():
    env = _env("vmas/navigation")
    world = env.base_env._env
    # World 0 reaches a terminal state at the limit step, world 1 at the second step of each episode, world 2 never.
    world.scenario.done = lambda: torch.stack([world.steps[0] >= T, world.steps[1] == 2, torch.tensor(False)])
    td = env.rollout(T, break_when_any_done=False)["next"]
    terminated, truncated = td["terminated"].squeeze(-1), td["truncated"].squeeze(-1)  # [B, T]
    assert terminated.tolist() == [[False] * (T - 1) + [True], [False, True, False, True], [False] * T]
    assert truncated.tolist() == [[False] * (T - 1) + [True], [False] * T, [False] * (T - 1) + [True]]
    assert torch.equal(td["done"].squeeze(-1), terminated | truncated)


def test_partial_resets_and_resets_report_no_time_limit():
    env = _env("vmas/navigation")
    td = env.reset()
    for _ in range(T):
        out, td = env.step_and_maybe_reset(env.rand_action(td))
    assert out["next", "truncated"].all()
    assert not td["truncated"].any() and not td["terminated"].any() and not td["done"].any()


def test_mappo_bootstraps_at_the_vmas_time_limit():
    """The value target of a step cut by the time limit is r + gamma V(s'), not r: MAPPO's GAE on a
    navigation batch whose last step is the limit."""
    from ca12.algos import algo_class
    from ca12.envs import make_spec_env

    cfg = load_config("mappo", "vmas/navigation", [f"env.num_envs={B}", f"env.max_steps={T}", "algo.lmbda=0"])
    module = algo_class("mappo")(cfg, make_spec_env(cfg.env, 0))
    env = make_env(cfg.env, seed=0)
    with torch.no_grad():
        batch = env.rollout(T, module.policy, break_when_any_done=False)
        module.compute_advantage(batch)
    g = "agents"
    assert batch["next", "truncated"][:, -1].all()
    reward, value = batch["next", g, "reward"][:, -1], batch[g, "state_value"][:, -1]
    next_value = batch["next", g, "state_value"][:, -1]
    assert next_value.abs().sum() > 0
    expected = reward + cfg.algo.gamma * next_value - value
    assert torch.allclose(batch[g, "advantage"][:, -1], expected, atol=1e-5)
