"""The matrix-game and generic cooperative env families: specs, payoffs, episode lengths,
config plumbing, seeding and a tiny end-to-end fit on each."""

from __future__ import annotations

import itertools

import pytest
import torch
from omegaconf import OmegaConf
from tensordict import TensorDict
from torchrl.envs.utils import check_env_specs

from ca12.envs import AgentLayout, family_tasks, make_env
from ca12.envs.generic import MultiAgentEnvironment
from ca12.envs.matrix import GAMES, MatrixGameEnv
from ca12.errors import UsageError
from ca12.fit import list_choices, main
from ca12.run.config import conf_dir, load_config
from ca12.seeding import capture_rng_state, restore_rng_state

GENERIC = ["generic/coop", "generic/coop_discrete"]


def _env(name: str, *overrides: str, seed: int = 0):
    return make_env(load_config("mappo", name, ["env.num_envs=3", *overrides]).env, seed)


def _act(env, joint: torch.Tensor) -> TensorDict:
    """One step of `env` (a matrix game) with integer joint actions `joint` [B, n]."""
    base = env.base_env
    action = joint if base.categorical_actions else torch.nn.functional.one_hot(joint, base.n_actions).bool()
    td = env.reset()
    td["agents", "action"] = action
    return env.step(td)["next"]


@pytest.mark.parametrize("name", [f"matrix/{g}" for g in GAMES] + GENERIC)
def test_specs_hold_for_every_named_game_and_generic_variant(name):
    env = _env(name)
    check_env_specs(env)
    assert AgentLayout.from_env(env).names == ["agents"]
    td = env.rollout(2)
    n = len(env.base_env.group_map["agents"])
    assert td["next", "agents", "reward"].shape == (3, 2, n, 1)
    assert td["next", "done"].shape == (3, 2, 1)
    assert td["next", "agents", "episode_reward"].shape == (3, 2, n, 1)


@pytest.mark.parametrize("categorical", [True, False])
@pytest.mark.parametrize("game", GAMES)
def test_rewards_are_the_yaml_payoffs_of_the_joint_action(game, categorical):
    yaml = torch.tensor(OmegaConf.to_container(OmegaConf.load(conf_dir() / "env" / "matrix" / f"{game}.yaml").payoffs))
    n, a = yaml.shape[0], yaml.shape[1]
    joints = torch.tensor(list(itertools.product(range(a), repeat=n)))  # every joint action, [a^n, n]
    overrides = [
        f"env.num_envs={len(joints)}",
        f"collector.frames_per_batch={len(joints)}",
        f"algo.minibatch_size={len(joints)}",
        f"env.categorical_actions={str(categorical).lower()}",
    ]
    env = make_env(load_config("mappo", f"matrix/{game}", overrides).env, 0)
    assert torch.equal(env.base_env.payoffs, yaml.float())
    reward = _act(env, joints)["agents", "reward"]  # [a^n, n, 1]
    for row, joint in enumerate(joints.tolist()):
        for player in range(n):
            assert reward[row, player, 0] == yaml[(player, *joint)], (game, joint, player)


def test_named_game_payoffs_are_the_published_ones():
    """Claus & Boutilier 1998's climbing and penalty (k = -10) games, common payoff."""
    climbing = torch.tensor([[11, -30, 0], [-30, 7, 6], [0, 0, 5]]).float()
    penalty = torch.tensor([[-10, 0, 10], [0, 2, 0], [10, 0, -10]]).float()
    for game, table in (("climbing", climbing), ("penalty", penalty)):
        payoffs = _env(f"matrix/{game}").base_env.payoffs
        assert torch.equal(payoffs[0], table) and torch.equal(payoffs[1], table)
    for game in ("matching_pennies", "rock_paper_scissors"):
        payoffs = _env(f"matrix/{game}").base_env.payoffs
        assert torch.equal(payoffs.sum(0), torch.zeros_like(payoffs[0])), f"{game} must be zero-sum"


def test_coordination_game_is_monotonic():
    """Additive in per-player utilities, so the greedy joint action is the optimum (QMIX/VDN-exact)."""
    r = _env("matrix/coordination").base_env.payoffs[0]  # [A, A], common payoff
    assert torch.equal(r, r[:, :1] + r[:1, :] - r[0, 0])
    best_each = r.mean(1).argmax(), r.mean(0).argmax()  # each player's best action against a uniform partner
    assert r[best_each] == r.max()


def test_observation_layout_previous_joint_action_agent_id_time():
    env = MatrixGameEnv([[[1, 0, 0], [0, 1, 0], [0, 0, 1]]] * 2, num_envs=1, max_steps=4)
    start = env.reset()["agents", "observation"][0]  # [n, 3*2 + 2 + 1]
    assert torch.equal(start[:, :6], torch.zeros(2, 6))
    assert torch.equal(start[:, 6:8], torch.eye(2)) and torch.equal(start[:, 8], torch.zeros(2))
    td = env.reset()
    td["agents", "action"] = torch.tensor([[2, 0]])
    obs = env.step(td)["next", "agents", "observation"][0]
    assert torch.equal(obs[0, :6], torch.tensor([0.0, 0, 1, 1, 0, 0])) and torch.equal(obs[0, :6], obs[1, :6])
    assert torch.allclose(obs[:, 8], torch.full((2,), 0.25))


