"""Dominated strategies and iterated elimination of strictly dominated strategies (IESDS).

Pure domination compares two pure actions against every opponent profile. Mixed domination
(``mixed=True``) asks, by a linear program, whether some mixture of the other actions beats an
action against every opponent profile; it finds strictly more dominated actions (e.g. the middle
action of [[3, 0], [1, 1], [0, 3]] is dominated by (1/2, 0, 1/2) but by no pure action).
Strict IESDS is order-independent and never removes an action used in any Nash equilibrium
(Osborne & Rubinstein 1994, Ch. 4), which is why the equilibrium solvers may run on the reduced game.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from ca12.game_theory.games import NormalFormGame


def _player_matrix(game: NormalFormGame, player: int, alive: list[list[int]]) -> np.ndarray:
    """Payoffs of ``player`` restricted to ``alive``: rows = own actions, cols = opponent profiles."""
    sub = game.restrict(alive).payoffs[player]
    return np.moveaxis(sub, player, 0).reshape(len(alive[player]), -1)


def _pure_dominated(matrix: np.ndarray, tol: float, strict: bool) -> list[int]:
    dominated = []
    for a in range(matrix.shape[0]):
        for b in range(matrix.shape[0]):
            if a == b:
                continue
            diff = matrix[b] - matrix[a]
            if strict and np.all(diff > tol):
                dominated.append(a)
                break
            if not strict and np.all(diff >= -tol) and np.any(diff > tol):
                dominated.append(a)
                break
    return dominated


def _mixed_dominated(matrix: np.ndarray, tol: float) -> list[int]:
    """Strict domination by a mixture: max eps s.t. sum_b s_b M[b] >= M[a] + eps, s in simplex."""
    dominated = []
    k, m = matrix.shape
    for a in range(k):
        others = [b for b in range(k) if b != a]
        if not others:
            continue
        c = np.zeros(len(others) + 1)
        c[-1] = -1.0
        a_ub = np.hstack([-matrix[others].T, np.ones((m, 1))])
        b_ub = -matrix[a]
        a_eq = np.hstack([np.ones((1, len(others))), np.zeros((1, 1))])
        bounds = [(0, None)] * len(others) + [(None, None)]
        res = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=[1.0], bounds=bounds, method="highs")
        if res.status == 0 and -res.fun > tol:
            dominated.append(a)
    return dominated


def dominated_actions(game: NormalFormGame, player: int, strict: bool = True, mixed: bool = False) -> list[int]:
    """Actions of ``player`` dominated by another action (or by a mixture if ``mixed``).

    Args:
        game: the game.
        player: whose actions to test.
        strict: strict domination (better against every profile); otherwise weak.
        mixed: also test domination by mixed strategies (strict only, one LP per action).
    """
    if not 0 <= player < game.n_players:
        raise ValueError(f"player {player} out of range for {game.n_players} players")
    if mixed and not strict:
        raise ValueError("mixed domination is only implemented for strict domination")
    alive = [list(range(n)) for n in game.n_actions]
    matrix = _player_matrix(game, player, alive)
    found = set(_pure_dominated(matrix, game.tol, strict))
    if mixed:
        found |= set(_mixed_dominated(matrix, game.tol))
    return sorted(found)


@dataclass(frozen=True)
class EliminationResult:
    """Outcome of IESDS: surviving actions (original indices), the reduced game, removal order."""

    surviving: list[list[int]]
    reduced: NormalFormGame
    removed: list[tuple[int, int]]


def iterated_elimination(game: NormalFormGame, mixed: bool = False) -> EliminationResult:
    """Iteratively remove strictly dominated actions until none is left.

    Args:
        game: the game.
        mixed: also remove actions strictly dominated by mixtures (more elimination).

    Returns:
        The surviving original action indices per player, the reduced game and the
        ``(player, action)`` pairs removed in order.
    """
    alive = [list(range(n)) for n in game.n_actions]
    removed: list[tuple[int, int]] = []
    changed = True
    while changed:
        changed = False
        for player in range(game.n_players):
            if len(alive[player]) == 1:
                continue
            matrix = _player_matrix(game, player, alive)
            local = set(_pure_dominated(matrix, game.tol, strict=True))
            if mixed:
                local |= set(_mixed_dominated(matrix, game.tol))
            if local:
                removed += [(player, alive[player][a]) for a in sorted(local)]
                alive[player] = [a for i, a in enumerate(alive[player]) if i not in local]
                changed = True
    return EliminationResult(alive, game.restrict(alive), removed)
