"""All Nash equilibria of bimatrix games: support enumeration and vertex enumeration.

Support enumeration (Nisan et al. 2007, Algorithm 3.4) is vectorised: for each support size k
all C(m, k) x C(n, k) indifference systems ``[[A_IJ, -1], [1^T, 0]] [q; v] = [0; 1]`` are
solved as one batched ``numpy.linalg.solve``; only pairs whose q is a feasible best-response
mixture get their p-system solved. Only equal-size supports are enumerated, which is complete
for non-degenerate games (Nisan et al. 2007, Thm 3.6). Strictly dominated actions are removed
first (they carry no equilibrium mass).

Vertex enumeration (Mangasarian 1964; Avis et al. 2010) lists the vertices of the best-response
polytopes P = {x >= 0 : B^T x <= 1} and Q = {y >= 0 : A y <= 1} (payoffs shifted positive)
and returns every completely labelled pair. It also handles degenerate games, where it returns
all extreme equilibria.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from ca12.game_theory.dominance import iterated_elimination
from ca12.game_theory.equilibria import deduplicate
from ca12.game_theory.games import NormalFormGame

Equilibrium = tuple[np.ndarray, np.ndarray]
_CHUNK = 40_000  # support pairs solved per batch: bounds memory at ~20 MB for k = 6


def _batched_solve(mats: np.ndarray, rhs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solve many small systems; singular ones (relative to Hadamard's bound) are flagged."""
    det = np.abs(np.linalg.det(mats))
    bound = np.prod(np.linalg.norm(mats, axis=-1), axis=-1)
    ok = det > 1e-12 * np.maximum(bound, 1e-300)
    safe = np.where(ok[..., None, None], mats, np.eye(mats.shape[-1]))
    sol = np.linalg.solve(safe, np.broadcast_to(rhs, safe.shape[:-1])[..., None])[..., 0]
    return sol, ok


def _indifference(sub: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Solve sub @ z = v * 1, sum(z) = 1 for a batch of k x k matrices ``sub``."""
    k = sub.shape[-1]
    mats = np.zeros(sub.shape[:-2] + (k + 1, k + 1))
    mats[..., :k, :k] = sub
    mats[..., :k, k] = -1.0
    mats[..., k, :k] = 1.0
    rhs = np.zeros(k + 1)
    rhs[k] = 1.0
    sol, ok = _batched_solve(mats, rhs)
    return sol[..., :k], sol[..., k], ok


def _supports_of_size(a: np.ndarray, b: np.ndarray, k: int, tol: float) -> list[Equilibrium]:
    m, n = a.shape
    rows = np.array(list(combinations(range(m), k)))
    cols = np.array(list(combinations(range(n), k)))
    a_cols = a[:, cols]  # (m, cJ, k)
    out: list[Equilibrium] = []
    step = max(1, _CHUNK // len(cols))
    for start in range(0, len(rows), step):
        r = rows[start : start + step]
        sub = a[r[:, None, :, None], cols[None, :, None, :]]  # (ci, cJ, k, k)
        q, v, ok = _indifference(sub)
        ok &= np.all(q > -tol, axis=-1)
        row_values = np.einsum("mjk,ijk->ijm", a_cols, q)
        ok &= np.all(row_values <= v[..., None] + tol, axis=-1)
        for i, j in np.argwhere(ok):
            rows_i, cols_j = r[i], cols[j]
            p_sub, u, p_ok = _indifference(b[np.ix_(rows_i, cols_j)].T)
            if not p_ok or np.any(p_sub < -tol):
                continue
            if np.max(p_sub @ b[rows_i]) > u + tol:
                continue
            p = np.zeros(m)
            p[rows_i] = np.clip(p_sub, 0, None)
            qq = np.zeros(n)
            qq[cols_j] = np.clip(q[i, j], 0, None)
            out.append((p / p.sum(), qq / qq.sum()))
    return out


def support_enumeration(game: NormalFormGame, reduce: bool = True) -> list[Equilibrium]:
    """All Nash equilibria of a non-degenerate bimatrix game by support enumeration.

    Args:
        game: a two-player game.
        reduce: first remove strictly dominated actions (pure domination); this never loses
            an equilibrium and shrinks the number of supports.

    Returns:
        A list of ``(p, q)`` mixed strategies, sorted, without duplicates. For degenerate
        games equilibria with unequal support sizes are not found; use
        :func:`vertex_enumeration` there.
    """
    a, b = game.bimatrix
    rows, cols = list(range(a.shape[0])), list(range(a.shape[1]))
    if reduce:
        rows, cols = iterated_elimination(game).surviving
    sub_a, sub_b = a[np.ix_(rows, cols)], b[np.ix_(rows, cols)]
    found: list[Equilibrium] = []
    for k in range(1, min(len(rows), len(cols)) + 1):
        found += _supports_of_size(sub_a, sub_b, k, game.tol)
    full = []
    for p_sub, q_sub in found:
        p, q = np.zeros(a.shape[0]), np.zeros(a.shape[1])
        p[rows], q[cols] = p_sub, q_sub
        full.append((p, q))
    return deduplicate(full)


def _vertices(m_ineq: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of {z >= 0 : M z <= 1} and their tight-constraint labels.

    Labels 0..d-1 are ``z_i = 0`` and d..d+c-1 are ``(M z)_j = 1``. Every choice of d
    constraints is solved as equalities in one batch; feasible solutions are the vertices.
    """
    c, d = m_ineq.shape
    h = np.vstack([np.eye(d), m_ineq])
    rhs = np.concatenate([np.zeros(d), np.ones(c)])
    subsets = np.array(list(combinations(range(d + c), d)))
    z, ok = _batched_solve(h[subsets], rhs[subsets])
    feasible = ok & np.all(z > -tol, axis=1) & np.all(z @ m_ineq.T < 1 + tol, axis=1)
    z = np.clip(z[feasible], 0, None)
    z = z[z.sum(axis=1) > tol]  # the origin is the artificial equilibrium
    if len(z) == 0:
        return z, np.zeros((0, d + c), dtype=bool)
    z = np.unique(np.round(z, 12), axis=0)
    labels = np.hstack([z < tol, np.abs(z @ m_ineq.T - 1) < tol])
    return z, labels


def vertex_enumeration(game: NormalFormGame) -> list[Equilibrium]:
    """All extreme Nash equilibria of a bimatrix game by vertex enumeration.

    Returns:
        A list of ``(p, q)`` pairs, sorted, without duplicates.
    """
    a, b = game.bimatrix
    m, n = a.shape
    a_pos = a - a.min() + 1.0
    b_pos = b - b.min() + 1.0
    tol = 1e-9 * max(1.0, float(max(a_pos.max(), b_pos.max())))
    xs, lx = _vertices(b_pos.T, tol)  # labels: x_i = 0 -> i, (B^T x)_j = 1 -> m + j
    ys, ly = _vertices(a_pos, tol)  # labels: y_j = 0 -> j, (A y)_i = 1 -> i
    ly = np.hstack([ly[:, n:], ly[:, :n]])  # reorder to 0..m-1 rows, m.. columns
    complete = np.all(lx[:, None, :] | ly[None, :, :], axis=-1)
    out = [(xs[i] / xs[i].sum(), ys[j] / ys[j].sum()) for i, j in np.argwhere(complete)]
    return deduplicate(out)
