"""Learning dynamics in normal-form games; each returns a :class:`Trajectory`.

* continuous replicator dynamics (Taylor & Jonker 1978), integrated with scipy's solve_ivp:
  x_i' = x_i (f_i(x) - x . f(x)), one population per player, or a single population in a
  symmetric two-player game (then both players share x);
* discrete-time replicator x_i <- x_i (f_i + c) / (x . f + c) with c making fitness positive
  (Maynard Smith 1982);
* fictitious play (Brown 1951; Robinson 1951): best respond to the opponents' empirical
  frequencies, ties broken uniformly at random by a seeded generator;
* regret matching (Hart & Mas-Colell 2000), unconditional form: play in proportion to
  positive cumulative regret; the empirical play converges to coarse-correlated equilibria
  and, in two-player zero-sum games, the average strategies to Nash.

Exploitability (NashConv / N) is recorded at every stored point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.integrate import solve_ivp

from ca12.game_theory.equilibria import exploitability
from ca12.game_theory.games import NormalFormGame, to_array


@dataclass(frozen=True)
class Trajectory:
    """Times (or iterations), per-player strategies of shape (T, n_i) and exploitability (T,)."""

    times: np.ndarray
    strategies: list[np.ndarray]
    exploitability: np.ndarray

    def final(self) -> list[np.ndarray]:
        return [s[-1] for s in self.strategies]


def _initial(game: NormalFormGame, x0: Sequence[Any] | None, seed: int) -> list[np.ndarray]:
    if x0 is None:
        rng = np.random.default_rng(seed)
        return [rng.dirichlet(np.ones(n)) for n in game.n_actions]
    return game.check_strategies([to_array(x) for x in x0])


def _split(game: NormalFormGame, flat: np.ndarray) -> list[np.ndarray]:
    return np.split(flat, np.cumsum(game.n_actions)[:-1])


def _fitness(game: NormalFormGame, strategies: list[np.ndarray]) -> list[np.ndarray]:
    return [game.action_values(i, strategies) for i in range(game.n_players)]


def _single_population(game: NormalFormGame, population: str) -> bool:
    if population not in ("auto", "single", "multi"):
        raise ValueError(f"population must be 'auto', 'single' or 'multi', got {population!r}")
    symmetric = game.n_players == 2 and game.is_symmetric()
    if population == "single" and not symmetric:
        raise ValueError(f"single-population dynamics need a symmetric 2-player game: {game!r}")
    return population == "single" or (population == "auto" and symmetric)


def _trajectory(game: NormalFormGame, times: np.ndarray, rows: list[list[np.ndarray]]) -> Trajectory:
    strategies = [np.array([r[i] for r in rows]) for i in range(game.n_players)]
    expl = np.array([exploitability(game, [s / s.sum() for s in r]) for r in rows])
    return Trajectory(np.asarray(times, dtype=float), strategies, expl)


def replicator_dynamics(
    game: NormalFormGame,
    x0: Sequence[Any] | None = None,
    t_max: float = 50.0,
    n_points: int = 501,
    population: str = "auto",
    seed: int = 0,
    rtol: float = 1e-10,
) -> Trajectory:
    """Continuous replicator dynamics integrated by solve_ivp (DOP853).

    Args:
        game: the game.
        x0: initial mixed strategies, one per player (in single-population mode both entries
            must be equal; only the first is used). Default: seeded Dirichlet(1) draw.
        t_max: integration horizon.
        n_points: stored points, evenly spaced in [0, t_max].
        population: ``"single"``, ``"multi"`` or ``"auto"`` (single iff symmetric 2-player).
        seed: seed for the default initial point.
        rtol: relative tolerance of the integrator (absolute tolerance is rtol * 1e-2).
    """
    if t_max <= 0 or n_points < 2:
        raise ValueError(f"need t_max > 0 and n_points >= 2, got {t_max}, {n_points}")
    single = _single_population(game, population)
    start = _initial(game, x0, seed)
    a = game.payoffs[0]

    def rhs(_t: float, flat: np.ndarray) -> np.ndarray:
        if single:
            f = a @ flat
            return flat * (f - flat @ f)
        parts = _split(game, flat)
        fits = _fitness(game, [np.clip(p, 0, None) / max(p.sum(), 1e-300) for p in parts])
        return np.concatenate([p * (f - p @ f) for p, f in zip(parts, fits)])

    y0 = start[0] if single else np.concatenate(start)
    grid = np.linspace(0.0, t_max, n_points)
    sol = solve_ivp(rhs, (0.0, t_max), y0, method="DOP853", t_eval=grid, rtol=rtol, atol=rtol * 1e-2)
    if not sol.success:
        raise ValueError(f"replicator integration failed: {sol.message}")
    rows = [[y, y] if single else _split(game, y) for y in sol.y.T]
    return _trajectory(game, sol.t, rows)


def discrete_replicator(game: NormalFormGame, x0: Sequence[Any] | None = None, steps: int = 1000, seed: int = 0) -> Trajectory:
    """Discrete-time (multi-population) replicator dynamics with shifted positive fitness."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    shift = 1.0 - float(game.payoffs.min())
    current = _initial(game, x0, seed)
    rows = [current]
    for _ in range(steps):
        fits = _fitness(game, current)
        current = [x * (f + shift) / (x @ (f + shift)) for x, f in zip(current, fits)]
        rows.append(current)
    return _trajectory(game, np.arange(steps + 1), rows)


