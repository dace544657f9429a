"""Property tests for the equilibrium solvers and agreement with nashpy's vertex enumeration."""

from __future__ import annotations

import nashpy
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ca12.game_theory import (
    NormalFormGame,
    is_epsilon_nash,
    lemke_howson,
    lemke_howson_all_labels,
    random_game,
    regrets,
    support_enumeration,
    vertex_enumeration,
)

FAST = settings(max_examples=40, deadline=None)


def _close_to_any(eq, pool, atol=1e-7) -> bool:
    flat = np.concatenate(eq)
    return any(np.allclose(flat, np.concatenate(other), atol=atol) for other in pool)


def _assert_same(first, second, atol=1e-7):
    assert len(first) == len(second)
    assert all(_close_to_any(eq, second, atol) for eq in first)


def _best_response_check(game, eq, tol=1e-9):
    scale = max(1.0, float(np.abs(game.payoffs).max()))
    assert np.all(regrets(game, list(eq)) <= tol * scale), regrets(game, list(eq))


@st.composite
def real_games(draw, max_actions=5):
    m = draw(st.integers(1, max_actions))
    n = draw(st.integers(1, max_actions))
    seed = draw(st.integers(0, 2**32 - 1))
    return random_game((m, n), seed=seed)


@st.composite
def integer_games(draw, max_actions=4):
    m = draw(st.integers(1, max_actions))
    n = draw(st.integers(1, max_actions))
    values = draw(st.lists(st.integers(-3, 3), min_size=2 * m * n, max_size=2 * m * n))
    return NormalFormGame(np.array(values, dtype=float).reshape(2, m, n))


@FAST
@given(real_games())
def test_every_enumerated_equilibrium_is_a_best_response(game):
    for eq in support_enumeration(game) + vertex_enumeration(game):
        _best_response_check(game, eq)


@FAST
@given(real_games())
def test_support_vertex_and_lemke_howson_agree(game):
    by_support = support_enumeration(game)
    by_vertex = vertex_enumeration(game)
    _assert_same(by_support, by_vertex)
    assert len(by_support) % 2 == 1  # non-degenerate games have an odd number (Shapley 1974)
    m, n = game.n_actions
    for label in range(m + n):
        eq = lemke_howson(game, label)
        _best_response_check(game, eq)
        assert _close_to_any(eq, by_support)


@FAST
@given(integer_games())
def test_degenerate_games_every_result_is_an_equilibrium(game):
    for eq in vertex_enumeration(game) + lemke_howson_all_labels(game):
        _best_response_check(game, eq)
    assert len(vertex_enumeration(game)) >= 1


@FAST
@given(real_games(max_actions=4), st.integers(0, 3))
def test_equilibria_invariant_to_positive_affine_transform(game, shift):
    a, b = game.bimatrix
    moved = NormalFormGame([3.0 * a + shift, 0.5 * b - shift])
    _assert_same(support_enumeration(game), support_enumeration(moved))


@pytest.mark.parametrize("size", [2, 3, 4, 5, 6])
def test_agrees_with_nashpy_vertex_enumeration(size):
    for seed in range(4 if size < 6 else 2):
        game = random_game((size, max(2, size - (seed % 2))), seed=100 * size + seed)
        oracle = list(nashpy.Game(*game.bimatrix).vertex_enumeration())
        _assert_same(vertex_enumeration(game), oracle, atol=1e-6)
        _assert_same(support_enumeration(game), oracle, atol=1e-6)


def test_lemke_howson_on_known_degenerate_game():
    # Von Stengel's degenerate example: column 0 pays the row player equally for both rows.
    game = NormalFormGame([[[1, 1], [1, 0]], [[1, 0], [1, 1]]])
    for label in range(4):
        eq = lemke_howson(game, label)
        assert is_epsilon_nash(game, list(eq))
    with pytest.raises(ValueError, match="initial_label"):
        lemke_howson(game, 4)


def test_lemke_howson_is_fast_on_12x12():
    game = random_game((12, 12), seed=3)
    eq = lemke_howson(game, 0)
    assert is_epsilon_nash(game, list(eq))
