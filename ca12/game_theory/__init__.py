"""Game-theory toolkit: normal-form games, equilibria, efficiency, mechanisms, dynamics.

Plots live in :mod:`ca12.game_theory.plots` (imported on demand: it loads matplotlib) and the
command line in :mod:`ca12.game_theory.cli` (``python -m ca12.game_theory``).
"""

from __future__ import annotations

from ca12.game_theory.classics import CLASSICS, classic
from ca12.game_theory.correlated import (
    CorrelatedEquilibrium,
    correlated_equilibrium,
    is_correlated_equilibrium,
)
from ca12.game_theory.dominance import EliminationResult, dominated_actions, iterated_elimination
from ca12.game_theory.dynamics import (
    Trajectory,
    discrete_replicator,
    fictitious_play,
    regret_matching,
    replicator_dynamics,
)
from ca12.game_theory.efficiency import (
    mixed_pareto_front,
    optimal_welfare,
    pareto_front,
    pareto_optimal_profiles,
    price_of_anarchy,
    price_of_stability,
    social_welfare,
)
from ca12.game_theory.enumeration import support_enumeration, vertex_enumeration
from ca12.game_theory.equilibria import (
    exploitability,
    is_epsilon_nash,
    nash_conv,
    pure_nash_equilibria,
    regrets,
)
from ca12.game_theory.games import NormalFormGame, random_game
from ca12.game_theory.lemke_howson import lemke_howson, lemke_howson_all_labels
from ca12.game_theory.mechanisms import (
    AuctionResult,
    ItemSales,
    TruthfulnessReport,
    additive_to_bundle,
    check_truthfulness,
    first_price_auction,
    is_individually_rational,
    per_item_auctions,
    second_price_auction,
    utilities,
    vcg_auction,
)
from ca12.game_theory.stackelberg import StackelbergEquilibrium, stackelberg
from ca12.game_theory.zero_sum import ZeroSumSolution, maximin, solve_zero_sum

__all__ = [
    "CLASSICS",
    "AuctionResult",
    "ItemSales",
    "per_item_auctions",
    "CorrelatedEquilibrium",
    "EliminationResult",
    "NormalFormGame",
    "StackelbergEquilibrium",
    "Trajectory",
    "TruthfulnessReport",
    "ZeroSumSolution",
    "additive_to_bundle",
    "check_truthfulness",
    "classic",
    "correlated_equilibrium",
    "discrete_replicator",
    "dominated_actions",
    "exploitability",
    "fictitious_play",
    "first_price_auction",
    "is_correlated_equilibrium",
    "is_epsilon_nash",
    "is_individually_rational",
    "iterated_elimination",
    "lemke_howson",
    "lemke_howson_all_labels",
    "maximin",
    "mixed_pareto_front",
    "nash_conv",
    "optimal_welfare",
    "pareto_front",
    "pareto_optimal_profiles",
    "price_of_anarchy",
    "price_of_stability",
    "pure_nash_equilibria",
    "random_game",
    "regret_matching",
    "regrets",
    "replicator_dynamics",
    "second_price_auction",
    "social_welfare",
    "solve_zero_sum",
    "stackelberg",
    "support_enumeration",
    "utilities",
    "vcg_auction",
    "vertex_enumeration",
]
