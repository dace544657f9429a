"""Lemke-Howson complementary pivoting with lexicographic ratio tests.

Lemke & Howson (1964) follow a path of almost completely labelled vertex pairs of the polytopes
P = {x >= 0 : B^T x <= 1} and Q = {y >= 0 : A y <= 1} from the artificial equilibrium (0, 0)
after dropping one label. Labels 0..m-1 belong to the row player's actions (x_i or slack r_i)
and m..m+n-1 to the column player's (y_j or slack s_j). Both tableaux index columns by label:

    T1 = [I_m | A | 1]   basic r (slacks of A y <= 1), entering y
    T2 = [B^T | I_n | 1] basic s (slacks of B^T x <= 1), entering x

The minimum-ratio test is broken lexicographically on (rhs, B^{-1}) rows, which simulates a
perturbation of the right-hand side (von Stengel 2002, Sec. 3.6) so the path is unique and
terminates on degenerate games too.
"""

from __future__ import annotations

import numpy as np

from ca12.game_theory.equilibria import deduplicate
from ca12.game_theory.games import NormalFormGame


def _lexicographic_leaving(tableau: np.ndarray, column: int, slack: slice, tol: float) -> int:
    """Row index leaving the basis: lexicographic minimum of [rhs, B^-1] / pivot column."""
    pivot_col = tableau[:, column]
    rows = np.flatnonzero(pivot_col > tol)
    if rows.size == 0:
        raise ValueError(f"unbounded pivot on label {column}: payoffs must be shifted positive")
    keys = np.column_stack([tableau[rows, -1], tableau[rows, slack]]) / pivot_col[rows, None]
    for col in range(keys.shape[1]):
        best = keys[:, col].min()
        keep = keys[:, col] <= best + tol * max(1.0, abs(best))
        rows, keys = rows[keep], keys[keep]
        if rows.size == 1:
            break
    return int(rows[0])


def _pivot(tableau: np.ndarray, row: int, column: int) -> None:
    tableau[row] /= tableau[row, column]
    others = np.arange(tableau.shape[0]) != row
    tableau[others] -= np.outer(tableau[others, column], tableau[row])


def lemke_howson(game: NormalFormGame, initial_label: int = 0, max_pivots: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """One Nash equilibrium of a bimatrix game by Lemke-Howson (1964).

    Args:
        game: a two-player game (degenerate games are fine: lexicographic pivoting).
        initial_label: the dropped label, 0..m-1 for a row action, m..m+n-1 for a column one.
        max_pivots: safety bound on the path length.

    Returns:
        ``(p, q)`` mixed strategies forming a Nash equilibrium.

    Raises:
        ValueError: if the label is out of range or the path exceeds ``max_pivots``.
    """
    a, b = game.bimatrix
    m, n = a.shape
    if not 0 <= initial_label < m + n:
        raise ValueError(f"initial_label must be in [0, {m + n}), got {initial_label}")
    a_pos = a - a.min() + 1.0
    b_pos = b - b.min() + 1.0
    tol = 1e-12 * max(1.0, float(a_pos.max()), float(b_pos.max()))
    t1 = np.hstack([np.eye(m), a_pos, np.ones((m, 1))])
    t2 = np.hstack([b_pos.T, np.eye(n), np.ones((n, 1))])
    basis1, basis2 = list(range(m)), list(range(m, m + n))
    slack1, slack2 = slice(0, m), slice(m, m + n)
    entering = initial_label
    use_t2 = initial_label < m  # x_k enters P's tableau, y_k enters Q's tableau
    for _ in range(max_pivots):
        tableau, basis, slack = (t2, basis2, slack2) if use_t2 else (t1, basis1, slack1)
        row = _lexicographic_leaving(tableau, entering, slack, tol)
        leaving = basis[row]
        _pivot(tableau, row, entering)
        basis[row] = entering
        if leaving == initial_label:
            break
        entering, use_t2 = leaving, not use_t2
    else:
        raise ValueError(f"Lemke-Howson did not terminate within {max_pivots} pivots")
    x, y = np.zeros(m), np.zeros(n)
    for row, label in enumerate(basis2):
        if label < m:
            x[label] = t2[row, -1]
    for row, label in enumerate(basis1):
        if label >= m:
            y[label - m] = t1[row, -1]
    x, y = np.clip(x, 0, None), np.clip(y, 0, None)
    return x / x.sum(), y / y.sum()


def lemke_howson_all_labels(game: NormalFormGame) -> list[tuple[np.ndarray, np.ndarray]]:
    """Run Lemke-Howson from every initial label; a cheap way to find several equilibria."""
    m, n = game.n_actions
    return deduplicate([lemke_howson(game, k) for k in range(m + n)])
