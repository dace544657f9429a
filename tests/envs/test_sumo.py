"""The sumo/ family (signal control on SUMO through sumo-rl and TorchRL's PettingZooWrapper): specs
through `make_env`, seeding, the episode statistics, the fixed-time and max-pressure baselines,
refused settings, and a tiny MAPPO fit on grid2x2; then RESCO's grid4x4 and arterial4x4 (specs and
layout against the .net.xml, seeding, both baselines through `evaluate_baseline`), parametrised.
Skipped when eclipse-sumo / sumo-rl are not installed. Episodes are 20 decisions (100 simulated
seconds; RESCO: 12, 60 s) to keep the file fast; one env per task is shared."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
from torchrl.envs.utils import check_env_specs

from ca12.envs import AgentLayout, check_task, family_baselines, make_env
from ca12.errors import UsageError
from ca12.fit import main
from ca12.run.config import load_config

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("sumo_rl") is None or importlib.util.find_spec("sumo") is None, reason='needs pip install -e ".[sumo]"'
)

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


@pytest.mark.parametrize(
    "override, message",
    [
        ("env.speed_limit=3", "does not take speed_limit"),
        ("env.reward_fn=throughput", "env.reward_fn must be one of"),
        ("env.delta_time=2", "env.delta_time must exceed env.yellow_time"),
        ("env.continuous_actions=true", "has discrete actions"),
    ],
)
def test_bad_settings_are_refused_in_one_line(override, message):
    with pytest.raises(UsageError) as error:
        make_env(_cfg(override), 0)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_unknown_task_and_missing_package_in_one_line(monkeypatch):
    with pytest.raises(UsageError, match="unknown sumo task 'grid9x9'"):
        check_task("sumo", "grid9x9")
    from ca12.envs import catalog

    monkeypatch.setattr(catalog, "sumo_installed", lambda: False)
    with pytest.raises(UsageError) as error:
        check_task("sumo", "grid2x2")
    assert 'pip install -e ".[sumo]"' in str(error.value) and "\n" not in str(error.value)


def test_a_tiny_mappo_run_completes(tmp_path):
    args = [
        "--algo",
        "mappo",
        "--env",
        "sumo/grid2x2",
        "--run-dir",
        str(tmp_path / "run"),
        "logger=csv",
        "eval.every_n_iters=0",
        f"env.max_steps={STEPS}",
        "collector.frames_per_batch=40",
        "collector.total_frames=80",
        "model.hidden_sizes=[16]",
        "critic_model.hidden_sizes=[16]",
        "algo.minibatch_size=20",
        "algo.num_epochs=1",
    ]
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


# --- RESCO's networks (resco_grid4x4, resco_arterial4x4): 16 signals each, every signal alike ---------
# task -> (signals, observation size, green phases): obs = one-hot green phase + min-green flag
# + density and queue of each incoming lane (grid4x4: 12 lanes, arterial4x4: 6).
RESCO = {"resco_grid4x4": (16, 33, 8), "resco_arterial4x4": (16, 18, 5)}
RESCO_STEPS = 12  # 60 simulated seconds


def _resco_cfg(task: str, *overrides: str):
    return load_config("mappo", f"sumo/{task}", [f"env.max_steps={RESCO_STEPS}", *overrides]).env


@pytest.fixture(scope="module", params=sorted(RESCO))
def resco(request):
    env = make_env(_resco_cfg(request.param), 0)
    yield request.param, env
    env.close()


def test_resco_specs_and_layout_match_the_network(resco):
    import xml.etree.ElementTree as ElementTree

    from ca12.envs.sumo import _green_phases, net_files

    task, env = resco
    signals, obs, phases = RESCO[task]
    check_env_specs(env)
    assert AgentLayout.from_env(env) is not None
    net = net_files(task)[0]
    lights = [logic.get("id") for logic in ElementTree.parse(net).getroot().iter("tlLogic")]
    # one homogeneous group (the wrapper refuses a net whose signals differ): every light of the net
    assert list(env.group_map) == ["agents"] and sorted(env.group_map["agents"]) == sorted(lights) and len(lights) == signals
    assert env.batch_size == torch.Size([1])
    assert env.full_observation_spec["agents", "observation"].shape == (1, signals, obs)
    assert env.full_action_spec["agents", "action"].shape == (1, signals)
    assert env.full_action_spec["agents", "action"].space.n == phases
    # the green phases fixed_time reads from the .net.xml are sumo-rl's actions, for every light
    assert all(len(_green_phases(net, light)) == phases for light in lights)
    rollout = env.rollout(RESCO_STEPS + 5, break_when_any_done=True)
    assert rollout.shape == (1, RESCO_STEPS)
    assert rollout["next", "truncated"][0, -1].item() and not rollout["next", "truncated"][0, :-1].any()
    assert rollout["next", "agents", "observation"].shape == (1, RESCO_STEPS, signals, obs)
    observation = rollout["next", "agents", "observation"]
    assert ((observation >= 0) & (observation <= 1)).all()
    assert rollout["next", "agents", "reward"].shape == (1, RESCO_STEPS, signals, 1)
    for name in ("waiting_time", "queue", "speed"):
        stat = rollout["next", "stats", name]
        assert stat.shape == (1, RESCO_STEPS, 1) and torch.isfinite(stat).all() and (stat >= 0).all()
    assert rollout["next", "stats", "speed"][0, -1].item() > 0  # vehicles enter and move within 60 s


@pytest.mark.parametrize("task", sorted(RESCO))
def test_resco_same_seed_same_rollout_another_seed_other_traffic(task):
    envs = [make_env(_resco_cfg(task), seed) for seed in (7, 7, 8)]
    try:
        rollouts = []
        for env in envs:
            torch.manual_seed(0)
            rollouts.append(env.rollout(RESCO_STEPS, break_when_any_done=False))
    finally:
        for env in envs:
            env.close()
    a, b, c = rollouts
    assert torch.equal(a["agents", "action"], b["agents", "action"])
    for key in (("next", "agents", "observation"), ("next", "agents", "reward"), ("next", "stats", "waiting_time")):
        assert torch.equal(a[key], b[key]), key
    assert torch.equal(a["agents", "action"], c["agents", "action"])  # same actions, the SUMO seed alone differs
    assert not torch.equal(a["next", "agents", "observation"], c["next", "agents", "observation"])


@pytest.mark.parametrize("task", sorted(RESCO))
@pytest.mark.parametrize("name", ["fixed_time", "max_pressure"])
def test_resco_baselines_run_an_episode_through_evaluate_baseline(monkeypatch, task, name):
    import ca12.envs.sumo as sumo
    from ca12.run.score import evaluate_baseline

    signals, _, phases = RESCO[task]
    actions, factory = [], sumo.BASELINES[name]

    def recording(env):  # the baseline, its actions recorded
        policy = factory(env)

        def act(tensordict):
            out = policy(tensordict)
            actions.append(out["agents", "action"].clone())
            return out

        return act

    monkeypatch.setitem(sumo.BASELINES, name, recording)
    result = evaluate_baseline(name, f"sumo/{task}", [f"env.max_steps={RESCO_STEPS}"], seed=0, episodes=1)
    action = torch.stack(actions, 1)  # [worlds, decisions, signals]
    assert action.shape == (1, RESCO_STEPS, signals) and action.dtype == torch.int64
    assert ((action >= 0) & (action < phases)).all()
    if name == "fixed_time":  # RESCO's programs: every green 10 s, two 5 s decisions, phases in order
        cycle = torch.arange(phases).repeat_interleave(2)
        assert torch.equal(action[0], cycle[torch.arange(RESCO_STEPS) % len(cycle)].unsqueeze(-1).expand(-1, signals))
    assert result.episodes == 1 and set(result.stats) == {"waiting_time", "queue", "speed"}
    for mean, std in result.stats.values():
        assert math.isfinite(mean) and mean >= 0 and std == 0
    assert result.stats["speed"][0] > 0 and math.isfinite(result.episode_reward_mean)
