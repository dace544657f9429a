"""Matches of a trained turn-based policy against a classical player (`python -m ca12.evaluate RUN
--opponent random|minimax:N|perfect`): in world i the learner plays seat i mod 2 (half the games
moving first) and the opponent (ca12/selfplay/board_games.py) the other; each world's first game
counts, by the learner seat's return at its end: +1 a win, 0 a draw, -1 a loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from ca12.data.evaluator import eval_mode
from ca12.errors import UsageError
from ca12.selfplay.board_games import BoardGame

OPPONENTS = "random, minimax:N (N plies) or perfect (tic-tac-toe only)"


def opponent_player(name: str, game: BoardGame, task: str, rng: np.random.Generator) -> Callable[[np.ndarray], int]:
    """board -> move of the classical player `name`; refused in one line when unknown."""
    kind, _, depth = name.partition(":")
    if kind == "random" and not depth:
        return lambda board: int(rng.choice(game.legal(board)))
    if kind == "minimax" and depth.isdigit() and int(depth) > 0:
        return lambda board: game.minimax_move(board, int(depth), rng)
    if kind == "perfect" and not depth:
        if task != "tictactoe":
            raise UsageError(f"--opponent perfect searches a game to its end: tic-tac-toe only, not {task} (use minimax:N)")
        return lambda board: game.minimax_move(board, game.rows * game.cols, rng)
    raise UsageError(f"unknown --opponent {name!r}: choose {OPPONENTS}")


class Match(TensorDictModuleBase):
    """The learner's `policy` in seat `learner_seats[i]` of world i of the group `group` (two
    seats), the `opponent` player in the other seat, on its turns ((group, "mask"))."""

    def __init__(self, policy: TensorDictModuleBase, group: str, game: BoardGame, opponent: Callable, learner_seats: torch.Tensor):
        super().__init__()
        self.policy, self.group, self.game, self.opponent = policy, group, game, opponent
        self.learner_seats = learner_seats
        self.in_keys, self.out_keys = [*policy.in_keys], [(group, "action")]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        tensordict = self.policy(tensordict)
        observation, to_move = tensordict.get((self.group, "observation")), tensordict.get((self.group, "mask"))
        action = tensordict.get((self.group, "action")).clone()
        for world, learner in enumerate(self.learner_seats.tolist()):
            seat = 1 - learner
            if to_move[world, seat]:
                action[world, seat] = self.opponent(self.game.board(observation[world, seat].cpu().numpy()))
        tensordict.set((self.group, "action"), action)
        return tensordict


@dataclass
class MatchResult:
    opponent: str
    games: int
    outcomes: dict[str, tuple[float, float, float]]  # "all" / "first" / "second" -> (win, draw, loss) rates

    def metrics(self) -> dict[str, float]:
        return {f"{seat}/{kind}": rate for seat, rates in self.outcomes.items() for kind, rate in zip(("win", "draw", "loss"), rates)}


@torch.no_grad()
def play_matches(
    policy: TensorDictModuleBase, env: EnvBase, group: str, game: BoardGame, opponent: Callable, name: str, max_steps: int
) -> MatchResult:
    """One game in each of `env`'s worlds (learner first in the even ones), acting with the
    policy's mode in eval mode; the rates over all games and by the learner's seat."""
    worlds = env.batch_size[0]
    seats = torch.arange(worlds) % 2
    with eval_mode(policy), set_exploration_type(ExplorationType.DETERMINISTIC):
        rollout = env.rollout(max_steps, policy=Match(policy, group, game, opponent, seats), break_when_any_done=False)
    done = rollout["next", "done"].squeeze(-1)  # [W, T]
    if not done.any(-1).all():
        raise UsageError(f"a game lasted more than env.max_steps={max_steps} moves")
    first_end = done.long().argmax(-1)  # each world's first game's last step
    returns = rollout["next", group, "episode_reward"][torch.arange(worlds), first_end].squeeze(-1)  # [W, 2]
    learner = returns[torch.arange(worlds), seats]
    outcomes = {}
    for label, chosen in (("all", slice(None)), ("first", seats == 0), ("second", seats == 1)):
        score = learner[chosen]
        outcomes[label] = tuple(float(x) for x in ((score > 0).float().mean(), (score == 0).float().mean(), (score < 0).float().mean()))
    return MatchResult(name, worlds, outcomes)
