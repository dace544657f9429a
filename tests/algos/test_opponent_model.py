"""Opponent modelling (ca12/nets/opponent.py, `algo.opponent_model`) and the matrix games'
scripted, switching opponent (`env.opponent_strategies`)."""

from __future__ import annotations

import csv

import pytest
import torch
from conftest import resume_pair
from omegaconf import OmegaConf
from tensordict.nn import InteractionType, set_interaction_type
from torchrl.envs.utils import check_env_specs

from ca12.algos import algo_class
from ca12.envs import make_env, make_spec_env, matrix
from ca12.errors import UsageError
from ca12.fit import main
from ca12.run.config import load_config

RPS = [[[0, -1, 1], [1, 0, -1], [-1, 1, 0]], [[0, 1, -1], [-1, 0, 1], [1, -1, 0]]]
ROCK, PAPER, SCISSORS = 0, 1, 2
# PPO on rock-paper-scissors against a scripted opponent: 20 worlds x 10 plays per batch, tiny nets.
SMALL = [
    "logger=csv",
    "eval.every_n_iters=0",
    "env.num_envs=20",
    "collector.frames_per_batch=200",
    "algo.minibatch_size=100",
    "algo.num_epochs=4",
    "algo.lr=3e-3",
    "model.hidden_sizes=[32]",
    "critic_model.hidden_sizes=[32]",
    "algo.opponent_model=true",
]


def _scripted(strategies, **overrides):
    """RPS with a scripted player 1, built from an env section as the YAMLs compose it."""
    cfg = OmegaConf.create(
        {
            "family": "matrix",
            "task": "custom",
            "num_envs": 6,
            "max_steps": 10,
            "device": "cpu",
            "continuous_actions": False,
            "categorical_actions": True,
            "payoffs": RPS,
            "opponent_strategies": strategies,
        }
    )
    return matrix.make(OmegaConf.merge(cfg, overrides), 0)


def _play(env, learner: list[int]):
    """Roll out `env` with the learner's actions `learner` (one per play, every world); returns
    (the opponent's actions [B, T], the learner's rewards [B, T], the rollout)."""
    td, steps = env.reset(), []
    for action in learner:
        td["player_0", "action"] = torch.full((env.batch_size[0], 1), action)
        td = env.step(td)
        steps.append(td["next"].clone())
        td = td["next"]
    opponent = torch.stack([s["player_0", "opponent_action"][:, 0, 0] for s in steps], 1)
    reward = torch.stack([s["player_0", "reward"][:, 0, 0] for s in steps], 1)
    return opponent, reward, steps


# ---- the scripted opponent ------------------------------------------------------------------
def test_scripted_strategies_play_as_documented_and_the_env_writes_their_actions():
    learner = [ROCK, SCISSORS, SCISSORS, PAPER, ROCK]
    expected = {  # the history-dependent strategies play 0 first
        "cycle": [0, 1, 2, 0, 1],
        "copy": [0, ROCK, SCISSORS, SCISSORS, PAPER],  # the learner's previous move
        "counter": [0, PAPER, ROCK, ROCK, SCISSORS],  # what beats the learner's previous move
    }
    for name, moves in expected.items():
        env = _scripted([name])
        check_env_specs(env)
        assert env.base_env.group_map == {"player_0": ["player_0"]}
        opponent, reward, steps = _play(env, learner)
        assert opponent.tolist() == [moves] * 6, name
        assert torch.equal(reward, env.base_env.payoffs[0][torch.tensor(learner), torch.tensor(moves)].expand(6, -1))
        # The next observation shows the play just made: (learner one-hot | opponent one-hot).
        assert steps[1]["player_0", "observation"][0, 0, 3:6].argmax().item() == moves[1]
    opponent, _, _ = _play(_scripted([[0.0, 1.0, 0.0]]), learner)  # a fixed (here pure) strategy
    assert bool((opponent == PAPER).all())


def test_history_shows_the_last_k_joint_actions_newest_first():
    env = _scripted(["cycle"], history=3)
    assert env.base_env.obs_dim == 3 * 2 * 3 + 2 + 1
    _, _, steps = _play(env, [ROCK, PAPER])
    obs = steps[1]["player_0", "observation"][0, 0]  # after two plays: (paper, paper), (rock, rock), nothing
    assert obs[:6].tolist() == [0, 1, 0, 0, 1, 0] and obs[6:12].tolist() == [1, 0, 0, 1, 0, 0] and not obs[12:18].any()


