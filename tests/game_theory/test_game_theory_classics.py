"""Exactness on classic games, with the expected values from the literature."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ca12.game_theory import (
    NormalFormGame,
    classic,
    correlated_equilibrium,
    dominated_actions,
    is_correlated_equilibrium,
    iterated_elimination,
    lemke_howson,
    pareto_optimal_profiles,
    price_of_anarchy,
    price_of_stability,
    pure_nash_equilibria,
    solve_zero_sum,
    stackelberg,
    support_enumeration,
    vertex_enumeration,
)
from ca12.game_theory.efficiency import is_pareto_dominated, pareto_front
from ca12.game_theory.equilibria import exploitability, regrets


def _as_set(equilibria):
    return {tuple(np.round(np.concatenate(eq), 9)) for eq in equilibria}


def test_matching_pennies_value_zero_and_half_half():
    sol = solve_zero_sum(classic("matching_pennies"))
    assert sol.value == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(sol.row_strategy, [0.5, 0.5], atol=1e-9)
    np.testing.assert_allclose(sol.column_strategy, [0.5, 0.5], atol=1e-9)


def test_rps_uniform_unique_equilibrium():
    game = classic("rps")
    uniform = np.full(3, 1 / 3)
    for method in (support_enumeration, vertex_enumeration):
        eqs = method(game)
        assert len(eqs) == 1
        np.testing.assert_allclose(eqs[0][0], uniform, atol=1e-12)
        np.testing.assert_allclose(eqs[0][1], uniform, atol=1e-12)
    sol = solve_zero_sum(game)
    assert sol.value == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(sol.row_strategy, uniform, atol=1e-9)


def test_battle_of_the_sexes_two_pure_one_mixed():
    game = classic("battle_of_the_sexes")
    assert pure_nash_equilibria(game) == [(0, 0), (1, 1)]
    eqs = support_enumeration(game)
    assert _as_set(eqs) == _as_set(vertex_enumeration(game))
    mixed = [eq for eq in eqs if np.all(eq[0] > 0)]
    assert len(eqs) == 3 and len(mixed) == 1
    p, q = mixed[0]
    np.testing.assert_allclose(p, [3 / 5, 2 / 5], atol=1e-12)  # makes column indifferent
    np.testing.assert_allclose(q, [2 / 5, 3 / 5], atol=1e-12)
    np.testing.assert_allclose(game.expected_payoffs([p, q]), [6 / 5, 6 / 5], atol=1e-12)


def test_prisoners_dilemma_unique_dd_pareto_dominated():
    game = classic("pd")
    assert pure_nash_equilibria(game) == [(1, 1)]
    assert len(vertex_enumeration(game)) == 1
    assert dominated_actions(game, 0) == [0] and dominated_actions(game, 1) == [0]
    assert iterated_elimination(game).surviving == [[1], [1]]
    assert is_pareto_dominated(game, (1, 1))  # (C, C) gives (3, 3) > (1, 1)
    assert (0, 0) in pareto_optimal_profiles(game) and (1, 1) not in pareto_optimal_profiles(game)
    assert price_of_anarchy(game) == pytest.approx(6 / 2)


def test_chicken_correlated_beats_mixed_nash_aumann():
    game = classic("chicken")
    mixed = [eq for eq in vertex_enumeration(game) if np.all(eq[0] > 0)]
    assert len(mixed) == 1
    np.testing.assert_allclose(mixed[0][0], [2 / 3, 1 / 3], atol=1e-12)
    nash_welfare = game.expected_payoffs(list(mixed[0])).sum()
    assert nash_welfare == pytest.approx(28 / 3)
    ce = correlated_equilibrium(game, "welfare")
    assert ce.welfare == pytest.approx(10.5, abs=1e-7)
    np.testing.assert_allclose(ce.distribution, [[0.5, 0.25], [0.25, 0.0]], atol=1e-7)
    assert ce.welfare > nash_welfare
    aumann = np.array([[1 / 3, 1 / 3], [1 / 3, 0.0]])  # Aumann's (1974) traffic light
    assert is_correlated_equilibrium(game, aumann)
    assert not is_correlated_equilibrium(game, np.array([[0.0, 0.0], [0.0, 1.0]]))
    egalitarian = correlated_equilibrium(game, "min_payoff")
    assert egalitarian.payoffs.min() == pytest.approx(5.25, abs=1e-7)


def test_coarse_correlated_contains_correlated():
    game = classic("shapley")
    cce = correlated_equilibrium(game, "welfare", coarse=True)
    ce = correlated_equilibrium(game, "welfare")
    assert cce.welfare >= ce.welfare - 1e-9
    assert is_correlated_equilibrium(game, cce.distribution, coarse=True)


def test_shapley_unique_uniform():
    game = classic("shapley")
    eqs = vertex_enumeration(game)
    assert len(eqs) == 1 and _as_set(eqs) == _as_set(support_enumeration(game))
    np.testing.assert_allclose(np.concatenate(eqs[0]), np.full(6, 1 / 3), atol=1e-12)
    assert pure_nash_equilibria(game) == []


def test_stackelberg_commitment_value_conitzer_sandholm():
    # Row's action 0 strictly dominates, so the Nash payoff is 2; committing to (1/2, 1/2)
    # makes the follower indifferent, who breaks ties for the leader: 3.5 (Conitzer & Sandholm 2006).
    game = NormalFormGame([[[2, 4], [1, 3]], [[1, 0], [0, 1]]])
    se = stackelberg(game, leader=0)
    assert se.follower_action == 1
    np.testing.assert_allclose(se.strategy, [0.5, 0.5], atol=1e-9)
    np.testing.assert_allclose(se.payoffs, [3.5, 0.5], atol=1e-9)
    nash = vertex_enumeration(game)
    assert all(se.payoffs[0] >= game.expected_payoffs(list(eq))[0] for eq in nash)
    follower_lead = stackelberg(game, leader=1)
    np.testing.assert_allclose(follower_lead.payoffs, [2.0, 1.0], atol=1e-9)


def test_coordination_classics_and_pos_poa():
    climbing = classic("climbing")
    assert pure_nash_equilibria(climbing) == [(0, 0), (1, 1)]
    assert pure_nash_equilibria(classic("penalty")) == [(0, 0), (1, 1), (2, 2)]
    stag = classic("stag_hunt")
    assert pure_nash_equilibria(stag) == [(0, 0), (1, 1)]
    assert price_of_stability(stag) == pytest.approx(1.0)
    assert price_of_anarchy(stag) == pytest.approx(8 / 6)
    assert price_of_anarchy(classic("chicken"), "mixed") == pytest.approx(12 / 9)
    assert price_of_stability(classic("chicken"), "mixed") == pytest.approx(12 / (28 / 3))
    assert len(lemke_howson(classic("coordination"), 0)[0]) == 2


def test_structure_checks_and_torch_input():
    assert classic("matching_pennies").is_zero_sum()
    assert classic("rps").is_symmetric() and classic("rps").is_zero_sum()
    assert not classic("bos").is_symmetric() and not classic("pd").is_constant_sum()
    constant = NormalFormGame([[[1, 2], [3, 0]], [[2, 1], [0, 3]]])
    assert constant.is_constant_sum() and not constant.is_zero_sum()
    assert solve_zero_sum(constant).value == pytest.approx(1.5)
    tensor_game = NormalFormGame(torch.tensor([[[3.0, 0.0], [5.0, 1.0]], [[3.0, 5.0], [0.0, 1.0]]]))
    assert pure_nash_equilibria(tensor_game) == [(1, 1)]
    with pytest.raises(ValueError, match="shape"):
        NormalFormGame(np.zeros((3, 2, 2)))
    with pytest.raises(ValueError, match="finite"):
        NormalFormGame(np.full((2, 2, 2), np.nan))
    with pytest.raises(ValueError, match="unknown game"):
        classic("poker")


def test_mixed_domination_finds_more_than_pure():
    game = NormalFormGame([[[3, 0], [1, 1], [0, 3]], [[0, 0], [0, 0], [0, 0]]])
    assert dominated_actions(game, 0) == []
    assert dominated_actions(game, 0, mixed=True) == [1]
    assert iterated_elimination(game, mixed=True).surviving[0] == [0, 2]


def test_three_player_pure_nash_and_regrets():
    # Three-player unanimity game: everyone gets 1 if all match, else 0; in any 2-1 split the
    # minority player gains by joining, so only the unanimous profiles are equilibria.
    u = np.zeros((2, 2, 2))
    u[0, 0, 0] = u[1, 1, 1] = 1.0
    game = NormalFormGame(np.stack([u, u, u]))
    assert pure_nash_equilibria(game) == [(0, 0, 0), (1, 1, 1)]
    profile = [np.array([1.0, 0.0])] * 3
    np.testing.assert_allclose(regrets(game, profile), 0.0)
    assert exploitability(game, [np.array([0.0, 1.0]), np.array([1.0, 0.0]), np.array([1.0, 0.0])]) > 0
    front = pareto_front(np.array([game.payoff(p) for p in game.profiles()]))
    np.testing.assert_allclose(front, [[1.0, 1.0, 1.0]])
    ce = correlated_equilibrium(game)
    assert ce.welfare == pytest.approx(3.0)
