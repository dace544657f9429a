"""Pure Nash equilibria, regret / epsilon-Nash checks and NashConv for N-player games."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ca12.game_theory.games import NormalFormGame


def pure_nash_equilibria(game: NormalFormGame) -> list[tuple[int, ...]]:
    """All pure Nash equilibria of an N-player game, in lexicographic order.

    Vectorised: for each player a boolean tensor marks profiles where the player's action is a
    best response (within the game's tolerance); equilibria are where all tensors are true.
    """
    mask = np.ones(game.n_actions, dtype=bool)
    for i in range(game.n_players):
        u = game.payoffs[i]
        mask &= u >= u.max(axis=i, keepdims=True) - game.tol
    return [tuple(int(a) for a in idx) for idx in np.argwhere(mask)]


def regrets(game: NormalFormGame, strategies: Sequence[Any]) -> np.ndarray:
    """Each player's regret: best pure deviation payoff minus current expected payoff (>= 0)."""
    strategies = game.check_strategies(strategies)
    out = []
    for i in range(game.n_players):
        values = game.action_values(i, strategies)
        out.append(max(0.0, float(values.max() - values @ strategies[i])))
    return np.array(out)


def nash_conv(game: NormalFormGame, strategies: Sequence[Any]) -> float:
    """NashConv: the sum of the players' regrets; zero exactly at Nash equilibria."""
    return float(regrets(game, strategies).sum())


def exploitability(game: NormalFormGame, strategies: Sequence[Any]) -> float:
    """Exploitability: NashConv divided by the number of players (Lanctot et al. 2017).

    In two-player zero-sum games this equals the average gain of best responding.
    """
    return nash_conv(game, strategies) / game.n_players


def is_epsilon_nash(game: NormalFormGame, strategies: Sequence[Any], epsilon: float | None = None) -> bool:
    """True if no player can gain more than ``epsilon`` (default: the game's tolerance)."""
    eps = game.tol if epsilon is None else float(epsilon)
    if eps < 0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon}")
    return bool(np.all(regrets(game, strategies) <= eps))


def pure_profile_to_mixed(game: NormalFormGame, profile: Sequence[int]) -> list[np.ndarray]:
    """One-hot mixed strategies for a pure profile."""
    return [np.eye(n)[a] for n, a in zip(game.n_actions, profile)]


def deduplicate(equilibria: list[tuple[np.ndarray, ...]], decimals: int = 8) -> list[tuple[np.ndarray, ...]]:
    """Drop repeated equilibria (equal after rounding) and sort them for stable output."""
    seen: dict[tuple, tuple[np.ndarray, ...]] = {}
    for eq in equilibria:
        key = tuple(np.round(np.concatenate(eq), decimals) + 0.0)
        seen.setdefault(key, eq)
    return [seen[k] for k in sorted(seen, reverse=True)]