@pytest.mark.parametrize("steps", [1, 4])
def test_episode_ends_after_max_steps_plays(steps):
    env = _env("matrix/penalty", f"env.max_steps={steps}")
    td = env.rollout(steps + 3, break_when_any_done=False)
    done = td["next", "done"][..., 0]  # [B, T]
    expected = torch.tensor([(t + 1) % steps == 0 for t in range(steps + 3)]).expand_as(done)
    assert torch.equal(done, expected)
    assert torch.equal(td["next", "terminated"], td["next", "done"])


def test_custom_payoffs_from_the_command_line():
    cfg = load_config("mappo", "matrix/custom", ["env.payoffs=[[[1,0],[0,1]],[[1,0],[0,1]]]", "env.num_envs=4"])
    env = make_env(cfg.env, 0)
    check_env_specs(env)
    reward = _act(env, torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]]))["agents", "reward"][..., 0]
    assert torch.equal(reward, torch.tensor([[1.0, 1], [0, 0], [0, 0], [1, 1]]))


def test_three_player_custom_game():
    payoffs = torch.arange(3 * 8, dtype=torch.float32).reshape(3, 2, 2, 2)
    env = MatrixGameEnv(payoffs, num_envs=1)
    td = env.reset()
    td["agents", "action"] = torch.tensor([[1, 0, 1]])
    out = env.step(td)["next"]
    assert torch.equal(out["agents", "reward"][0, :, 0], payoffs[:, 1, 0, 1])
    assert out["agents", "observation"].shape == (1, 3, 3 * 2 + 3 + 1)


@pytest.mark.parametrize(
    "payoffs, fragment",
    [
        ("[[[1,0,0],[0,1,0]],[[1,0,0],[0,1,0]]]", "(2, 2, 3)"),
        ("[[1,0],[0,1]]", "one action axis per player"),
    ],
)
def test_malformed_payoffs_are_refused(payoffs, fragment):
    cfg = load_config("mappo", "matrix/custom", [f"env.payoffs={payoffs}"])
    with pytest.raises(UsageError) as info:
        make_env(cfg.env, 0)
    assert fragment in str(info.value)


def test_custom_game_without_payoffs_and_continuous_matrix_actions_are_refused():
    with pytest.raises(UsageError, match="env.payoffs"):
        make_env(load_config("mappo", "matrix/custom").env, 0)
    with pytest.raises(UsageError, match="discrete actions"):
        make_env(load_config("mappo", "matrix/climbing", ["env.continuous_actions=true"]).env, 0)
    with pytest.raises(UsageError, match="coop_discrete"):
        make_env(load_config("mappo", "generic/coop", ["env.continuous_actions=false"]).env, 0)
    with pytest.raises(UsageError, match="action_dim"):
        MultiAgentEnvironment(state_dim=2, action_dim=3)


def _rollout(env, steps: int = 6) -> TensorDict:
    """A rollout with fixed actions, so it depends on the env's own randomness only."""
    base = env.base_env
    if base.continuous_actions:
        action = torch.full((base.batch_size[0], base.n_agents, base.action_dim), 0.5)
    else:
        action = torch.ones(base.batch_size[0], base.n_agents, dtype=torch.long)
    return env.rollout(steps, policy=lambda td: td.set(("agents", "action"), action), break_when_any_done=False)


@pytest.mark.parametrize("name", GENERIC)
def test_same_seed_same_rollouts_different_seed_different(name):
    a, b, c = _env(name, "env.max_steps=3", seed=1), _env(name, "env.max_steps=3", seed=1), _env(name, "env.max_steps=3", seed=2)
    first, second, third = _rollout(a), _rollout(b), _rollout(c)  # 6 steps: two episodes, one reset in between
    assert torch.equal(first["next", "agents", "observation"], second["next", "agents", "observation"])
    assert torch.equal(first["next", "agents", "reward"], second["next", "agents", "reward"])
    assert not torch.equal(first["next", "agents", "observation"], third["next", "agents", "observation"])
    a.set_seed(2)
    c.set_seed(2)
    assert torch.equal(_rollout(a)["agents", "observation"], _rollout(c)["agents", "observation"])


def test_generic_env_leaves_global_generator_alone_and_checkpoints_capture_its_own():
    before = torch.get_rng_state()
    env = MultiAgentEnvironment(num_envs=2, n_agents=2, state_dim=3, seed=11)
    env.reset()
    assert torch.equal(before, torch.get_rng_state())
    saved = capture_rng_state()
    first = env.reset()["agents", "observation"]
    restore_rng_state(saved)
    assert torch.equal(env.reset()["agents", "observation"], first)


