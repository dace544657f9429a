"""`BatchResetVmasEnv`: done worlds reset together, others untouched (ca12/envs/vmas/)."""

import copy

import pytest
import torch

from ca12.envs import make_env
from ca12.envs.vmas import _get_vmas_rng, _set_vmas_rng, reset_worlds_where
from ca12.run.config import load_config

NUM_ENVS = 6
MASK = torch.tensor([True, False, True, False, False, True])


def _observations(raw) -> torch.Tensor:
    (obs,) = raw.get_from_scenario(get_observations=True, get_infos=False, get_rewards=False, get_dones=False)
    return torch.cat(obs, dim=-1)


def _stepped_env(task: str):
    cfg = load_config("mappo", f"vmas/{task}", [f"env.num_envs={NUM_ENVS}", "env.max_steps=1000"])
    env = make_env(cfg.env, seed=3)
    env.rollout(7, break_when_any_done=False)  # away from the initial states
    return env


@pytest.mark.parametrize("task", ["navigation", "balance"])
def test_masked_reset_matches_a_full_reset_where_set_and_keeps_the_rest(task):
    raw = _stepped_env(task).base_env._env
    untouched = copy.deepcopy(raw)
    fully_reset = copy.deepcopy(raw)
    rng = _get_vmas_rng()
    reset_worlds_where(raw, MASK)
    after_rng = _get_vmas_rng()
    _set_vmas_rng(rng)  # the same draws for the reference full reset
    fully_reset.reset(return_observations=False)
    _set_vmas_rng(after_rng)

    obs, full, kept = _observations(raw), _observations(fully_reset), _observations(untouched)
    assert not torch.allclose(full[MASK], kept[MASK])  # the reset changed something
    torch.testing.assert_close(obs[MASK], full[MASK])
    torch.testing.assert_close(obs[~MASK], kept[~MASK])
    assert raw.steps[MASK].eq(0).all() and raw.steps[~MASK].eq(untouched.steps[~MASK]).all()

    # The kept worlds go on exactly as they would have: same actions, same next observations.
    actions = [torch.rand(NUM_ENVS, raw.get_agent_action_size(a)) * 2 - 1 for a in raw.agents]
    next_obs, next_kept = torch.cat(raw.step(actions)[0], -1), torch.cat(untouched.step(actions)[0], -1)
    torch.testing.assert_close(next_obs[~MASK], next_kept[~MASK])


def test_partial_reset_through_torchrl_returns_the_reset_observations():
    env = _stepped_env("navigation").base_env
    state = env.rollout(3, break_when_any_done=False)[:, -1]["next"].exclude("reward")
    before = _observations(env._env)
    td = env.reset(state.set("_reset", MASK.unsqueeze(-1)))
    obs = td["agents", "observation"].flatten(1)
    torch.testing.assert_close(obs[~MASK], before[~MASK])  # TorchRL keeps these from the input
    torch.testing.assert_close(obs, _observations(env._env))  # ... and the env agrees
    assert not torch.allclose(obs[MASK], before[MASK])


def test_masked_reset_keeps_what_all_worlds_share():
    """VMAS's speaker-listener draws one goal landmark for every world in its all-worlds reset
    branch, which `reset_at` never runs: a masked reset keeps the goal, redraws the positions."""
    raw = _stepped_env("simple_speaker_listener").base_env._env
    speaker, listener = raw.agents
    goal, untouched = speaker.goal_b, copy.deepcopy(raw)
    for _ in range(8):  # VMAS's random state moves on: some of these draw another goal
        reset_worlds_where(raw, MASK)
        assert speaker.goal_b is goal
    obs, kept = _observations(raw), _observations(untouched)
    torch.testing.assert_close(obs[~MASK], kept[~MASK])
    assert not torch.allclose(listener.state.pos[MASK], untouched.agents[1].state.pos[MASK])