def test_opponents_switch_between_episodes_and_every_period_plays():
    strategies = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]  # always rock / paper / scissors
    env = _scripted(strategies, num_envs=64, max_steps=4)
    first, _, _ = _play(env, [ROCK] * 4)
    second, _, _ = _play(env, [ROCK] * 4)
    assert bool((first == first[:, :1]).all()), "one strategy per episode"
    assert len(first[:, 0].unique()) == 3, "drawn per world"
    assert bool((first[:, 0] != second[:, 0]).any()), "drawn anew at each episode start"
    switching, _, _ = _play(_scripted(strategies, num_envs=64, max_steps=4, opponent_period=2), [ROCK] * 4)
    assert bool((switching[:, 0] == switching[:, 1]).all()) and bool((switching[:, 1] != switching[:, 2]).any())


def test_the_opponents_draws_are_seeded():
    a, _, _ = _play(_scripted([[0.4, 0.3, 0.3], "cycle"]), [ROCK] * 10)
    b, _, _ = _play(_scripted([[0.4, 0.3, 0.3], "cycle"]), [ROCK] * 10)
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"opponent_strategies": ["mirror"]}, "unknown opponent strategy 'mirror'"),
        ({"opponent_strategies": [[0.5, 0.5]]}, "must be cycle, copy, counter or 3 probabilities summing to 1"),
        ({"opponent_strategies": [[0.5, 0.6, 0.0]]}, "3 probabilities summing to 1"),
        ({"opponent_strategies": []}, "non-empty list"),
        ({"opponent_period": 0}, "env.opponent_period must be an integer >= 1"),
        ({"history": 0}, "env.history must be an integer >= 1"),
        ({"payoffs": [[[[1, 0], [0, 1]], [[0, 1], [1, 0]]]] * 3}, "two-player game; this game has 3 players"),
    ],
)
def test_bad_opponent_settings_are_refused_in_one_line(overrides, message):
    overrides = dict(overrides)
    with pytest.raises(UsageError, match=message) as info:
        _scripted(overrides.pop("opponent_strategies", ["cycle"]), **overrides)
    assert "\n" not in str(info.value)


# ---- the opponent model ---------------------------------------------------------------------
def _module(algo: str = "ppo", env: str = "matrix/rps5_switching", *extra: str):
    cfg = load_config(algo, env, ["env.num_envs=8", "algo.opponent_model=true", "model.hidden_sizes=[16]", *extra])
    return algo_class(algo)(cfg, make_spec_env(cfg.env, 0)), make_env(cfg.env, 0)


def _batch(module, env):
    """One collected batch [B, T] with advantages, as `training_step` sees it."""
    with torch.no_grad():
        batch = env.rollout(env.base_env.max_steps, policy=module.policy)
    return module.compute_advantage(batch)


def test_the_other_agents_are_teammates_other_groups_and_scripted_players():
    three = "env.payoffs=" + str([[[[1, 0], [0, 1]], [[0, 1], [1, 0]]]] * 3).replace(" ", "")
    module, env = _module("mappo", "matrix/custom", three)  # one group of 3 agents
    model = module.opponent_models["agents"]
    assert model.sizes == [2, 2] and model.others.tolist() == [[1, 2], [0, 2], [0, 1]]
    td = env.reset()
    td["agents", "action"] = torch.tensor([[0, 1, 1]]).expand(8, 3)
    assert model.targets(td)[0].tolist() == [[1, 1], [0, 1], [0, 1]]

    module, env = _module("ppo", "matrix/rock_paper_scissors", "env.group_per_player=true", "algo.groups=[player_1]")
    model = module.opponent_models["player_1"]  # player_0 is another group (acting at random here)
    assert model.sizes == [3] and model.others.tolist() == [[0]]

    module, env = _module()  # the scripted player of matrix/rps5_switching, from the env's entry
    model = module.opponent_models["player_0"]
    assert model.sizes == [5] and model.n_scripted == 1
    batch = _batch(module, env)
    assert torch.equal(model.targets(batch), batch["next", "player_0", "opponent_action"])


def test_the_policy_reads_the_prediction():
    module, env = _module()
    actor, model = module.actors["player_0"], module.opponent_models["player_0"]
    assert ("player_0", "opponent_probs") in actor.in_keys
    td = model(env.reset())
    probs = td["player_0", "opponent_probs"]  # [B, 1, 5], a distribution over the opponent's 5 moves
    assert probs.shape == (8, 1, 5) and torch.allclose(probs.sum(-1), torch.ones(8, 1))
    with set_interaction_type(InteractionType.DETERMINISTIC):
        logits = actor(td.clone())["player_0", "logits"]
        td["player_0", "opponent_probs"] = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0]).expand(8, 1, 5)
        assert not torch.allclose(actor(td.clone())["player_0", "logits"], logits), "the prediction is an input"
    assert td["player_0", "observation"].shape[-1] == env.base_env.obs_dim, "the env's observation is left as it was"


