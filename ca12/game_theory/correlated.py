"""Correlated (Aumann 1974) and coarse-correlated (Hannan 1957; Moulin & Vial 1978) equilibria.

A distribution mu over pure profiles is a correlated equilibrium if no player, told only their
own recommendation a_i, gains by switching to a_i':

    sum_{a_-i} mu(a_i, a_-i) [u_i(a_i', a_-i) - u_i(a_i, a_-i)] <= 0   for all i, a_i, a_i'.

It is coarse-correlated if no player gains by committing to a_i' before seeing the
recommendation: sum_a mu(a) [u_i(a_i', a_-i) - u_i(a)] <= 0 for all i, a_i'.
Both sets are polytopes, so an objective is optimised exactly by one LP (HiGHS).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from ca12.game_theory.games import NormalFormGame

OBJECTIVES = ("welfare", "min_payoff")


@dataclass(frozen=True)
class CorrelatedEquilibrium:
    """A distribution over pure profiles (shape ``n_actions``) and the expected payoffs."""

    distribution: np.ndarray
    payoffs: np.ndarray

    @property
    def welfare(self) -> float:
        return float(self.payoffs.sum())


def _deviation_gains(game: NormalFormGame, player: int) -> np.ndarray:
    """Array (n_i, n_i, *n_actions): gain of switching a_i -> a_i' at each profile, masked.

    Entry [a, a', profile] is u_i(a', a_-i) - u_i(profile) if the profile's own action is a,
    else 0, so summing against mu gives the CE constraint for the pair (a, a').
    """
    u = np.moveaxis(game.payoffs[player], player, 0)  # (n_i, rest...)
    n_i = u.shape[0]
    gains = np.zeros((n_i, n_i) + u.shape)
    for a in range(n_i):
        for dev in range(n_i):
            gains[a, dev, a] = u[dev] - u[a]
    return np.moveaxis(gains, 2, 2 + player)


def incentive_constraints(game: NormalFormGame, coarse: bool = False) -> np.ndarray:
    """Rows G with G @ vec(mu) <= 0 exactly for (coarse-)correlated equilibria."""
    rows = []
    for i in range(game.n_players):
        gains = _deviation_gains(game, i)
        if coarse:
            gains = gains.sum(axis=0)  # commit to a_i' whatever is recommended
            rows.append(gains.reshape(gains.shape[0], -1))
        else:
            n_i = gains.shape[0]
            keep = [(a, d) for a in range(n_i) for d in range(n_i) if a != d]
            rows.append(np.stack([gains[a, d].ravel() for a, d in keep]))
    return np.vstack(rows)


def correlated_equilibrium(game: NormalFormGame, objective: str = "welfare", coarse: bool = False) -> CorrelatedEquilibrium:
    """An optimal correlated (or coarse-correlated) equilibrium by linear programming.

    Args:
        game: any N-player game.
        objective: ``"welfare"`` maximises the sum of expected payoffs; ``"min_payoff"``
            maximises the smallest player's expected payoff (egalitarian).
        coarse: use the coarse-correlated constraints (a superset of CE).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    k = int(np.prod(game.n_actions))
    utilities = game.payoffs.reshape(game.n_players, k)
    g = incentive_constraints(game, coarse=coarse)
    scale = max(1.0, float(np.abs(game.payoffs).max()))
    if objective == "welfare":
        c = -utilities.sum(axis=0) / scale
        a_ub, b_ub = g / scale, np.zeros(len(g))
        a_eq, bounds = np.ones((1, k)), [(0, None)] * k
    else:  # variables (mu, t): max t s.t. t <= u_i . mu
        c = np.zeros(k + 1)
        c[-1] = -1.0
        a_ub = np.vstack([np.hstack([g, np.zeros((len(g), 1))]), np.hstack([-utilities, np.ones((game.n_players, 1))])]) / scale
        b_ub = np.zeros(len(a_ub))
        a_eq, bounds = np.hstack([np.ones((1, k)), [[0.0]]]), [(0, None)] * k + [(None, None)]
    res = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=[1.0], bounds=bounds, method="highs")
    if res.status != 0:
        raise ValueError(f"correlated-equilibrium LP failed: {res.message}")
    mu = np.clip(res.x[:k], 0, None)
    mu /= mu.sum()
    return CorrelatedEquilibrium(mu.reshape(game.n_actions), utilities @ mu)


def is_correlated_equilibrium(game: NormalFormGame, distribution: np.ndarray, coarse: bool = False, tol: float | None = None) -> bool:
    """Check the (coarse-)correlated incentive constraints for a given distribution."""
    mu = np.asarray(distribution, dtype=float)
    if mu.shape != game.n_actions or np.any(mu < -1e-12) or abs(mu.sum() - 1) > 1e-6:
        raise ValueError(f"distribution must be a probability tensor of shape {game.n_actions}")
    eps = game.tol if tol is None else tol
    return bool(np.all(incentive_constraints(game, coarse) @ mu.ravel() <= eps))
