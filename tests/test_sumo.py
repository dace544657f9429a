"""The sumo/ family (signal control on SUMO through sumo-rl and TorchRL's PettingZooWrapper): specs
through `make_env`, seeding, the episode statistics, the fixed-time and max-pressure baselines,
refused settings, and a tiny MAPPO fit. Skipped when eclipse-sumo / sumo-rl are not installed.
Episodes are 20 decisions (100 simulated seconds) to keep the file fast; one env is shared."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torchrl.envs.utils import check_env_specs

from ca12.config import load_config
from ca12.envs import AgentLayout, check_task, family_baselines, make_env
from ca12.errors import UsageError
from ca12.fit import main

pytestmark = pytest.mark.skipif(importlib.util.find_spec("sumo_rl") is None or importlib.util.find_spec("sumo") is None,
                                reason='needs pip install -e ".[sumo]"')

STEPS = 20


def _cfg(*overrides: str):
    return load_config("mappo", "sumo/grid2x2", [f"env.max_steps={STEPS}", *overrides]).env


@pytest.fixture(scope="module")
def env():
    env = make_env(_cfg(), 0)
    yield env
    env.close()


def test_specs_layout_and_one_episode(env):
    check_env_specs(env)
    layout = AgentLayout.from_env(env)
    assert list(env.group_map) == ["agents"] and len(env.group_map["agents"]) == 4
    assert env.batch_size == torch.Size([1])
    assert env.full_observation_spec["agents", "observation"].shape == (1, 4, 21)
    assert env.full_action_spec["agents", "action"].space.n == 4
    assert layout is not None
    rollout = env.rollout(STEPS + 5, break_when_any_done=True)
    assert rollout.shape == (1, STEPS)  # the episode is max_steps decisions, then truncated
    assert rollout["next", "truncated"][0, -1].item() and not rollout["next", "truncated"][0, :-1].any()
    assert not rollout["next", "terminated"].any()
    assert rollout["next", "agents", "reward"].shape == (1, STEPS, 4, 1)
    for name in ("waiting_time", "queue", "speed"):
        stat = rollout["next", "stats", name]
        assert stat.shape == (1, STEPS, 1) and torch.isfinite(stat).all() and (stat >= 0).all()
    assert rollout["next", "stats", "queue"][0, -1].item() > 0  # vehicles queue at red within 100 s


def test_same_seed_same_rollout():
    first, second = make_env(_cfg(), 7), make_env(_cfg(), 7)
    try:
        torch.manual_seed(0)
        a = first.rollout(STEPS, break_when_any_done=False)
        torch.manual_seed(0)
        b = second.rollout(STEPS, break_when_any_done=False)
    finally:
        first.close()
        second.close()
    assert torch.equal(a["agents", "action"], b["agents", "action"])
    for key in (("next", "agents", "observation"), ("next", "agents", "reward"), ("next", "stats", "waiting_time")):
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("name", ["fixed_time", "max_pressure"])
def test_baselines_run_an_episode_with_valid_actions(env, name):
    baselines = family_baselines("sumo")
    assert set(baselines) == {"fixed_time", "max_pressure"}
    env.set_seed(3)
    rollout = env.rollout(STEPS, baselines[name](env), break_when_any_done=False)
    action = rollout["agents", "action"]
    assert action.shape == (1, STEPS, 4) and action.dtype == torch.int64
    assert ((action >= 0) & (action < 4)).all()
    assert len(action.unique()) > 1  # both switch phases within 20 decisions
    assert torch.isfinite(rollout["next", "stats", "waiting_time"]).all()


def test_fixed_time_follows_the_network_program(env):
    from ca12.envs.sumo import FixedTime

    # 2x2grid's program: greens of 33, 6, 33, 6 s; 5 s decisions; the shortest hold is 2 decisions.
    assert FixedTime(env).schedules[0] == [0] * 7 + [1] * 2 + [2] * 7 + [3] * 2


@pytest.mark.parametrize("override, message", [
    ("env.speed_limit=3", "does not take speed_limit"),
    ("env.reward_fn=throughput", "env.reward_fn must be one of"),
    ("env.delta_time=2", "env.delta_time must exceed env.yellow_time"),
    ("env.continuous_actions=true", "has discrete actions"),
])
def test_bad_settings_are_refused_in_one_line(override, message):
    with pytest.raises(UsageError) as error:
        make_env(_cfg(override), 0)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_unknown_task_and_missing_package_in_one_line(monkeypatch):
    with pytest.raises(UsageError, match="unknown sumo task 'grid9x9'"):
        check_task("sumo", "grid9x9")
    import ca12.envs.sumo as sumo

    monkeypatch.setattr(sumo, "_installed", lambda: False)
    with pytest.raises(UsageError) as error:
        check_task("sumo", "grid2x2")
    assert 'pip install -e ".[sumo]"' in str(error.value) and "\n" not in str(error.value)


def test_a_tiny_mappo_run_completes(tmp_path):
    args = ["--algo", "mappo", "--env", "sumo/grid2x2", "--run-dir", str(tmp_path / "run"), "logger=csv", "eval.every_n_iters=0",
            f"env.max_steps={STEPS}", "collector.frames_per_batch=40", "collector.total_frames=80",
            "model.hidden_sizes=[16]", "critic_model.hidden_sizes=[16]", "algo.minibatch_size=20", "algo.num_epochs=1"]
    assert main(args) == 0
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert all(f"rollout/{name}_mean" in header for name in ("waiting_time", "queue"))


def test_each_episode_draws_its_sumo_seed_and_checkpoints_capture_the_draws(env):
    from ca12.seeding import capture_rng_state, restore_rng_state

    policy = family_baselines("sumo")["fixed_time"](env)  # deterministic: only the traffic differs
    env.set_seed(11)
    saved = capture_rng_state()
    assert "sumo/grid2x2/cpu/0" in saved["extra"]
    first = env.rollout(2 * STEPS, policy, break_when_any_done=False)["next", "agents", "observation"]
    assert not torch.equal(first[:, :STEPS], first[:, STEPS:])  # episode 2 is new traffic, not a replay of episode 1
    restore_rng_state(saved)
    assert torch.equal(env.rollout(2 * STEPS, policy, break_when_any_done=False)["next", "agents", "observation"], first)


def test_several_worlds_step_in_a_serial_env():
    env = make_env(_cfg("env.num_envs=2"), 5)
    try:
        check_env_specs(env)
        rollout = env.rollout(5, family_baselines("sumo")["max_pressure"](env), break_when_any_done=False)
    finally:
        env.close()
    assert rollout["agents", "action"].shape == (2, 5, 4)
    assert not torch.equal(rollout["next", "agents", "observation"][0], rollout["next", "agents", "observation"][1])  # seeds differ
