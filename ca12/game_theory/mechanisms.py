"""Auctions for several items: first-price, second-price (Vickrey 1961) and VCG.

Two valuation formats are used, both NumPy arrays with one row per bidder:

* additive: shape ``(n_bidders, n_items)``, the value of a bundle is the sum of its items;
* bundle: shape ``(n_bidders, 2**n_items)``, entry ``[i, S]`` is bidder i's value for the
  bundle whose item set is the bitmask S (bit j set = item j included); ``[:, 0]`` must be 0.

First- and second-price auctions sell each item separately (simultaneous sealed bids, additive
bids); :func:`per_item_auctions` runs them over a batch of worlds at once (bids
``(..., n_bidders, n_items)``, NumPy or torch), and the single-auction functions are its one-world
case. VCG (Vickrey 1961; Clarke 1971; Groves 1973) takes bundle valuations (additive ones are
converted), picks the welfare-maximising allocation by dynamic programming over item subsets
(O(n 3^k)) and charges Clarke-pivot payments p_i = W(-i) - (W - v_i(S_i)), which makes
truthful reporting a dominant strategy and, with non-negative values, individually rational.
Ties go to the lowest bidder index. All functions return :class:`AuctionResult`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ca12.game_theory.games import to_array

KINDS = ("additive", "bundle")
MAX_BUNDLE_ITEMS = 12


@dataclass(frozen=True)
class AuctionResult:
    """Items won by each bidder, what each pays, and the welfare of the reported values."""

    allocation: tuple[tuple[int, ...], ...]
    payments: np.ndarray
    reported_welfare: float

    def bundle_mask(self, bidder: int) -> int:
        return sum(1 << j for j in self.allocation[bidder])


@dataclass(frozen=True)
class TruthfulnessReport:
    """Largest utility gain from a misreport found on the grid (<= tol means truthful)."""

    truthful: bool
    max_gain: float
    bidder: int | None
    misreport: np.ndarray | None


def _check_additive(bids: Any) -> np.ndarray:
    b = to_array(bids)
    if b.ndim == 1:
        b = b[:, None]
    if b.ndim != 2 or b.shape[0] < 1 or b.shape[1] < 1 or not np.all(np.isfinite(b)):
        raise ValueError(f"bids must be a finite (n_bidders, n_items) array, got {bids!r}")
    return b


def _check_bundle(values: Any) -> tuple[np.ndarray, int]:
    v = to_array(values)
    k = int(np.log2(v.shape[-1])) if v.ndim == 2 and v.shape[-1] > 0 else -1
    if v.ndim != 2 or k < 0 or 2**k != v.shape[1] or k > MAX_BUNDLE_ITEMS:
        raise ValueError(f"bundle values must have shape (n_bidders, 2**k), k <= 12; got {v.shape}")
    if np.any(v[:, 0] != 0) or not np.all(np.isfinite(v)):
        raise ValueError(f"bundle values must be finite with value 0 for the empty bundle: {v!r}")
    return v, k


def additive_to_bundle(values: Any) -> np.ndarray:
    """Convert additive per-item values (n, k) to bundle values (n, 2**k)."""
    v = _check_additive(values)
    k = v.shape[1]
    if k > MAX_BUNDLE_ITEMS:
        raise ValueError(f"at most {MAX_BUNDLE_ITEMS} items for bundle values, got {k}")
    masks = (np.arange(2**k)[:, None] >> np.arange(k)[None, :]) & 1
    return v @ masks.T.astype(float)


@dataclass(frozen=True)
class ItemSales:
    """Outcome of simultaneous sealed-bid auctions, one per item, in a batch of worlds.

    All arrays have the bids' leading (batch) shape followed by ``n_items``: ``winner`` is the
    winning bidder's index (-1 where the item went unsold), ``price`` what the winner pays and
    ``winning_bid`` the winner's bid (both 0 where unsold).
    """

    winner: np.ndarray
    price: np.ndarray
    winning_bid: np.ndarray


RULES = ("first", "second")


def per_item_auctions(bids: Any, reserve: float = 0.0, rule: str = "second") -> ItemSales:
    """Sell every item of every world to its highest bidder, vectorised over the worlds.

    An item goes to its highest bid (ties to the lowest bidder index) when that bid reaches
    ``reserve``, else stays unsold. The winner pays its own bid (``rule="first"``) or, Vickrey
    (1961), the highest of the others' bids and the reserve (``rule="second"``; the reserve alone
    with one bidder).

    Args:
        bids: ``(..., n_bidders, n_items)`` finite bids (NumPy array, nested lists or a torch
            tensor, on any device); a 1-D array is one item's bids.
        reserve: lowest bid that sells an item.
        rule: ``"first"`` or ``"second"`` price.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    b = to_array(bids)
    if b.ndim == 1:
        b = b[:, None]
    if b.ndim < 2 or b.shape[-2] < 1 or b.shape[-1] < 1 or not np.all(np.isfinite(b)):
        raise ValueError(f"bids must be a finite (..., n_bidders, n_items) array, got shape {b.shape}")
    winner = np.argmax(b, axis=-2)  # [..., k]: the first maximum, so ties go to the lowest index
    top = np.take_along_axis(b, winner[..., None, :], axis=-2)[..., 0, :]  # [..., k]
    if rule == "first":
        price = top
    else:
        runner_up = np.sort(b, axis=-2)[..., -2, :] if b.shape[-2] > 1 else np.full_like(top, reserve)
        price = np.maximum(runner_up, reserve)
    sold = top >= reserve
    return ItemSales(np.where(sold, winner, -1), np.where(sold, price, 0.0), np.where(sold, top, 0.0))


