"""Efficiency: Pareto optimality, social welfare, price of anarchy and price of stability.

The price of anarchy (Koutsoupias & Papadimitriou 1999) is optimal welfare divided by the worst
equilibrium welfare; the price of stability (Anshelevich et al. 2004) divides by the best one.
Both are defined for positive welfare (utilities, not costs).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ca12.game_theory.enumeration import vertex_enumeration
from ca12.game_theory.equilibria import pure_nash_equilibria
from ca12.game_theory.games import NormalFormGame, to_array


def pareto_mask(points: Any, tol: float = 1e-9) -> np.ndarray:
    """Boolean mask of points not Pareto-dominated (>= everywhere, > somewhere) by another.

    Duplicated points are all kept; ``tol`` is relative to the largest absolute coordinate.
    """
    pts = to_array(points)
    if pts.ndim != 2:
        raise ValueError(f"points must be a 2-D array (n_points, n_players), got {pts.shape}")
    eps = tol * max(1.0, float(np.abs(pts).max(initial=0.0)))
    geq = np.all(pts[:, None, :] >= pts[None, :, :] - eps, axis=-1)  # [j, i]: j >= i
    gt = np.any(pts[:, None, :] > pts[None, :, :] + eps, axis=-1)
    dominated = np.any(geq & gt, axis=0)
    return ~dominated


def pareto_front(points: Any, tol: float = 1e-9) -> np.ndarray:
    """The distinct Pareto-optimal points, sorted by the first coordinate (descending)."""
    pts = to_array(points)
    front = np.unique(np.round(pts[pareto_mask(pts, tol)], 12), axis=0)
    return front[np.lexsort(front.T[::-1])][::-1]


def pareto_optimal_profiles(game: NormalFormGame) -> list[tuple[int, ...]]:
    """Pure profiles whose payoff vector no other pure profile Pareto-dominates."""
    profiles = game.profiles()
    points = np.array([game.payoff(p) for p in profiles])
    mask = pareto_mask(points, tol=1e-9)
    return [p for p, keep in zip(profiles, mask) if keep]


def is_pareto_dominated(game: NormalFormGame, profile: tuple[int, ...]) -> bool:
    """True if some pure profile gives everyone at least as much and someone more."""
    return tuple(profile) not in set(pareto_optimal_profiles(game))


def mixed_payoff_profiles(game: NormalFormGame, n_samples: int = 2000, seed: int = 0) -> np.ndarray:
    """Expected payoffs of pure profiles plus ``n_samples`` random independent mixed profiles.

    The set of payoff profiles under independent mixing is generally not convex; sampling
    (Dirichlet(1) per player, seeded) approximates it for plotting its Pareto front.
    """
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")
    rng = np.random.default_rng(seed)
    points = [game.payoff(p) for p in game.profiles()]
    for _ in range(n_samples):
        strategies = [rng.dirichlet(np.ones(n)) for n in game.n_actions]
        points.append(game.expected_payoffs(strategies))
    return np.array(points)


def mixed_pareto_front(game: NormalFormGame, n_samples: int = 2000, seed: int = 0) -> np.ndarray:
    """Approximate Pareto front of payoffs reachable by independent mixing (sampled)."""
    return pareto_front(mixed_payoff_profiles(game, n_samples, seed))


def social_welfare(game: NormalFormGame, strategies: Any) -> float:
    """Sum of expected payoffs; ``strategies`` is a mixed profile or a pure profile of ints."""
    if all(np.isscalar(s) for s in strategies):
        return float(game.payoff(strategies).sum())
    return float(game.expected_payoffs(strategies).sum())


def optimal_welfare(game: NormalFormGame) -> float:
    """Largest social welfare over pure profiles (mixing cannot do better)."""
    return float(game.payoffs.sum(axis=0).max())


def _equilibrium_welfares(game: NormalFormGame, equilibria: str) -> np.ndarray:
    if equilibria == "pure":
        values = [social_welfare(game, p) for p in pure_nash_equilibria(game)]
    elif equilibria == "mixed":
        values = [social_welfare(game, list(eq)) for eq in vertex_enumeration(game)]
    else:
        raise ValueError(f"equilibria must be 'pure' or 'mixed', got {equilibria!r}")
    if not values:
        raise ValueError(f"game {game.name!r} has no {equilibria} Nash equilibrium")
    return np.array(values)


def _ratio(optimum: float, welfare: float) -> float:
    if welfare <= 0 or optimum <= 0:
        raise ValueError(f"price of anarchy/stability needs positive welfare, got optimum {optimum}, equilibrium {welfare}")
    return optimum / welfare


def price_of_anarchy(game: NormalFormGame, equilibria: str = "pure") -> float:
    """Optimal welfare over the worst equilibrium welfare (>= 1).

    Args:
        game: a game with positive welfare.
        equilibria: ``"pure"`` (any N) or ``"mixed"`` (two players: the extreme equilibria
            from vertex enumeration; welfare is linear in each player's strategy, so the worst
            and best equilibrium welfare over the maximal Nash subsets, which are products of
            polytopes (Jansen 1981), are attained at extreme equilibria).
    """
    return _ratio(optimal_welfare(game), float(_equilibrium_welfares(game, equilibria).min()))


def price_of_stability(game: NormalFormGame, equilibria: str = "pure") -> float:
    """Optimal welfare over the best equilibrium welfare (1 <= PoS <= PoA)."""
    return _ratio(optimal_welfare(game), float(_equilibrium_welfares(game, equilibria).max()))
