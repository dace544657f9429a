"""The toy problem of the PBT paper (Jaderberg et al. 2017, section 4.1 and figure 2), run with
`ca12.multirun.pbt.core`'s exploit and explore.

Weights theta = (theta0, theta1); the true objective is Q(theta) = 1.2 - (theta0^2 + theta1^2),
maximal (1.2) at 0. A member cannot see Q while it trains: it follows the gradient of the
surrogate Q_hat(theta | h) = 1.2 - (h0 theta0^2 + h1 theta1^2), its hyperparameters h = (h0, h1)
deciding which coordinates it moves. Both members start at theta = (0.9, 0.9), one with
h = (1, 0) and one with h = (0, 1), so neither can reach the optimum alone. Every `ready_every`
steps both are scored by the true Q; exploit copies the better member's theta (and h) into the
worse, explore adds Gaussian noise N(0, noise^2) to the copied h. Exploit alone leaves both
members with one h that moves one coordinate; explore alone is a random walk of each h with no
selection. The paper gives no step size, interval or noise scale; the defaults here are ours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.func import grad

from ca12.multirun.pbt.core import pbt_step

START = (0.9, 0.9)
INITIAL_H = ((1.0, 0.0), (0.0, 1.0))


def true_objective(theta: torch.Tensor) -> torch.Tensor:
    """Q(theta) = 1.2 - (theta0^2 + theta1^2), the paper's section 4.1."""
    return 1.2 - (theta**2).sum(-1)


def surrogate_objective(theta: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Q_hat(theta | h) = 1.2 - (h0 theta0^2 + h1 theta1^2), what a member ascends."""
    return 1.2 - (h * theta**2).sum(-1)


@dataclass
class ToyResult:
    final_q: float  # the best member's true Q at the end
    history: list[list[float]]  # each member's Q after every step, [steps][members]
    exploits: int  # how many times a member copied another


def gaussian_explore(noise: float):
    """Explore for the toy: h + N(0, noise^2) per component (h may leave [0, 1])."""

    def explore(hparams: dict, rng: np.random.Generator) -> tuple[dict, dict]:
        h = np.asarray(hparams["h"]) + rng.normal(0.0, noise, size=2)
        return {"h": h.tolist()}, {"h": f"+ N(0, {noise}^2)"}

    return explore


def run_toy(
    steps: int = 100, ready_every: int = 4, lr: float = 0.02, noise: float = 0.2, seed: int = 0, exploit: bool = True, explore: bool = True
) -> ToyResult:
    """Two members trained by gradient ascent on their surrogates for `steps` steps, with PBT's
    exploit and/or explore every `ready_every` steps (both off: independent runs, a grid search
    of the two starting h).

    Args:
        lr: gradient-ascent step size on Q_hat.
        noise: standard deviation of explore's Gaussian perturbation of h.
        seed: seeds the ties, donors and noise.
    """
    rng = np.random.default_rng(seed)
    thetas = [torch.tensor(START, dtype=torch.float64) for _ in INITIAL_H]
    hparams = [{"h": list(h)} for h in INITIAL_H]
    surrogate_gradient = grad(surrogate_objective)
    history, exploits = [], 0
    for step in range(1, steps + 1):
        thetas = [theta + lr * surrogate_gradient(theta, torch.tensor(hp["h"], dtype=torch.float64)) for theta, hp in zip(thetas, hparams)]
        history.append([float(true_objective(theta)) for theta in thetas])
        if step % ready_every == 0 and (exploit or explore):
            decisions = pbt_step(history[-1], hparams, rng, gaussian_explore(noise) if explore else None, quantile=0.5, exploit=exploit)
            for d in decisions:
                if d.donor is not None:
                    thetas[d.member] = thetas[d.donor].clone()
                    exploits += 1
            hparams = [d.hparams for d in decisions]
    return ToyResult(max(history[-1]), history, exploits)