def _per_item(bids: Any, reserve: float, second: bool) -> AuctionResult:
    b = _check_additive(bids)
    sales = per_item_auctions(b, reserve, "second" if second else "first")
    sold = np.flatnonzero(sales.winner >= 0)
    won = tuple(tuple(int(j) for j in sold[sales.winner[sold] == i]) for i in range(b.shape[0]))
    payments = np.bincount(sales.winner[sold], weights=sales.price[sold], minlength=b.shape[0]).astype(float)
    return AuctionResult(won, payments, float(sales.winning_bid.sum()))


def first_price_auction(bids: Any, reserve: float = 0.0) -> AuctionResult:
    """Each item goes to its highest bidder, who pays their own bid (not truthful)."""
    return _per_item(bids, reserve, second=False)


def second_price_auction(bids: Any, reserve: float = 0.0) -> AuctionResult:
    """Vickrey (1961): each item goes to its highest bidder at the second-highest bid."""
    return _per_item(bids, reserve, second=True)


def _subset_pairs(k: int) -> tuple[np.ndarray, np.ndarray]:
    """All (mask, sub) with sub a subset of mask, sorted by mask then sub (3**k pairs)."""
    full = np.arange(2**k)
    masks, subs = np.meshgrid(full, full, indexing="ij")
    keep = (subs & ~masks) == 0
    return masks[keep], subs[keep]


def welfare_maximizing_allocation(values: np.ndarray, bidders: list[int]) -> tuple[float, dict[int, int]]:
    """Max-welfare assignment of disjoint bundles to ``bidders`` (free disposal), by DP.

    W_b(mask) = max_{sub of mask} v_b(sub) + W_{b-1}(mask - sub), processed bidder by bidder.
    Returns the welfare and a bundle mask per bidder.
    """
    v, k = _check_bundle(values)
    masks, subs = _subset_pairs(k)
    starts = np.flatnonzero(np.r_[True, masks[1:] != masks[:-1]])
    best = np.zeros(2**k)
    choices = []
    for b in bidders:
        cand = v[b, subs] + best[masks ^ subs]
        new = np.maximum.reduceat(cand, starts)
        is_best = cand >= new[masks] - 1e-12 * max(1.0, float(np.abs(v).max()))
        first = np.full(2**k, -1)
        owners, pos = np.unique(masks[is_best], return_index=True)
        first[owners] = subs[is_best][pos]  # the smallest best sub of each mask
        choices.append(first)
        best = new
    bundles, mask = {}, 2**k - 1
    for b, choice in zip(reversed(bidders), reversed(choices)):
        bundles[b] = int(choice[mask])
        mask ^= bundles[b]
    return float(best[-1]), bundles