def fictitious_play(
    game: NormalFormGame,
    steps: int = 2000,
    seed: int = 0,
    initial: Sequence[int] | None = None,
    record_every: int = 1,
) -> Trajectory:
    """Simultaneous fictitious play (Brown 1951); returns the empirical frequencies.

    Args:
        game: any N-player game.
        steps: number of rounds after the initial one.
        seed: seeds the initial actions (if not given) and random tie-breaking.
        initial: first pure profile.
        record_every: store every k-th round (the last one is always stored).
    """
    if steps < 1 or record_every < 1:
        raise ValueError(f"steps and record_every must be >= 1, got {steps}, {record_every}")
    rng = np.random.default_rng(seed)
    if initial is None:
        initial = [int(rng.integers(n)) for n in game.n_actions]
    counts = [np.zeros(n) for n in game.n_actions]
    for c, a in zip(counts, initial):
        c[a] += 1.0
    times, rows = [0], [[c.copy() for c in counts]]
    for t in range(1, steps + 1):
        beliefs = [c / c.sum() for c in counts]
        for i in range(game.n_players):
            values = game.action_values(i, beliefs)
            best = np.flatnonzero(values >= values.max() - game.tol)
            counts[i][rng.choice(best)] += 1.0
        if t % record_every == 0 or t == steps:
            times.append(t)
            rows.append([c / c.sum() for c in counts])
    rows[0] = [c / c.sum() for c in rows[0]]
    return _trajectory(game, np.array(times), rows)


def regret_matching(
    game: NormalFormGame,
    steps: int = 2000,
    seed: int = 0,
    sample: bool = True,
    record_every: int = 1,
) -> Trajectory:
    """Unconditional regret matching (Hart & Mas-Colell 2000); returns average strategies.

    Args:
        game: any N-player game.
        steps: number of rounds.
        seed: seeds the sampled actions.
        sample: play sampled pure actions and update regrets from realised payoffs (the
            original procedure); if False use expected payoffs of the mixed strategies.
        record_every: store every k-th round (the last one is always stored).
    """
    if steps < 1 or record_every < 1:
        raise ValueError(f"steps and record_every must be >= 1, got {steps}, {record_every}")
    rng = np.random.default_rng(seed)
    regret = [np.zeros(n) for n in game.n_actions]
    totals = [np.zeros(n) for n in game.n_actions]
    times, rows = [], []
    for t in range(1, steps + 1):
        policy = []
        for r in regret:
            pos = np.clip(r, 0, None)
            policy.append(pos / pos.sum() if pos.sum() > 0 else np.full(r.size, 1.0 / r.size))
        played = policy
        if sample:
            played = [np.eye(p.size)[rng.choice(p.size, p=p)] for p in policy]
        for i in range(game.n_players):
            values = game.action_values(i, played)
            regret[i] += values - values @ played[i]
            totals[i] += played[i]
        if t % record_every == 0 or t == steps:
            times.append(t)
            rows.append([s / s.sum() for s in totals])
    return _trajectory(game, np.array(times), rows)
