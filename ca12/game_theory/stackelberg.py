"""Strong Stackelberg equilibrium of a bimatrix game by multiple LPs (Conitzer & Sandholm 2006).

The leader commits to a mixed strategy p; the follower best-responds, breaking ties in the
leader's favour (the *strong* Stackelberg equilibrium). For each follower action j one LP

    max_p  p^T A[:, j]   s.t.  p^T B[:, j] >= p^T B[:, j']  for all j',  1^T p = 1, p >= 0

finds the leader's best commitment that makes j a follower best response; the best of the
n LPs is the equilibrium. Commitment is never worse for the leader than any Nash equilibrium
(von Stengel & Zamir 2010).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from ca12.game_theory.games import NormalFormGame


@dataclass(frozen=True)
class StackelbergEquilibrium:
    """Leader's commitment, follower's (tie-broken) best response and both payoffs."""

    leader: int
    strategy: np.ndarray
    follower_action: int
    payoffs: np.ndarray  # ordered (player 0, player 1)


def _commitment_lp(a: np.ndarray, b: np.ndarray, j: int) -> tuple[float, np.ndarray] | None:
    m, n = a.shape
    others = [k for k in range(n) if k != j]
    a_ub = (b[:, others] - b[:, [j]]).T if others else None
    b_ub = np.zeros(len(others)) if others else None
    res = linprog(
        -a[:, j],
        A_ub=a_ub,
        b_ub=b_ub,
        A_eq=np.ones((1, m)),
        b_eq=[1.0],
        bounds=[(0, None)] * m,
        method="highs",
    )
    if res.status != 0:
        return None  # j is never a follower best response
    p = np.clip(res.x, 0, None)
    return float(-res.fun), p / p.sum()


def stackelberg(game: NormalFormGame, leader: int = 0) -> StackelbergEquilibrium:
    """Strong Stackelberg equilibrium with the given leader (0 = row, 1 = column).

    Ties between follower actions yielding the same leader value are broken towards the
    lower follower index, so the result is deterministic.
    """
    if leader not in (0, 1):
        raise ValueError(f"leader must be 0 or 1, got {leader}")
    view = game if leader == 0 else game.swap_players()
    a, b = view.bimatrix
    best: tuple[float, int, np.ndarray] | None = None
    for j in range(a.shape[1]):
        solved = _commitment_lp(a, b, j)
        if solved is not None and (best is None or solved[0] > best[0] + game.tol):
            best = (solved[0], j, solved[1])
    if best is None:
        raise ValueError(f"no follower action is inducible in game {game.name!r}")
    _, j, p = best
    leader_pay, follower_pay = float(p @ a[:, j]), float(p @ b[:, j])
    pays = [leader_pay, follower_pay] if leader == 0 else [follower_pay, leader_pay]
    return StackelbergEquilibrium(leader, p, j, np.array(pays))
