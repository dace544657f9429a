"""Zero-sum games: value and maximin strategies by linear programming (von Neumann 1928).

The row player's maximin strategy solves max v s.t. A^T p >= v 1, 1^T p = 1, p >= 0
(Dantzig 1951 reduction); the column player's minimax strategy is the same LP for -A^T.
Solved with scipy's HiGHS backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linprog

from ca12.game_theory.games import NormalFormGame, to_array


@dataclass(frozen=True)
class ZeroSumSolution:
    """Value of the game for the row player and optimal (maximin / minimax) strategies."""

    value: float
    row_strategy: np.ndarray
    column_strategy: np.ndarray


def maximin(matrix: Any) -> tuple[float, np.ndarray]:
    """Maximin value and strategy of the row player for the payoff matrix ``matrix``.

    This is also the security level of the row player in any (not necessarily zero-sum) game.
    """
    a = to_array(matrix)
    if a.ndim != 2 or 0 in a.shape:
        raise ValueError(f"need a non-empty payoff matrix, got shape {a.shape}")
    m, n = a.shape
    c = np.zeros(m + 1)
    c[-1] = -1.0
    a_ub = np.hstack([-a.T, np.ones((n, 1))])
    a_eq = np.hstack([np.ones((1, m)), np.zeros((1, 1))])
    bounds = [(0, None)] * m + [(None, None)]
    res = linprog(c, A_ub=a_ub, b_ub=np.zeros(n), A_eq=a_eq, b_eq=[1.0], bounds=bounds, method="highs")
    if res.status != 0:
        raise ValueError(f"maximin LP failed: {res.message}")
    p = np.clip(res.x[:m], 0, None)
    return float(res.x[-1]) + 0.0, p / p.sum()


def solve_zero_sum(game: NormalFormGame) -> ZeroSumSolution:
    """Value and optimal strategies of a two-player zero-sum (or constant-sum) game.

    Raises:
        ValueError: if the game is not two-player constant-sum.
    """
    a, _ = game.bimatrix
    if not game.is_constant_sum():
        raise ValueError(f"game {game.name!r} is not zero-sum or constant-sum")
    value, p = maximin(a)
    _, q = maximin(-a.T)
    return ZeroSumSolution(value=value, row_strategy=p, column_strategy=q)
