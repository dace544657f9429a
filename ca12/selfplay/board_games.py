"""The rules of the turn-based board games ca12 trains on (`pettingzoo/tictactoe`,
`pettingzoo/connect_four`) and the classical players a trained agent is measured against:
`random` (a uniform legal move), `minimax:N` (negamax searching N plies, alpha-beta, a
threat-counting heuristic at the horizon, ties broken at random) and `perfect` (tic-tac-toe
searched to the end: it never loses).

A board is read from the observation of the seat to move, PettingZoo's planes ("mine" then
"theirs", [rows, cols, 2], flattened by ca12): +1 for the mover's pieces, -1 for the other's.
Tic-tac-toe's action is the square (3 x row + column), connect four's the column (the piece
falls to the lowest free row). Written by hand: PettingZoo ships the games, not players for
them, and neither TorchRL nor OpenSpiel's Python-only parts run on these observations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

WIN = 1_000.0  # a won position's value; the heuristic stays far below it


@dataclass(frozen=True)
class BoardGame:
    """`connect` in a row on a `rows` x `cols` board; `gravity`: pieces fall (connect four)."""

    rows: int
    cols: int
    connect: int
    gravity: bool
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def board(self, observation) -> np.ndarray:
        """[rows, cols] int8 board from a seat's flat observation: +1 its pieces, -1 the other's."""
        planes = np.asarray(observation).reshape(self.rows, self.cols, 2)
        return (planes[..., 0] - planes[..., 1]).astype(np.int8)

    @cached_property
    def lines(self) -> np.ndarray:
        """Every line of `connect` cells, as flat indices [n_lines, connect]."""
        found = []
        for r in range(self.rows):
            for c in range(self.cols):
                for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
                    cells = [(r + k * dr, c + k * dc) for k in range(self.connect)]
                    if all(0 <= rr < self.rows and 0 <= cc < self.cols for rr, cc in cells):
                        found.append([rr * self.cols + cc for rr, cc in cells])
        return np.array(found)

    def legal(self, board: np.ndarray) -> list[int]:
        if self.gravity:
            return [c for c in range(self.cols) if board[0, c] == 0]
        return [int(i) for i in np.flatnonzero(board.reshape(-1) == 0)]

    def play(self, board: np.ndarray, action: int, who: int = 1) -> np.ndarray:
        """The board after `who` (+1 / -1) plays `action`."""
        out = board.copy()
        if self.gravity:
            row = max(r for r in range(self.rows) if out[r, action] == 0)
            out[row, action] = who
        else:
            out.reshape(-1)[action] = who
        return out

    def wins(self, board: np.ndarray, who: int) -> bool:
        return bool((board.reshape(-1)[self.lines] == who).all(1).any())

    def heuristic(self, board: np.ndarray) -> float:
        """Open lines weighted by how full they are, the mover's minus the other's (below WIN)."""
        cells = board.reshape(-1)[self.lines]
        mine, theirs = (cells == 1).sum(1), (cells == -1).sum(1)
        weights = np.array([0.0, 0.0, 1.0, 5.0, 25.0, 125.0][: self.connect + 1])
        return float(weights[mine[theirs == 0]].sum() - weights[theirs[mine == 0]].sum())

    def negamax(self, board: np.ndarray, depth: int, alpha: float = -math.inf, beta: float = math.inf) -> float:
        """Value of `board` for the seat to move (+1 its pieces), searching `depth` plies; a win
        sooner is worth more. A search that reaches the end of the game (depth at least the empty
        cells) is exact and cached, without pruning (tic-tac-toe's few thousand states); a shorter
        one prunes with alpha-beta."""
        if self.wins(board, -1):  # the other seat's last move won
            return -WIN - depth
        legal = self.legal(board)
        if not legal:
            return 0.0
        if depth == 0:
            return self.heuristic(board)
        empty = int((board == 0).sum())
        if depth >= empty:
            key = board.tobytes()
            if key not in self._cache:
                self._cache[key] = max(-self.negamax(-self.play(board, action), empty - 1) for action in legal)
            return self._cache[key]
        best = -math.inf
        for action in legal:
            best = max(best, -self.negamax(-self.play(board, action), depth - 1, -beta, -alpha))
            alpha = max(alpha, best)
            if alpha >= beta:
                break
        return best

    def minimax_move(self, board: np.ndarray, depth: int, rng: np.random.Generator) -> int:
        """A best move searching `depth` plies (this move and depth - 1 replies), ties at random."""
        legal = self.legal(board)
        values = np.array([-self.negamax(-self.play(board, action), depth - 1) for action in legal])
        best = np.flatnonzero(values >= values.max() - 1e-9)
        return legal[int(rng.choice(best))]


GAMES = {"tictactoe": BoardGame(3, 3, 3, gravity=False), "connect_four": BoardGame(6, 7, 4, gravity=True)}