def test_execution_is_decentralised():
    """Neither the opponent model nor the actor reads what the others play: their outputs are the
    same whatever the other group's action and the scripted opponent's action entry hold."""
    for env_name, extra, other in (
        ("matrix/rock_paper_scissors", ["env.group_per_player=true", "algo.groups=[player_0]"], ("player_1", "action")),
        ("matrix/rps5_switching", [], ("player_0", "opponent_action")),
    ):
        module, env = _module("ppo", env_name, *extra)
        acting = [module.opponent_models["player_0"], module.actors["player_0"]]
        assert not any(other in m.in_keys for m in acting)
        observed, outputs = env.rand_step(env.reset())["next"], []  # a mid-episode observation
        for value in (0, 2):
            td = observed.clone()
            td.set(other, torch.full((8, 1, 1) if other[-1] == "opponent_action" else (8, 1), value))
            with set_interaction_type(InteractionType.DETERMINISTIC):
                for m in acting:
                    td = m(td)
            outputs.append(td.select(("player_0", "opponent_probs"), ("player_0", "logits"), ("player_0", "action")))
        assert (outputs[0] == outputs[1]).all(), env_name


def test_the_opponent_loss_trains_the_opponent_model_only_and_the_policy_loss_not_it():
    module, env = _module()
    minibatch = _batch(module, env).reshape(-1)
    total, terms = module.loss(minibatch)
    assert terms["loss_opponent"].ndim == 0 and torch.isclose(
        terms["loss_opponent"], module.cfg.opponent_model_coeff * terms["opponent_cross_entropy"]
    )
    terms["loss_opponent"].backward(retain_graph=True)
    model, actor = module.opponent_models["player_0"], module.actors["player_0"]
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters())
    assert all(p.grad is None for p in actor.parameters()) and all(p.grad is None for p in module.critics.parameters())
    module.zero_grad(set_to_none=True)
    terms["loss_objective"].backward()
    assert all(p.grad is None for p in model.parameters()), "the policy gradient does not reach the opponent model"
    assert any(p.grad is not None for p in actor.parameters())
    optimised = {id(p) for group in module.configure_optimizers().param_groups for p in group["params"]}
    assert {id(p) for p in model.parameters()} <= optimised


def _column(run_dir, key: str) -> list[float]:
    with open(run_dir / "metrics.csv") as f:
        return [float(row[key]) for row in csv.DictReader(f) if row.get(key)]


def test_the_opponent_model_predicts_a_cycling_opponent_well_above_chance(tmp_path):
    run_dir = tmp_path / "cycle"
    assert (
        main(
            [
                "--algo",
                "ppo",
                "--env",
                "matrix/rock_paper_scissors",
                "--run-dir",
                str(run_dir),
                *SMALL,
                "env.opponent_strategies=[cycle]",
                "collector.total_frames=3000",
            ]
        )
        == 0
    )
    accuracy = _column(run_dir, "train/opponent_accuracy")
    assert len(accuracy) == 15 and accuracy[-1] > 0.9 and accuracy[0] < 0.75, accuracy  # chance: 1/3
    cross_entropy = _column(run_dir, "train/opponent_cross_entropy")
    assert cross_entropy[-1] < 0.5 * cross_entropy[0], cross_entropy
    assert _column(run_dir, "rollout/episode_reward_mean")[-1] > 5, "countering the predicted move wins (10 plays)"


def test_resume_is_bit_for_bit_with_a_recurrent_opponent_model(tmp_path):
    args = ["--env", "matrix/rps5_switching", *SMALL, "model=gru", "model.hidden_size=16", "env.history=1", "env.opponent_period=5"]
    a, b, one_go, split = resume_pair(tmp_path, "ppo", args, total=800)
    assert any("opponent_models" in k for k in a)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for column in ("train/opponent_accuracy", "train/opponent_cross_entropy", "rollout/episode_reward_mean"):
        assert _column(one_go, column) == _column(split, column), column


@pytest.mark.parametrize(
    "env, extra, message",
    [
        ("memory/cue", ["env.n_agents=1"], "needs other agents to model: group 'agents' is the env's only agent"),
        ("generic/coop", [], "predicts discrete actions; group 'agents' acts continuously"),
        (
            "matrix/rock_paper_scissors",
            ["env.group_per_player=true", "algo.groups=[player_0]", "algo.league.opponents=uniform"],
            "cannot play a league",
        ),
    ],
)
def test_settings_the_opponent_model_cannot_serve_are_refused_in_one_line(env, extra, message, tmp_path, capsys):
    assert main(["--algo", "mappo", "--env", env, "--run-dir", str(tmp_path / "r"), "logger=none", "algo.opponent_model=true", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ca12.fit: error: algo.opponent_model=true ") and message in err[0], err
