"""comm/predator_prey (ca12/envs/comm/predator_prey.py): IC3Net's predator-prey with limited vision."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY
from torchrl.envs.utils import check_env_specs

from ca12.envs import make_env
from ca12.envs.comm.predator_prey import ON_PREY_REWARD, TIME_PENALTY, PredatorPreyEnv
from ca12.errors import UsageError
from ca12.fit import main
from ca12.run.config import load_config
from ca12.run.score import checkpoint_success_rate

UP, RIGHT, DOWN, LEFT, STAY = range(5)


def test_specs_hold_for_any_team_size_and_vision():
    for n, vision in ((1, 0), (4, 1), (16, 2)):
        env = make_env(load_config("mappo", "comm/predator_prey", ["env.num_envs=3", f"env.n_agents={n}", f"env.vision={vision}"]).env, seed=0)
        check_env_specs(env)
        assert env.full_observation_spec["agents", "observation"].shape == (3, n, 3 + 3 * (2 * vision + 1) ** 2)


def test_moves_stop_at_the_walls_and_a_catcher_stays_on_the_prey():
    env = PredatorPreyEnv(num_envs=1, n_agents=3, dim=4, vision=1)
    env.reset()
    env.place(0, [(0, 0), (2, 2), (1, 3)], prey=(1, 3))
    step = env._step  # from the placed scene (reset would draw a new one)
    first = step(_actions([UP, RIGHT, LEFT]))
    assert env.predators[0].tolist() == [[0, 0], [2, 3], [1, 3]]  # the wall; one cell right; the catcher stays
    assert first["agents", "reward"][0, :, 0].tolist() == pytest.approx([TIME_PENALTY, TIME_PENALTY, ON_PREY_REWARD])
    step(_actions([DOWN, UP, DOWN]))
    assert env.predators[0].tolist() == [[1, 0], [1, 3], [1, 3]]
    out = step(_actions([STAY, STAY, STAY]))
    assert out["agents", "reward"][0, :, 0].tolist() == pytest.approx([TIME_PENALTY, 2 * ON_PREY_REWARD, 2 * ON_PREY_REWARD])
    assert out["stats", "caught"].item() == pytest.approx(2 / 3) and out["stats", "success"].item() == 0
    for action in (RIGHT, RIGHT, RIGHT):
        out = step(_actions([action, STAY, STAY]))
    assert env.predators[0].tolist() == [[1, 3]] * 3 and out["stats", "success"].item() == 1
    assert out["agents", "reward"][0, :, 0].tolist() == pytest.approx([3 * ON_PREY_REWARD] * 3)


def _actions(actions: list[int]):
    from tensordict import TensorDict

    return TensorDict({"agents": TensorDict({"action": torch.tensor([actions])}, batch_size=(1, len(actions)))}, batch_size=(1,))


def test_the_prey_is_seen_within_vision_only():
    env = PredatorPreyEnv(num_envs=1, n_agents=2, dim=6, vision=1)
    env.reset()
    env.place(0, [(2, 2), (5, 5)], prey=(3, 3))
    obs = env._observation()[0]  # [2, 3 + 27]
    prey_seen = obs[:, 3:].view(2, 9, 3)[..., 1]  # per cell of the 3x3 square: the prey there
    assert prey_seen[0].tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 1]  # down-right of predator 0
    assert prey_seen[1].sum() == 0
    inside = obs[1, 3:].view(9, 3)[:, 0]  # predator 1 in the corner: 4 of its 9 cells are in the grid
    assert inside.sum() == 4
    blind = PredatorPreyEnv(num_envs=1, n_agents=1, dim=6, vision=0)
    blind.reset()
    blind.place(0, [(2, 2)], prey=(2, 3))
    assert blind._observation()[0, 0, 3:].tolist() == [1.0, 0.0, 1.0]  # its own cell: inside, no prey, itself


def test_same_seed_same_scenes_and_another_seed_others():
    def scenes(seed):
        env = PredatorPreyEnv(num_envs=8, n_agents=3, dim=10, seed=seed)
        env.reset()
        return torch.cat([env.predators.flatten(1), env.prey], 1)

    assert torch.equal(scenes(0), scenes(0)) and not torch.equal(scenes(0), scenes(1))


def test_bad_sizes_are_refused_in_one_line():
    with pytest.raises(UsageError, match="env.dim"):
        PredatorPreyEnv(dim=1)
    with pytest.raises(UsageError, match="does not take"):
        make_env(load_config("mappo", "comm/predator_prey", ["env.difficulty=easy"]).env, seed=0)


@pytest.mark.parametrize("model", ["commnet", "tarmac"])
def test_talking_teams_of_eight_train_on_it(model, tmp_path):
    args = [*TINY, "logger=csv", "env.n_agents=8", "env.dim=6", "env.max_steps=10", f"model={model}", "collector.total_frames=200"]
    assert main(["--algo", "mappo", "--env", "comm/predator_prey", "--run-dir", str(tmp_path / "run"), *args]) == 0
    assert "rollout/success_mean" in (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    rate = checkpoint_success_rate(tmp_path / "run", episodes=16)
    assert 0.0 <= rate <= 1.0 and checkpoint_success_rate(tmp_path / "run", episodes=16) == rate  # the same evaluation episodes


def test_a_success_rate_of_a_task_without_one_is_refused_in_one_line(tmp_path):
    assert main(["--algo", "mappo", "--run-dir", str(tmp_path / "run"), *TINY, "logger=none", "collector.total_frames=100"]) == 0
    with pytest.raises(UsageError, match="reports no success"):
        checkpoint_success_rate(tmp_path / "run", episodes=4)