def vcg_auction(valuations: Any, kind: str = "bundle") -> AuctionResult:
    """VCG with Clarke-pivot payments (Clarke 1971; Groves 1973).

    Args:
        valuations: reported values, bundle format (default) or additive (``kind="additive"``).
        kind: ``"bundle"`` or ``"additive"``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    v = additive_to_bundle(valuations) if kind == "additive" else _check_bundle(valuations)[0]
    n, k = v.shape[0], int(np.log2(v.shape[1]))
    everyone = list(range(n))
    welfare, bundles = welfare_maximizing_allocation(v, everyone)
    payments = np.zeros(n)
    for i in everyone:
        without_i, _ = welfare_maximizing_allocation(v, [b for b in everyone if b != i])
        payments[i] = without_i - (welfare - v[i, bundles[i]])
    allocation = tuple(tuple(j for j in range(k) if bundles[i] >> j & 1) for i in everyone)
    return AuctionResult(allocation, payments, welfare)


def utilities(result: AuctionResult, true_values: Any, kind: str = "additive") -> np.ndarray:
    """Quasi-linear utilities: true value of the bundle won minus the payment."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == "additive":
        v = _check_additive(true_values)
        won = [float(v[i, list(items)].sum()) for i, items in enumerate(result.allocation)]
    else:
        v, _ = _check_bundle(true_values)
        won = [float(v[i, result.bundle_mask(i)]) for i in range(len(result.allocation))]
    return np.array(won) - result.payments


def is_individually_rational(
    mechanism: Callable[[np.ndarray], AuctionResult],
    true_values: Any,
    kind: str = "additive",
    tol: float = 1e-9,
) -> bool:
    """True if truthful bidders never end with negative utility."""
    values = to_array(true_values)
    return bool(np.all(utilities(mechanism(values), values, kind) >= -tol))


def default_misreports(true_row: np.ndarray, n_grid: int = 11) -> list[np.ndarray]:
    """Scalings 0..2 of the true report plus each coordinate moved over [0, 2 max]."""
    top = 2.0 * max(1.0, float(np.abs(true_row).max()))
    reports = [c * true_row for c in np.linspace(0.0, 2.0, 2 * n_grid - 1)]
    for j in range(true_row.size):
        for x in np.linspace(0.0, top, n_grid):
            r = true_row.copy()
            r[j] = x
            reports.append(r)
    return reports


def check_truthfulness(
    mechanism: Callable[[np.ndarray], AuctionResult],
    true_values: Any,
    kind: str = "additive",
    misreports: Callable[[np.ndarray], list[np.ndarray]] | None = None,
    tol: float = 1e-9,
) -> TruthfulnessReport:
    """Search a grid of unilateral misreports for a profitable deviation.

    Args:
        mechanism: maps a report array (same format as ``true_values``) to an AuctionResult.
        true_values: the bidders' true values (additive or bundle format, see ``kind``).
        kind: valuation format used to score utilities.
        misreports: maps a bidder's true row to candidate reports (default
            :func:`default_misreports`; for bundle values entry 0 is kept at 0).
        tol: gains up to ``tol`` times the value scale count as no gain.
    """
    values = to_array(true_values)
    truthful = utilities(mechanism(values), values, kind)
    scale = tol * max(1.0, float(np.abs(values).max()))
    make = misreports or default_misreports
    best = TruthfulnessReport(True, 0.0, None, None)
    for i in range(values.shape[0]):
        for report in make(values[i].copy()):
            if kind == "bundle":
                report = report.copy()
                report[0] = 0.0
            reports = values.copy()
            reports[i] = report
            gain = float(utilities(mechanism(reports), values, kind)[i] - truthful[i])
            if gain > best.max_gain:
                best = TruthfulnessReport(gain <= scale, gain, i, report)
    return best
