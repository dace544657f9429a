"""Positive signalling (Eccles et al. 2019, "Biases for emergent communication"): a loss bias for
agents whose env actions are messages (a speaker's channel), the mutual information between a
categorical policy's actions and its observations over a batch; MAPPO's loss subtracts it,
weighted (`algo.signalling_coeff`, ca12/algos/mappo.py), through `Signalling`, an optional part of
the PPO family's update that MAPPO, IPPO and PPO hold rather than inherit.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from tensordict import TensorDictBase
from torch import nn

from ca12.envs.layout import AgentLayout
from ca12.errors import UsageError


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


class Signalling:
    """The signalling bonus of the groups in `algo.signalling_groups` (default: every trained
    group): the loss subtracts `algo.signalling_coeff` times their `positive_signalling`,
    estimated on each minibatch from their actors' current logits. No parameters of its own."""

    def __init__(self, coeff: float, actors: dict[str, nn.Module]):
        self.coeff, self.actors = coeff, actors

    @classmethod
    def build(cls, algo: DictConfig, layout: AgentLayout, actors: nn.ModuleDict) -> "Signalling | None":
        """The bonus `algo` asks for over the trained groups' `actors`, or None when its weight is
        0; one-line `UsageError`s for groups that are not trained or do not act discretely."""
        if algo.signalling_coeff == 0:
            return None
        names = list(algo.signalling_groups) if algo.signalling_groups is not None else list(actors)
        for name in names:
            if name not in actors:
                raise UsageError(f"algo.signalling_groups names {name!r}, which is not a trained group (trained: {', '.join(actors)})")
            if not layout.groups[name].discrete:
                raise UsageError(
                    f"algo.signalling_coeff needs discrete actions: group {name!r} acts continuously "
                    "(the bonus is the mutual information of categorical policies)"
                )
        return cls(float(algo.signalling_coeff), {name: actors[name] for name in names})

    def information(self, g: str, minibatch: TensorDictBase) -> torch.Tensor:
        """Group `g`'s I(action; observation) on `minibatch`, summed over its agents (differentiable)."""
        logits = self.actors[g].get_dist(minibatch.copy()).logits  # a shallow copy: the minibatch keeps its keys
        return positive_signalling(logits).sum()

    def loss_terms(self, minibatch: TensorDictBase) -> dict[str, torch.Tensor]:
        """`loss_signalling`, minus the weighted information summed over the groups, and
        `signalling`, the plain (detached) information."""
        information = sum(self.information(g, minibatch) for g in self.actors)
        return {"signalling": information.detach(), "loss_signalling": -self.coeff * information}

    def metrics(self, batch: TensorDictBase) -> dict:
        return {}
