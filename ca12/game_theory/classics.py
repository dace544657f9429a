"""Named classic games with the payoffs used in the literature.

Row player is player 0. Action order is given by ``action_names``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ca12.game_theory.games import NormalFormGame


def _symmetric(a: list[list[float]], name: str, actions: list[str]) -> NormalFormGame:
    a_arr = np.array(a, dtype=float)
    return NormalFormGame([a_arr, a_arr.T], name=name, action_names=[actions, actions])


def _zero_sum(a: list[list[float]], name: str, row: list[str], col: list[str]) -> NormalFormGame:
    a_arr = np.array(a, dtype=float)
    return NormalFormGame([a_arr, -a_arr], name=name, action_names=[row, col])


def _common(a: list[list[float]], name: str, actions: list[str]) -> NormalFormGame:
    a_arr = np.array(a, dtype=float)
    return NormalFormGame([a_arr, a_arr.copy()], name=name, action_names=[actions, actions])


def prisoners_dilemma(reward: float = 3, sucker: float = 0, temptation: float = 5, punishment: float = 1) -> NormalFormGame:
    """Prisoner's dilemma with T > R > P > S (Axelrod's 5, 3, 1, 0); actions (C, D)."""
    if not temptation > reward > punishment > sucker:
        raise ValueError(f"need T > R > P > S, got {(temptation, reward, punishment, sucker)}")
    return _symmetric([[reward, sucker], [temptation, punishment]], "prisoners_dilemma", ["C", "D"])


def battle_of_the_sexes() -> NormalFormGame:
    """Battle of the sexes: (3, 2) at (O, O), (2, 3) at (F, F), 0 otherwise.

    Known equilibria: (O, O), (F, F) and the mixed one where the row player plays O with
    probability 3/5 and the column player plays O with probability 2/5 (payoffs 6/5, 6/5).
    """
    a = np.array([[3.0, 0.0], [0.0, 2.0]])
    b = np.array([[2.0, 0.0], [0.0, 3.0]])
    return NormalFormGame([a, b], name="battle_of_the_sexes", action_names=[["O", "F"]] * 2)


def stag_hunt() -> NormalFormGame:
    """Stag hunt (Rousseau; Skyrms 2004): (Stag, Stag) pays 4, Hare pays 3 safely."""
    return _symmetric([[4, 0], [3, 3]], "stag_hunt", ["Stag", "Hare"])


def chicken() -> NormalFormGame:
    """Chicken as in Aumann (1974): (6, 6) both swerve, (7, 2) / (2, 7), (0, 0) crash.

    The mixed equilibrium (swerve with 2/3) gives welfare 28/3; the welfare-maximising
    correlated equilibrium puts 1/2, 1/4, 1/4 on (S, S), (S, D), (D, S) for welfare 10.5.
    """
    return _symmetric([[6, 2], [7, 0]], "chicken", ["Swerve", "Dare"])


def matching_pennies() -> NormalFormGame:
    """Matching pennies: zero-sum, value 0, unique equilibrium (1/2, 1/2) for both."""
    return _zero_sum([[1, -1], [-1, 1]], "matching_pennies", ["H", "T"], ["H", "T"])


def rock_paper_scissors() -> NormalFormGame:
    """Rock-paper-scissors: symmetric zero-sum, unique equilibrium uniform, value 0."""
    actions = ["R", "P", "S"]
    return _zero_sum([[0, -1, 1], [1, 0, -1], [-1, 1, 0]], "rock_paper_scissors", actions, actions)


def shapley_game() -> NormalFormGame:
    """Shapley's (1964) 3x3 game: unique (uniform) equilibrium, fictitious play cycles."""
    a = np.eye(3)
    b = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    return NormalFormGame([a, b], name="shapley", action_names=[["a", "b", "c"]] * 2)


def climbing_game() -> NormalFormGame:
    """Climbing game (Claus & Boutilier 1998): common payoff, optimum 11 guarded by -30."""
    return _common([[11, -30, 0], [-30, 7, 6], [0, 0, 5]], "climbing", ["a", "b", "c"])


def penalty_game(k: float = -10.0) -> NormalFormGame:
    """Penalty game (Claus & Boutilier 1998): miscoordinating on the optima costs k <= 0."""
    if k > 0:
        raise ValueError(f"penalty k must be <= 0, got {k}")
    return _common([[10, 0, k], [0, 2, 0], [k, 0, 10]], "penalty", ["a", "b", "c"])


def coordination_game(n: int = 2) -> NormalFormGame:
    """Pure coordination: both get 1 when they choose the same of n actions, else 0."""
    if n < 2:
        raise ValueError(f"coordination game needs n >= 2 actions, got {n}")
    return _common(np.eye(n).tolist(), "coordination", [str(i) for i in range(n)])


CLASSICS: dict[str, Callable[[], NormalFormGame]] = {
    "prisoners_dilemma": prisoners_dilemma,
    "battle_of_the_sexes": battle_of_the_sexes,
    "stag_hunt": stag_hunt,
    "chicken": chicken,
    "matching_pennies": matching_pennies,
    "rock_paper_scissors": rock_paper_scissors,
    "shapley": shapley_game,
    "climbing": climbing_game,
    "penalty": penalty_game,
    "coordination": coordination_game,
}

ALIASES = {"pd": "prisoners_dilemma", "bos": "battle_of_the_sexes", "rps": "rock_paper_scissors"}


def classic(name: str) -> NormalFormGame:
    """Look up a classic by name (case-insensitive, '-' or '_'; aliases pd, bos, rps).

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    key = ALIASES.get(key, key)
    if key not in CLASSICS:
        raise ValueError(f"unknown game {name!r}; known: {', '.join(sorted(CLASSICS))}")
    return CLASSICS[key]()