def test_generic_dynamics_and_team_reward():
    env = MultiAgentEnvironment(num_envs=2, n_agents=3, state_dim=2, step_size=0.1, goal_radius=0.05, bonus=1.0)
    td = env.reset()
    obs = td["agents", "observation"]  # [B, n, 6]
    pos, to_goal = obs[..., :2], obs[..., 2:4]
    assert torch.allclose(obs[..., 4:], pos.mean(1, keepdim=True).expand_as(pos))
    td["agents", "action"] = torch.ones(2, 3, 2)
    out = env.step(td)["next"]
    new_pos = (pos + 0.1).clamp(-1, 1)
    distance = (pos + to_goal - new_pos).norm(dim=-1)  # [B, n]
    reward = out["agents", "reward"]  # [B, n, 1]
    assert torch.allclose(reward[..., 0], -distance.mean(-1, keepdim=True).expand(2, 3), atol=1e-6)
    env._pos = env._goal.unsqueeze(1).expand(2, 3, 2).clone()  # everyone at the goal: the bonus
    td["agents", "action"] = torch.zeros(2, 3, 2)
    assert torch.allclose(env.step(td)["next", "agents", "reward"], torch.ones(2, 3, 1))
    assert not out["terminated"].any()


def test_generic_discrete_moves_one_axis_per_action():
    env = MultiAgentEnvironment(num_envs=1, n_agents=5, state_dim=2, continuous_actions=False, step_size=0.1)
    td = env.reset()
    pos = td["agents", "observation"][0, :, :2]
    td["agents", "action"] = torch.arange(5).unsqueeze(0)  # stay, +x, -x, +y, -y
    new = env.step(td)["next", "agents", "observation"][0, :, :2]
    moves = torch.tensor([[0, 0], [1, 0], [-1, 0], [0, 1], [0, -1]]) * 0.1
    assert torch.allclose(new, (pos + moves).clamp(-1, 1))


def test_families_are_listed():
    lines = list_choices()
    assert "env matrix/climbing" in lines and "env generic/coop" in lines and "env matrix/custom" in lines
    assert family_tasks("matrix") == sorted([*GAMES, "custom", "two_step"])
    for game in GAMES:
        assert (conf_dir() / "env" / "matrix" / f"{game}.yaml").is_file()


TINY_FIT = [
    "logger=none",
    "model.hidden_sizes=[16]",
    "critic_model.hidden_sizes=[16]",
    "algo.num_epochs=1",
    "eval.every_n_iters=0",
    "env.num_envs=4",
]


@pytest.mark.parametrize(
    "env, extra",
    [
        ("generic/coop", ["env.max_steps=10", "collector.frames_per_batch=40", "collector.total_frames=80", "algo.minibatch_size=20"]),
        ("matrix/climbing", ["env.max_steps=1", "collector.frames_per_batch=4", "collector.total_frames=8", "algo.minibatch_size=4"]),
    ],
)
def test_tiny_fit_runs(env, extra, tmp_path):
    assert main(["--algo", "ippo", "--env", env, "--run-dir", str(tmp_path / "r"), *TINY_FIT, *extra]) == 0
    assert (tmp_path / "r" / "checkpoints" / "last.ckpt").is_file()


def test_generic_run_resumes_bit_for_bit(tmp_path):
    """The env's own generator is in the checkpoint: half a run plus a resume is the whole run."""
    args = [
        "logger=none",
        "model.hidden_sizes=[16]",
        "critic_model.hidden_sizes=[16]",
        "algo.num_epochs=1",
        "eval.every_n_iters=1",
        "eval.episodes=2",
        "env.num_envs=4",
        "env.max_steps=5",
        "collector.frames_per_batch=20",
        "algo.minibatch_size=20",
    ]
    one_go, split = tmp_path / "one_go", tmp_path / "split"
    assert main(["--algo", "ippo", "--env", "generic/coop", "--run-dir", str(one_go), *args, "collector.total_frames=60"]) == 0
    assert main(["--algo", "ippo", "--env", "generic/coop", "--run-dir", str(split), *args, "collector.total_frames=20"]) == 0
    assert main(["--resume", str(split), "collector.total_frames=60"]) == 0
    a = torch.load(one_go / "checkpoints" / "last.ckpt", weights_only=False)
    b = torch.load(split / "checkpoints" / "last.ckpt", weights_only=False)
    assert a["ca12"]["frames"] == b["ca12"]["frames"] == 60
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key


def test_reward_scale_scales_what_the_learner_trains_on_and_not_the_reported_returns():
    cfg = load_config(
        "mappo", "vmas/navigation", ["env.num_envs=4", "collector.frames_per_batch=400", "algo.minibatch_size=400", "env.reward_scale=0.1"]
    )
    plain, scaled = make_env(cfg.env, 0), make_env(cfg.env, 0, training=True)
    start = capture_rng_state()  # VMAS draws resets from one process-wide random state
    actions = plain.rand_action(plain.reset())
    a = plain.step(actions.clone())
    restore_rng_state(start)
    b = scaled.step(scaled.reset().update(actions.select(("agents", "action"))))
    torch.testing.assert_close(b["next", "agents", "reward"], 0.1 * a["next", "agents", "reward"])
    torch.testing.assert_close(b["next", "agents", "episode_reward"], a["next", "agents", "episode_reward"])
