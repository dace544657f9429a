"""Turn-based games with action masks (#35 item 3): PettingZoo's tic-tac-toe and connect four through
TorchRL's AEC wrapper, legal moves only for every discrete policy, the classical players
(ca12/selfplay/board_games.py) and `python -m ca12.evaluate RUN --opponent NAME`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY

import ca12
from ca12.algos import algo_class
from ca12.envs import make_env
from ca12.envs.layout import AgentLayout
from ca12.errors import UsageError
from ca12.nets.policies import FixedRandomPolicy
from ca12.run.config import load_config
from ca12.selfplay.board_games import GAMES


def play(game, first, second, rng) -> int:
    """One game between two players (board -> move); +1 the first won, -1 the second, 0 a draw."""
    board, players, turn = np.zeros((game.rows, game.cols), np.int8), (first, second), 0
    while game.legal(board):
        board = -game.play(board, players[turn % 2](board))  # seen from the next mover
        turn += 1
        if game.wins(board, -1):
            return 1 if turn % 2 else -1
    return 0


def test_the_perfect_player_draws_itself_and_never_loses_to_random():
    game, rng = GAMES["tictactoe"], np.random.default_rng(0)
    perfect = lambda board: game.minimax_move(board, 9, rng)  # noqa: E731
    rand = lambda board: int(rng.choice(game.legal(board)))  # noqa: E731
    assert [play(game, perfect, perfect, rng) for _ in range(4)] == [0, 0, 0, 0]
    assert min(play(game, perfect, rand, rng) for _ in range(40)) >= 0
    assert max(play(game, rand, perfect, rng) for _ in range(40)) <= 0


def test_minimax_takes_a_win_and_blocks_a_loss_in_connect_four():
    game, rng = GAMES["connect_four"], np.random.default_rng(0)
    board = np.zeros((6, 7), np.int8)
    board[5, 0:3] = 1  # three of mine on the bottom row: column 3 wins
    board[4, 0:3] = -1
    assert game.minimax_move(board, 2, rng) == 3
    board = np.zeros((6, 7), np.int8)
    board[5, 4:7] = -1  # three of theirs: column 3 must be blocked
    board[4, 4], board[5, 0] = 1, 1
    assert game.minimax_move(board, 2, rng) == 3


@pytest.mark.parametrize("task, squares", [("tictactoe", 9), ("connect_four", 7)])
def test_a_board_game_is_one_group_of_two_seats_that_move_in_turn(task, squares):
    env = ca12.make_env(f"pettingzoo/{task}", num_envs=2)
    group = AgentLayout.from_env(env).groups["player"]
    assert (group.n_agents, group.n_actions, group.masked, group.action_masked) == (2, squares, True, True)
    rollout = env.rollout(6, policy=FixedRandomPolicy(group), break_when_any_done=False)
    to_move = rollout["player", "mask"]  # [2, 6, 2]: exactly one seat moves, alternating
    assert (to_move.sum(-1) == 1).all() and (to_move[:, 1:, 0] != to_move[:, :-1, 0]).all()


def _legal_moves_only(policy, env, steps: int) -> bool:
    rollout = env.rollout(steps, policy=policy, break_when_any_done=False)
    to_move, legal, action = rollout["player", "mask"], rollout["player", "action_mask"], rollout["player", "action"]
    chosen = legal.gather(-1, action.unsqueeze(-1)).squeeze(-1)  # [W, T, 2]
    return bool(chosen[to_move].all())


@pytest.mark.parametrize("algo", ["mappo", "iql", "qmix"])
def test_every_discrete_policy_plays_legal_moves_only(algo):
    cfg = load_config(algo, "pettingzoo/tictactoe", ["env.num_envs=8", "logger=none"])
    env = make_env(cfg.env, seed=0)
    module = algo_class(algo)(cfg, env)
    torch.manual_seed(0)
    assert _legal_moves_only(module.policy, env, 40)
    group = AgentLayout.from_env(env).groups["player"]
    assert _legal_moves_only(FixedRandomPolicy(group), env, 40)


def test_evaluate_plays_an_opponent_from_both_seats(tmp_path, capsys):
    from ca12.evaluate import main as evaluate
    from ca12.fit import main as fit

    run = tmp_path / "run"
    assert fit(["--algo", "mappo", "--env", "pettingzoo/tictactoe", "--run-dir", str(run), *TINY, "env.max_steps=9", "algo.minibatch_size=50"]) == 0
    capsys.readouterr()
    assert evaluate([str(run), "--opponent", "minimax:1", "--episodes", "6"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("6 games against minimax:1") and [line.split()[0] for line in lines[1:]] == ["all", "moving", "moving"]
    assert evaluate([str(run), "--opponent", "perfect", "--episodes", "4", "--json"]) == 0
    assert '"second/loss"' in capsys.readouterr().out
    for argv, says in (
        ([str(run), "--opponent", "minimax:0"], "unknown --opponent 'minimax:0'"),
        (["--baseline", "fixed", "--env", "pettingzoo/tictactoe", "--opponent", "random"], "--opponent plays a trained run's policy"),
    ):
        assert evaluate(argv) == 2
        assert says in capsys.readouterr().err


def test_an_opponent_for_a_run_that_is_no_board_game_is_one_line(tmp_path, capsys):
    from ca12.evaluate import main as evaluate
    from ca12.fit import main as fit

    run = tmp_path / "run"
    assert fit(["--algo", "mappo", "--run-dir", str(run), *TINY]) == 0
    capsys.readouterr()
    assert evaluate([str(run), "--opponent", "random"]) == 2
    assert "--opponent plays the board games (pettingzoo/tictactoe, pettingzoo/connect_four), not vmas/navigation" in capsys.readouterr().err


def test_a_board_game_steps_its_worlds_serially_or_in_processes():
    with pytest.raises(UsageError, match="vectorization"):  # the one-loop batch of MPE2's family has no masks
        ca12.make_env("pettingzoo/tictactoe", vectorization="batched")


def test_a_seat_waiting_for_its_turn_trains_the_critic_not_the_actor():
    """The seat that does not move at a step: its value is trained there (it has one: the game
    goes on), its policy is not (it chose nothing)."""
    cfg = load_config("mappo", "pettingzoo/tictactoe", ["env.num_envs=4", "logger=none"])
    env = make_env(cfg.env, seed=0)
    module = algo_class("mappo")(cfg, env)
    with torch.no_grad():
        batch = env.rollout(9, policy=module.policy, break_when_any_done=False)
    module.compute_advantage(batch)
    waiting = ~batch["player", "mask"] & ~batch["player", "done"].squeeze(-1)  # [4, 9, 2]

    def total(changed_key: str) -> torch.Tensor:
        changed = batch.clone()
        entry = changed["player", changed_key]
        entry[waiting] = entry[waiting] + 3.0
        torch.manual_seed(0)
        return module.loss(changed.reshape(-1))[0]

    torch.manual_seed(0)
    before = module.loss(batch.clone().reshape(-1))[0]
    assert total("advantage") == before and total("action_log_prob") == before
    assert total("value_target") != before
