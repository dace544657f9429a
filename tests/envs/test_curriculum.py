"""`env.curriculum` (ca12/envs/curriculum.py): a training env's parameter follows its schedule, evaluation
plays the configured value, bad schedules are refused in one line, and resume continues the ramp."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY, resume_pair

from ca12.envs import make_env
from ca12.errors import UsageError
from ca12.run.config import load_config
from ca12.seeding import capture_rng_state, restore_rng_state

RAMP = "env.curriculum={arrival_prob:[0.05,100,300]}"  # 10 worlds: frames 100..300 are steps 10..30


def _env(*overrides: str, training: bool = True):
    cfg = load_config("mappo", "comm/traffic_junction", ["env.num_envs=10", "env.max_steps=5", *overrides]).env
    env = make_env(cfg, seed=0, training=training)
    return env, env.base_env


def _steps(env, n: int) -> None:
    td = env.reset()
    for _ in range(n):
        td["agents", "action"] = torch.zeros(10, env.base_env.n_max, dtype=torch.long)
        td = env.step_and_maybe_reset(td)[1]


def test_the_parameter_ramps_linearly_between_the_frames_and_stays_there():
    env, base = _env(RAMP)
    assert base.arrival_prob == pytest.approx(0.05)
    _steps(env, 10)  # frame 100: the ramp starts
    assert base.arrival_prob == pytest.approx(0.05)
    _steps(env, 10)  # frame 200: half way to medium's 0.2
    assert base.arrival_prob == pytest.approx(0.125)
    _steps(env, 15)  # past frame 300
    assert base.arrival_prob == pytest.approx(0.2)


def test_evaluation_and_a_run_without_it_play_the_configured_value():
    assert _env(RAMP, training=False)[1].arrival_prob == pytest.approx(0.2)
    assert _env(RAMP, "env.arrival_prob=0.3", training=False)[1].arrival_prob == pytest.approx(0.3)
    assert _env()[1].arrival_prob == pytest.approx(0.2)


def test_the_frame_count_is_checkpointed_and_restored():
    env, base = _env(RAMP)
    _steps(env, 20)
    state = capture_rng_state()
    fresh, fresh_base = _env(RAMP)
    assert fresh_base.arrival_prob == pytest.approx(0.05)
    restore_rng_state(state)
    assert fresh_base.arrival_prob == pytest.approx(0.125)


@pytest.mark.parametrize(
    "schedule",
    ["{no_such_key:[0.1,0,10]}", "{arrival_prob:[0.1,10]}", "{arrival_prob:[0.1,20,10]}", "{arrival_prob:[0.1,0.5,10]}", "{vision:[1,0,10]}"],
)
def test_bad_schedules_are_refused_in_one_line(schedule):
    with pytest.raises(UsageError, match="env.curriculum"):
        _env(f"env.curriculum={schedule}")


def test_a_resumed_run_continues_the_ramp_bit_for_bit(tmp_path):
    args = [*TINY, "logger=none", "--env", "comm/traffic_junction", "env.num_envs=10", "collector.frames_per_batch=100", "env.max_steps=10", RAMP]
    a, b, _, _ = resume_pair(tmp_path, "mappo", args, 400)
    assert all(torch.equal(a[k], b[k]) for k in a)
