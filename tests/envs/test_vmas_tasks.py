"""ca12's VMAS scenarios (ca12/envs/vmas/tasks.py): speaker-listener with a goal per world."""

from __future__ import annotations

import torch
from conftest import tiny_config, tiny_env

from ca12.envs.vmas.tasks import LANDMARK_COLOURS


def _env(worlds: int = 64):
    cfg = tiny_config("mappo", f"env.num_envs={worlds}", "collector.frames_per_batch=6400", env="vmas/speaker_listener")
    env = tiny_env(cfg)
    return env, env.base_env._env.scenario


def test_each_world_has_its_own_goal_which_the_speaker_sees_and_the_reward_measures():
    env, scenario = _env()
    td = env.reset()
    goal = scenario.goal.clone()
    assert len(goal.unique()) == 3  # 64 worlds: every landmark is someone's goal
    torch.testing.assert_close(td["speaker", "observation"][:, 0], torch.tensor(LANDMARK_COLOURS)[goal])
    td = env.rand_step(td)
    listener = scenario.world.agents[1].state.pos
    landmarks = torch.stack([lm.state.pos for lm in scenario.world.landmarks], dim=1)
    distance = (listener - landmarks[torch.arange(64), goal]).norm(dim=-1)
    for group in ("speaker", "listener"):  # one shared reward, counted per agent as VMAS's port counts it
        torch.testing.assert_close(td["next", group, "reward"][:, 0, 0], -2 * distance)
    # The listener sees the landmarks relative to itself and the speaker's message, as in VMAS's port.
    assert td["listener", "observation"].shape[-1] == 2 + 3 * 2 + 3


def test_a_partial_reset_draws_new_goals_only_for_the_worlds_reset():
    env, scenario = _env()
    td = env.reset()
    draws = []
    for _ in range(5):
        before = scenario.goal.clone()
        mask = torch.zeros(64, 1, dtype=torch.bool)
        mask[:32] = True
        td["_reset"] = mask
        env.reset(td)
        assert torch.equal(scenario.goal[32:], before[32:])
        draws.append(scenario.goal[:32].clone())
    assert any(not torch.equal(d, draws[0]) for d in draws[1:])


def test_with_discrete_actions_the_speakers_only_action_is_its_message():
    cfg = tiny_config("mappo", "env.num_envs=8", "env.continuous_actions=false", "collector.frames_per_batch=800", env="vmas/speaker_listener")
    env = tiny_env(cfg)
    assert env.full_action_spec["speaker", "action"].space.n == 3  # not VMAS's port's 27: 3 x 3 unused moves per message
    td = env.reset()
    for message in range(3):
        td["speaker", "action"] = torch.full((8, 1), message)
        td["listener", "action"] = torch.zeros(8, 1, dtype=torch.long)
        td = env.step(td)
        heard = td["next", "listener", "observation"][:, 0, -3:]
        torch.testing.assert_close(heard, torch.nn.functional.one_hot(torch.tensor(message), 3).float().expand(8, 3))
        td = td["next"]
