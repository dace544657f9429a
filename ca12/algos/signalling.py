"""Positive signalling (Eccles et al. 2019, "Biases for emergent communication"): a loss bias for
agents whose env actions are messages (a speaker's channel), the mutual information between a
categorical policy's actions and its observations over a batch; MAPPO's loss subtracts it,
weighted (`algo.signalling_coeff`, ca12/algos/mappo.py).
"""

from __future__ import annotations

import torch


def positive_signalling(logits: torch.Tensor) -> torch.Tensor:
    """Each agent's mutual information between its action and its observation, estimated over a
    batch of categorical policies: I = H(mean_b pi_b) - mean_b H(pi_b) (Eccles et al. 2019,
    "Biases for emergent communication", positive signalling, in its plain mutual-information
    form without their target entropy). Large when the agent acts differently on different
    observations and consistently on each: a speaker whose messages tell its observations apart,
    before any listener reads them (the chicken-and-egg a reward alone leaves unbroken).

    Args:
        logits: [*B, n_agents, n_actions], every leading dim a sample of the batch.
    Returns: [n_agents], differentiable, in nats (between 0 and log n_actions).
    """
    log_p = logits.log_softmax(-1)
    p = log_p.exp()
    batch = tuple(range(logits.dim() - 2))
    marginal = p.mean(batch)  # [n_agents, n_actions]
    h_marginal = -(marginal * marginal.clamp_min(torch.finfo(marginal.dtype).tiny).log()).sum(-1)
    h_conditional = -(p * log_p).sum(-1).mean(batch)
    return h_marginal - h_conditional
