"""The QMIX paper's two-step game (`matrix/two_step`, ca12/envs/matrix/two_step.py): payoffs along every
joint-action path, state transitions and observations, episode ends, refusals, and a tiny fit."""

from __future__ import annotations

import itertools

import pytest
import torch

from ca12.envs import family_tasks, make_env
from ca12.errors import UsageError
from ca12.fit import list_choices, main
from ca12.run.config import load_config

# Every path through the game: (agent 0, agent 1) at step 1, then at step 2; [16, 2, 2].
PATHS = torch.tensor(list(itertools.product(range(2), repeat=4))).view(-1, 2, 2)
STATE_1, STATE_2A, STATE_2B = torch.eye(3)


def _env(*overrides: str, num_envs: int = len(PATHS)):
    return make_env(load_config("qmix", "matrix/two_step", [f"env.num_envs={num_envs}", *overrides]).env, 0)


def _play(env, paths: torch.Tensor) -> list:
    """The reset's output and the "next" of each of the two steps, worlds playing `paths` [B, 2, 2]."""
    base, td = env.base_env, env.reset()
    outputs = [td.clone()]
    for step in range(2):
        joint = paths[:, step]  # [B, 2]
        td["agents", "action"] = joint if base.categorical_actions else torch.nn.functional.one_hot(joint, 2).bool()
        td = env.step(td)["next"]
        outputs.append(td.clone())
    return outputs


@pytest.mark.parametrize("categorical", [True, False])
def test_every_path_pays_the_papers_rewards(categorical):
    _, first, second = _play(_env(f"env.categorical_actions={str(categorical).lower()}"), PATHS)
    assert torch.equal(first["agents", "reward"], torch.zeros(len(PATHS), 2, 1)), "state 1 pays nothing"
    matrix_2b = torch.tensor([[0.0, 1.0], [1.0, 8.0]])
    expected = torch.where(PATHS[:, 0, 0] == 0, 7.0, matrix_2b[PATHS[:, 1, 0], PATHS[:, 1, 1]])  # [16]
    reward = second["agents", "reward"]  # [16, 2, 1]
    assert torch.equal(reward[:, 0], reward[:, 1]), "a team reward"
    assert torch.equal(reward[:, 0, 0], expected)
    assert torch.equal(second["agents", "episode_reward"][:, :, 0].amax(), torch.tensor(8.0))


def test_agent_0_picks_the_second_state_and_agents_see_state_and_index():
    reset, first, second = _play(_env(), PATHS)
    ids = torch.eye(2).expand(len(PATHS), 2, 2)
    obs = reset["agents", "observation"]  # [16, 2, 5]
    assert obs.shape == (len(PATHS), 2, 5)
    assert torch.equal(obs[..., :3], STATE_1.expand(len(PATHS), 2, 3)) and torch.equal(obs[..., 3:], ids)
    seen = first["agents", "observation"][..., :3]  # [16, 2, 3]
    expected = torch.where((PATHS[:, 0, 0] == 0).view(-1, 1), STATE_2A, STATE_2B)  # [16, 3]: agent 1 does not matter
    assert torch.equal(seen, expected.unsqueeze(1).expand(-1, 2, 3))
    assert torch.equal(second["agents", "observation"][..., :3], torch.zeros(len(PATHS), 2, 3)), "the game is over"
    assert torch.equal(second["agents", "observation"][..., 3:], ids)


def test_the_game_ends_after_step_two_and_not_before():
    env = _env(num_envs=3)
    td = env.rollout(4, break_when_any_done=False)  # two episodes back to back
    for key in ("done", "terminated"):
        assert td["next", key].squeeze(-1).tolist() == [[False, True, False, True]] * 3
    assert not td["next", "truncated"].any()
    assert torch.equal(td["agents", "observation"][:, 2], td["agents", "observation"][:, 0]), "reset to state 1"


@pytest.mark.parametrize(
    "override, message",
    [
        ("env.max_steps=3", "env.max_steps must be 2, got 3"),
        ("env.max_steps=1", "env.max_steps must be 2, got 1"),
        ("env.continuous_actions=true", "discrete actions"),
        ("env.payoffs=[[[1]]]", "does not take payoffs"),
    ],
)
def test_refused_settings_say_why_in_one_line(override, message):
    with pytest.raises(UsageError, match=message) as refused:
        _env(override, num_envs=2)
    assert "\n" not in str(refused.value)


def test_two_step_is_listed_with_the_matrix_tasks():
    assert "two_step" in family_tasks("matrix")
    assert "env matrix/two_step" in list_choices()


# One tiny fit: 4 worlds x 2 episodes per batch, two batches, updates from the first.
TINY_FIT = [
    "logger=none",
    "env.num_envs=4",
    "collector.frames_per_batch=16",
    "collector.total_frames=32",
    "algo.warmup_frames=16",
    "algo.minibatch_size=8",
    "algo.updates_per_frame=0.25",
    "model.hidden_sizes=[16]",
    "eval.every_n_iters=1",
    "eval.episodes=2",
]


def test_qmix_fits_the_two_step_game(tmp_path):
    assert main(["--algo", "qmix", "--env", "matrix/two_step", "--run-dir", str(tmp_path), *TINY_FIT]) == 0
    metrics = (tmp_path / "metrics.csv").read_text()
    assert "eval/episode_reward_mean" in metrics and "train/loss" in metrics
