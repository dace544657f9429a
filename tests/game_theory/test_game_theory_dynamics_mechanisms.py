"""Learning dynamics, auctions and plots."""

from __future__ import annotations

import numpy as np
import pytest

from ca12.game_theory import (
    additive_to_bundle,
    check_truthfulness,
    classic,
    discrete_replicator,
    fictitious_play,
    first_price_auction,
    is_individually_rational,
    regret_matching,
    replicator_dynamics,
    second_price_auction,
    utilities,
    vcg_auction,
)
from ca12.game_theory.plots import (
    plot_equilibrium_payoffs,
    plot_pareto_front,
    plot_simplex_trajectories,
)


def test_fictitious_play_converges_in_rps():
    traj = fictitious_play(classic("rps"), steps=3000, seed=0, record_every=10)
    assert traj.exploitability[-1] < 0.03
    assert traj.exploitability[-1] < traj.exploitability[1] / 5
    np.testing.assert_allclose(traj.final()[0], np.full(3, 1 / 3), atol=0.05)


def test_fictitious_play_cycles_on_shapley():
    traj = fictitious_play(classic("shapley"), steps=3000, seed=0, record_every=10)
    assert traj.exploitability[len(traj.exploitability) // 2 :].min() > 0.1


def test_fictitious_play_is_seeded():
    a = fictitious_play(classic("coordination"), steps=50, seed=4)
    b = fictitious_play(classic("coordination"), steps=50, seed=4)
    np.testing.assert_array_equal(a.strategies[0], b.strategies[0])


def test_replicator_rps_conserves_product():
    x0 = np.array([0.5, 0.3, 0.2])
    traj = replicator_dynamics(classic("rps"), x0=[x0, x0], t_max=60.0)
    product = np.prod(traj.strategies[0], axis=1)
    np.testing.assert_allclose(product, 0.03, rtol=1e-7)
    assert traj.exploitability.min() > 0  # orbits, never reaches the centre


def test_replicator_prisoners_dilemma_goes_to_defection():
    cont = replicator_dynamics(classic("pd"), t_max=40.0)
    disc = discrete_replicator(classic("pd"), steps=300)
    for traj in (cont, disc):
        assert traj.final()[0][1] > 0.99
        assert traj.exploitability[-1] < 0.01
    two_pop = replicator_dynamics(classic("bos"), x0=[[0.9, 0.1], [0.8, 0.2]], t_max=30.0)
    np.testing.assert_allclose(two_pop.final()[0], [1.0, 0.0], atol=1e-4)


def test_regret_matching_zero_sum_average_converges():
    traj = regret_matching(classic("rps"), steps=4000, seed=1, record_every=100)
    assert traj.exploitability[-1] < 0.05
    expected = regret_matching(classic("matching_pennies"), steps=2000, sample=False)
    assert expected.exploitability[-1] < 1e-9
    with pytest.raises(ValueError, match="steps"):
        regret_matching(classic("rps"), steps=0)


VALUES = np.array([[10.0, 3.0], [6.0, 5.0], [2.0, 4.0]])


def test_vickrey_truthful_and_ir_first_price_not():
    assert check_truthfulness(second_price_auction, VALUES).truthful
    assert is_individually_rational(second_price_auction, VALUES)
    report = check_truthfulness(first_price_auction, VALUES)
    assert not report.truthful and report.max_gain > 1.0 and report.bidder == 0
    vickrey = second_price_auction(VALUES)
    assert vickrey.allocation == ((0,), (1,), ())
    np.testing.assert_allclose(vickrey.payments, [6.0, 4.0, 0.0])
    np.testing.assert_allclose(utilities(first_price_auction(VALUES), VALUES), 0.0)


def test_vcg_additive_equals_vickrey_per_item():
    vcg = vcg_auction(VALUES, kind="additive")
    vickrey = second_price_auction(VALUES)
    assert vcg.allocation == vickrey.allocation
    np.testing.assert_allclose(vcg.payments, vickrey.payments)
    np.testing.assert_allclose(additive_to_bundle([[1.0, 2.0]]), [[0.0, 1.0, 2.0, 3.0]])


def test_vcg_bundles_truthful_ir_with_complements():
    # Bidder 0 wants both items (10); bidders 1 and 2 each want one item (6 and 5).
    values = np.array([[0, 0, 0, 10.0], [0, 6.0, 0, 6.0], [0, 0, 5.0, 5.0]])
    result = vcg_auction(values)
    assert result.allocation == ((), (0,), (1,)) and result.reported_welfare == 11.0
    np.testing.assert_allclose(result.payments, [0.0, 5.0, 4.0])  # Clarke pivot: 10 - 5, 10 - 6
    assert check_truthfulness(vcg_auction, values, kind="bundle").truthful
    assert is_individually_rational(vcg_auction, values, kind="bundle")
    with pytest.raises(ValueError, match="empty bundle"):
        vcg_auction(np.ones((2, 4)))


def test_plots_written(tmp_path):
    game = classic("chicken")
    assert plot_pareto_front(game, tmp_path / "front.png", n_samples=100).stat().st_size > 1000
    traj = replicator_dynamics(classic("rps"), x0=[[0.6, 0.3, 0.1]] * 2, t_max=20.0, n_points=100)
    assert plot_simplex_trajectories([traj.strategies[0]], tmp_path / "rps.png").exists()
    path = plot_equilibrium_payoffs(game, {"CE": [5.25, 5.25]}, tmp_path / "eq.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="PNG"):
        plot_pareto_front(game, tmp_path / "front.pdf")
