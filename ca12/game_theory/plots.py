"""PNG plots (matplotlib): Pareto front, simplex trajectories, equilibrium payoffs.

No backend is forced: headless, matplotlib picks Agg itself; in a notebook the figures also show
inline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ca12.game_theory.efficiency import mixed_payoff_profiles, pareto_front
from ca12.game_theory.games import NormalFormGame

_CORNERS = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"plots are saved as PNG, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def simplex_coordinates(points: np.ndarray) -> np.ndarray:
    """Barycentric points on the 2-simplex (shape (T, 3)) to 2-D triangle coordinates."""
    pts = np.asarray(points, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"need points of shape (T, 3), got {pts.shape}")
    return pts @ _CORNERS


def plot_pareto_front(game: NormalFormGame, path: str | Path, n_samples: int = 2000, seed: int = 0) -> Path:
    """Scatter of mixed payoff profiles with the pure profiles and the Pareto front (2 players)."""
    if game.n_players != 2:
        raise ValueError(f"Pareto plot needs 2 players, got {game.n_players}")
    mixed = mixed_payoff_profiles(game, n_samples, seed)
    pure = np.array([game.payoff(p) for p in game.profiles()])
    front = pareto_front(mixed)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(mixed[:, 0], mixed[:, 1], s=3, alpha=0.3, label="mixed profiles")
    ax.scatter(pure[:, 0], pure[:, 1], c="k", marker="s", label="pure profiles")
    ax.plot(front[:, 0], front[:, 1], "r.-", label="Pareto front")
    ax.set_xlabel("payoff player 0")
    ax.set_ylabel("payoff player 1")
    ax.set_title(f"{game.name}: Pareto front")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_simplex_trajectories(
    trajectories: Sequence[np.ndarray],
    path: str | Path,
    labels: Sequence[str] = ("0", "1", "2"),
    title: str = "replicator dynamics",
) -> Path:
    """Draw strategy trajectories (each (T, 3)) on the 2-simplex."""
    fig, ax = plt.subplots(figsize=(5, 4.5))
    triangle = np.vstack([_CORNERS, _CORNERS[:1]])
    ax.plot(triangle[:, 0], triangle[:, 1], "k-", lw=1)
    for corner, label in zip(_CORNERS, labels):
        ax.annotate(label, corner, textcoords="offset points", xytext=(0, 5), ha="center")
    for traj in trajectories:
        xy = simplex_coordinates(traj)
        ax.plot(xy[:, 0], xy[:, 1], lw=1)
        ax.plot(xy[0, 0], xy[0, 1], "go", ms=4)
        ax.plot(xy[-1, 0], xy[-1, 1], "rx", ms=5)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title)
    return _save(fig, path)


def plot_equilibrium_payoffs(game: NormalFormGame, equilibria: dict[str, np.ndarray], path: str | Path) -> Path:
    """Payoff profiles of named equilibria (e.g. pure/mixed/correlated) over all pure profiles."""
    if game.n_players != 2:
        raise ValueError(f"equilibrium payoff plot needs 2 players, got {game.n_players}")
    pure = np.array([game.payoff(p) for p in game.profiles()])
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(pure[:, 0], pure[:, 1], c="lightgray", marker="s", label="pure profiles")
    for (name, points), marker in zip(equilibria.items(), "o^vDP*"):
        pts = np.atleast_2d(np.asarray(points, dtype=float))
        ax.scatter(pts[:, 0], pts[:, 1], marker=marker, s=50, label=name)
    ax.set_xlabel("payoff player 0")
    ax.set_ylabel("payoff player 1")
    ax.set_title(f"{game.name}: equilibrium payoffs")
    ax.legend(fontsize=8)
    return _save(fig, path)
