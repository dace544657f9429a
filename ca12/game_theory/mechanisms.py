"""Auctions for several items: first-price, second-price (Vickrey 1961) and VCG.

Two valuation formats are used, both NumPy arrays with one row per bidder:

* additive: shape ``(n_bidders, n_items)``, the value of a bundle is the sum of its items;
* bundle: shape ``(n_bidders, 2**n_items)``, entry ``[i, S]`` is bidder i's value for the
  bundle whose item set is the bitmask S (bit j set = item j included); ``[:, 0]`` must be 0.

First- and second-price auctions sell each item separately (simultaneous sealed bids, additive
bids). VCG (Vickrey 1961; Clarke 1971; Groves 1973) takes bundle valuations (additive ones are
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


def _per_item(bids: Any, reserve: float, second: bool) -> AuctionResult:
    b = _check_additive(bids)
    n, k = b.shape
    won: list[list[int]] = [[] for _ in range(n)]
    payments = np.zeros(n)
    welfare = 0.0
    for item in range(k):
        col = b[:, item]
        winner = int(np.argmax(col))  # lowest index among ties
        if col[winner] < reserve:
            continue
        rest = np.delete(col, winner)
        price = max(float(rest.max()) if rest.size else reserve, reserve) if second else col[winner]
        won[winner].append(item)
        payments[winner] += price
        welfare += col[winner]
    return AuctionResult(tuple(tuple(w) for w in won), payments, float(welfare))


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


def welfare_maximizing_allocation(
    values: np.ndarray, bidders: list[int]
) -> tuple[float, dict[int, int]]:
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
    mechanism: Callable[[np.ndarray], AuctionResult], true_values: Any,
    kind: str = "additive", tol: float = 1e-9,
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
    mechanism: Callable[[np.ndarray], AuctionResult], true_values: Any,
    kind: str = "additive", misreports: Callable[[np.ndarray], list[np.ndarray]] | None = None,
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
