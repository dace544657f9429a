"""GAE on values the module computes itself, for two optional parts of the PPO family's update
(MAPPO, IPPO and PPO hold them rather than inherit them): recurrent critics (`critic_model=gru|lstm`)
and value normalisation (`algo.value_norm`, ca12/algos/value_norm.py).

TorchRL's GAE calls the value network on the batch and again on its next observations as a
second sequence. A recurrent critic would start that sequence from a stale hidden state and run
across episode ends: here it replays each trajectory from the hidden state it had when the batch
was collected (resetting at episode starts), then steps once from its state after step t on the
next observation. A normalised critic's outputs must be turned back into returns before GAE reads
them: here the values are written into the batch first, where the normaliser rescales them. In
both cases TorchRL's `MultiAgentGAE` (without a value network) turns the values into advantages.
"""

from __future__ import annotations

from tensordict import TensorDictBase
from torch import nn
from torchrl.modules import set_recurrent_mode
from torchrl.objectives.value import MultiAgentGAE

from ca12.nets.recurrent import step_on_next

KEYS = ("value", "reward", "done", "terminated", "advantage", "value_target")


class CriticValuesGAE(nn.ModuleDict):
    """One `MultiAgentGAE` per group whose values the module computes itself, keyed by group
    (empty when no group's are): `values` writes the critic's values into a batch, then
    `estimators[g](batch)` computes the advantages and value targets from them. Its state_dict
    keys are `estimators.<group>.*` under the module, as they were when MAPPO built the
    estimators of recurrent critics itself."""

    recurrent: bool = False

    @classmethod
    def build(cls, losses: nn.ModuleDict, recurrent: bool, normalised: bool, gamma: float, lmbda: float) -> "CriticValuesGAE":
        """Estimators for every group of `losses` (TorchRL PPO losses, whose keys they share)
        when the critics are `recurrent` or `normalised`, none otherwise."""
        estimators = cls()
        estimators.recurrent = recurrent
        for g, loss in losses.items() if recurrent or normalised else ():
            estimators[g] = MultiAgentGAE(gamma=gamma, lmbda=lmbda, value_network=None)
            estimators[g].set_keys(**{key: getattr(loss.tensor_keys, key) for key in KEYS})
        return estimators

    def values(self, g: str, critic: nn.Module, batch: TensorDictBase) -> None:
        """Writes group `g`'s critic outputs V(o_t) and, under "next", V(o_{t+1}) over a batch [B, T]."""
        if self.recurrent:
            self.sequence_values(g, critic, batch)
        else:
            critic(batch)
            critic(batch.get("next"))

    def sequence_values(self, g: str, critic: nn.Module, batch: TensorDictBase) -> None:
        """A recurrent critic's V(o_t) and V(o_{t+1}), replayed over whole trajectories."""
        value = self[g].tensor_keys.value
        with set_recurrent_mode(True):
            critic(batch)  # writes V(o_t) and the state after each step under "next"
        batch.set(("next", *value), step_on_next(critic, batch).get(value))
