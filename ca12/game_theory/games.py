"""Normal-form games: payoff tensors, expected payoffs, best responses and structural checks.

A game with N players stores one payoff tensor per player, stacked into an array of shape
``(N, n_1, ..., n_N)``; entry ``payoffs[i, a_1, ..., a_N]`` is player i's payoff at the pure
profile ``(a_1, ..., a_N)``. Mixed strategies are probability vectors, one per player.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

RELATIVE_TOL = 1e-9


def to_array(values: Any) -> np.ndarray:
    """Convert NumPy arrays, nested lists or torch tensors to a float64 NumPy array.

    Torch is not imported here: anything with ``detach`` is treated as a tensor, so the game
    toolkit works without torch while still accepting tensors produced by the RL code.
    """
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    if isinstance(values, (list, tuple)):
        values = [to_array(v) if hasattr(v, "detach") else v for v in values]
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"payoffs must be numeric, got {repr(values)[:120]}") from err
    return array


class NormalFormGame:
    """An N-player game in normal (strategic) form.

    Args:
        payoffs: either one array of shape ``(N, n_1, ..., n_N)`` or a sequence of N arrays of
            shape ``(n_1, ..., n_N)`` (NumPy, nested lists or torch tensors).
        name: a label used in reports and plots.
        action_names: optional per-player action labels.

    Raises:
        ValueError: if the payoffs are non-numeric, non-finite or not shaped as above.
    """

    def __init__(
        self,
        payoffs: Any,
        name: str = "game",
        action_names: Sequence[Sequence[str]] | None = None,
    ) -> None:
        if isinstance(payoffs, (list, tuple)) and payoffs and hasattr(payoffs[0], "detach"):
            payoffs = [to_array(p) for p in payoffs]
        array = to_array(payoffs)
        if array.ndim < 2 or array.shape[0] != array.ndim - 1:
            raise ValueError(f"payoffs must have shape (n_players, n_1, ..., n_players); got {array.shape}")
        if array.shape[0] < 1 or min(array.shape[1:]) < 1:
            raise ValueError(f"every player needs at least one action; got shape {array.shape}")
        if not np.all(np.isfinite(array)):
            raise ValueError("payoffs must be finite (no NaN or inf)")
        self.payoffs = array
        self.name = name
        if action_names is not None:
            if [len(a) for a in action_names] != list(self.n_actions):
                raise ValueError(f"action_names {action_names!r} do not match {self.n_actions}")
            action_names = [list(a) for a in action_names]
        self.action_names = action_names

    @property
    def n_players(self) -> int:
        return int(self.payoffs.shape[0])

    @property
    def n_actions(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.payoffs.shape[1:])

    @property
    def tol(self) -> float:
        """Payoff-scale-aware tolerance: 1e-9 relative to the largest absolute payoff."""
        return RELATIVE_TOL * max(1.0, float(np.max(np.abs(self.payoffs))))

    @property
    def bimatrix(self) -> tuple[np.ndarray, np.ndarray]:
        """The (row, column) payoff matrices of a two-player game."""
        if self.n_players != 2:
            raise ValueError(f"bimatrix needs a two-player game, this one has {self.n_players}")
        return self.payoffs[0], self.payoffs[1]

    def __repr__(self) -> str:
        return f"NormalFormGame(name={self.name!r}, n_actions={self.n_actions})"

    def payoff(self, profile: Sequence[int]) -> np.ndarray:
        """Payoff vector (one entry per player) at a pure profile."""
        return self.payoffs[(slice(None), *tuple(int(a) for a in profile))].copy()

    def profiles(self) -> list[tuple[int, ...]]:
        """All pure action profiles in lexicographic order."""
        return list(itertools.product(*(range(n) for n in self.n_actions)))

    def check_strategies(self, strategies: Sequence[Any]) -> list[np.ndarray]:
        """Validate and convert a mixed-strategy profile.

        Raises:
            ValueError: if a strategy has the wrong length, negative entries or a sum far from 1.
        """
        if len(strategies) != self.n_players:
            raise ValueError(f"need {self.n_players} strategies, got {len(strategies)}")
        out = []
        for i, s in enumerate(strategies):
            s = to_array(s).ravel()
            if s.shape != (self.n_actions[i],) or np.any(s < -1e-9) or abs(s.sum() - 1) > 1e-6:
                raise ValueError(f"strategy of player {i} is not a distribution: {s!r}")
            out.append(np.clip(s, 0.0, None) / np.clip(s, 0.0, None).sum())
        return out

    def action_values(self, player: int, strategies: Sequence[Any]) -> np.ndarray:
        """Expected payoff of each of ``player``'s pure actions against the others' mixtures."""
        strategies = self.check_strategies(strategies)
        tensor = self.payoffs[player]
        for j in reversed(range(self.n_players)):
            if j != player:
                tensor = np.tensordot(tensor, strategies[j], axes=([j], [0]))
        return np.asarray(tensor, dtype=float)

    def expected_payoffs(self, strategies: Sequence[Any]) -> np.ndarray:
        """Expected payoff of every player under independent mixing."""
        strategies = self.check_strategies(strategies)
        return np.array([self.action_values(i, strategies) @ strategies[i] for i in range(self.n_players)])

    def best_responses(self, player: int, strategies: Sequence[Any]) -> np.ndarray:
        """Indices of ``player``'s pure best responses (within tolerance) to the others."""
        values = self.action_values(player, strategies)
        return np.flatnonzero(values >= values.max() - self.tol)

    def pure_best_responses(self, player: int, profile: Sequence[int]) -> np.ndarray:
        """Pure best responses of ``player`` when the others play the pure ``profile``."""
        index = [int(a) for a in profile]
        index[player] = slice(None)
        values = self.payoffs[(player, *index)]
        return np.flatnonzero(values >= values.max() - self.tol)

    def is_constant_sum(self) -> bool:
        """True if the players' payoffs add up to the same constant at every profile."""
        total = self.payoffs.sum(axis=0)
        return bool(np.ptp(total) <= self.tol)

    def is_zero_sum(self) -> bool:
        """True if payoffs add up to zero at every profile."""
        return bool(np.max(np.abs(self.payoffs.sum(axis=0))) <= self.tol)

    def is_symmetric(self) -> bool:
        """True if relabelling players permutes payoffs: u_{pi(i)}(pi(a)) = u_i(a) for all pi.

        Checking adjacent transpositions suffices because they generate all permutations.
        """
        if len(set(self.n_actions)) != 1:
            return False
        n = self.n_players
        for k in range(n - 1):
            perm = list(range(n))
            perm[k], perm[k + 1] = perm[k + 1], perm[k]
            swapped = np.transpose(self.payoffs[perm], [0] + [p + 1 for p in perm])
            if np.max(np.abs(swapped - self.payoffs)) > self.tol:
                return False
        return True

    def swap_players(self) -> NormalFormGame:
        """The two-player game with roles exchanged (column player becomes the row player)."""
        a, b = self.bimatrix
        names = None if self.action_names is None else self.action_names[::-1]
        return NormalFormGame([b.T, a.T], name=f"{self.name} (swapped)", action_names=names)

    def restrict(self, actions: Sequence[Sequence[int]]) -> NormalFormGame:
        """The subgame where player i may only use ``actions[i]``."""
        index = np.ix_(*[list(a) for a in actions])
        tensor = np.stack([p[index] for p in self.payoffs])
        names = None
        if self.action_names is not None:
            names = [[self.action_names[i][a] for a in acts] for i, acts in enumerate(actions)]
        return NormalFormGame(tensor, name=self.name, action_names=names)


def random_game(n_actions: Sequence[int], seed: int | None = 0, integer: bool = False) -> NormalFormGame:
    """A game with i.i.d. standard-normal payoffs (non-degenerate with probability one).

    Args:
        n_actions: number of actions of each player.
        seed: seed for ``numpy.random.default_rng``.
        integer: draw integers in [-5, 5] instead (often degenerate: useful for robustness tests).
    """
    rng = np.random.default_rng(seed)
    shape = (len(n_actions), *n_actions)
    data = rng.integers(-5, 6, size=shape) if integer else rng.standard_normal(shape)
    return NormalFormGame(data.astype(float), name=f"random{tuple(n_actions)}")
