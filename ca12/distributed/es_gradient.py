"""Evolution strategies (Salimans et al. 2017, "Evolution Strategies as a Scalable Alternative to
Reinforcement Learning"): the gradient estimate, its noise and its fitness shaping.

For parameters theta, noise eps_i ~ N(0, I) and fitness F, the search gradient of
E[F(theta + sigma eps)] is estimated from n evaluations in antithetic pairs (theta +- sigma eps_i):

    g = 1 / (n sigma) * sum_{i < n/2} (F~(theta + sigma eps_i) - F~(theta - sigma eps_i)) eps_i

with F~ the centred ranks of the n fitnesses (rank / (n - 1) - 1/2), which makes the update
invariant to the fitness's scale and robust to outliers. Each eps_i is regenerated from its
seed (`perturbation`), so workers send back only seeds and fitnesses, never noise vectors: a
torch CPU generator gives the same normal draws for the same seed in every process.
Written by hand: no maintained library offers ES on torch parameters (evotorch is not on this
stack; OpenAI's reference is TensorFlow and unmaintained).
"""

from __future__ import annotations

from typing import Callable

import torch


def perturbation(seed: int, dim: int) -> torch.Tensor:
    """The noise vector eps [dim] of `seed` (float32, CPU): the same in every process."""
    return torch.randn(dim, generator=torch.Generator().manual_seed(int(seed)))


def pair_seeds(seed: int, pairs: int) -> list[int]:
    """The noise seeds of one generation, drawn from its own seed."""
    return torch.randint(2**31 - 1, (pairs,), generator=torch.Generator().manual_seed(int(seed))).tolist()


def centred_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks of `x`'s entries scaled to [-0.5, 0.5] (OpenAI ES's fitness shaping). Tied entries
    share their average rank (scipy's `rankdata`), so a pair whose two fitnesses tie (both
    perturbations reach a capped return) adds nothing to the estimate."""
    from scipy.stats import rankdata

    ranks = torch.as_tensor(rankdata(x.detach().cpu().flatten().numpy(), method="average") - 1.0, dtype=torch.float32)
    return (ranks / max(x.numel() - 1, 1) - 0.5).view_as(x).to(x.device)


def es_estimate(seeds: list[int], fitness: torch.Tensor, sigma: float, dim: int) -> torch.Tensor:
    """The search gradient [dim] from the pairs' `seeds` and fitnesses [pairs, 2] (plus, minus)."""
    shaped = centred_ranks(fitness.float())
    grad = torch.zeros(dim)
    for seed, (plus, minus) in zip(seeds, shaped):
        grad.add_(perturbation(seed, dim), alpha=float(plus - minus))
    return grad / (fitness.numel() * sigma)


def es_gradient(params: torch.Tensor, fitness_fn: Callable[[torch.Tensor], float], sigma: float, n: int, seed: int) -> torch.Tensor:
    """OpenAI ES's estimate of the gradient of E[F(params + sigma eps)], from `n` evaluations of
    `fitness_fn` (n/2 antithetic pairs whose noise comes from `seed`).

    Args:
        params: a flat parameter vector [D].
        fitness_fn: parameters [D] -> fitness (higher is better).
        sigma: noise scale.
        n: evaluations, even.
        seed: picks the pairs' noise seeds (`pair_seeds`).

    Returns:
        The ascent direction [D] (step along it to increase the fitness).
    """
    if n < 2 or n % 2:
        raise ValueError(f"n must be an even number >= 2 (antithetic pairs), got {n}")
    flat = params.detach().flatten().cpu().float()
    seeds = pair_seeds(seed, n // 2)
    fitness = torch.tensor([[fitness_fn(flat + sigma * sign * perturbation(s, flat.numel())) for sign in (1.0, -1.0)] for s in seeds])
    return es_estimate(seeds, fitness, sigma, flat.numel())
