"""GAE for recurrent critics (`critic_model=gru|lstm`): an optional part of the PPO family's update
that MAPPO, IPPO and PPO hold rather than inherit.

TorchRL's GAE calls the value network on the batch and again on its next observations as a
second sequence: a recurrent critic would start that sequence from a stale hidden state and run
across episode ends. Here the critic replays each trajectory from the hidden state it had when
the batch was collected (resetting at episode starts), then steps once from its state after
step t on the next observation; TorchRL's `MultiAgentGAE` (without a value network) turns those
values into advantages.
"""

from __future__ import annotations

from tensordict import TensorDictBase
from torch import nn
from torchrl.modules import set_recurrent_mode
from torchrl.objectives.value import MultiAgentGAE

from ca12.nets.recurrent import step_on_next

KEYS = ("value", "reward", "done", "terminated", "advantage", "value_target")


class RecurrentCriticGAE(nn.ModuleDict):
    """One `MultiAgentGAE` per group whose critic is recurrent, keyed by group (empty when none
    is). Its state_dict keys are `estimators.<group>.*` under the module, as they were when
    MAPPO built the estimators itself."""

    @classmethod
    def build(cls, losses: nn.ModuleDict, recurrent: bool, gamma: float, lmbda: float) -> "RecurrentCriticGAE":
        """Estimators for every group of `losses` (TorchRL PPO losses, whose keys they share)
        when the critics are `recurrent`, none otherwise."""
        estimators = cls()
        for g, loss in losses.items() if recurrent else ():
            estimators[g] = MultiAgentGAE(gamma=gamma, lmbda=lmbda, value_network=None)
            estimators[g].set_keys(**{key: getattr(loss.tensor_keys, key) for key in KEYS})
        return estimators

    def sequence_values(self, g: str, critic: nn.Module, batch: TensorDictBase) -> None:
        """Writes group `g`'s V(o_t) and, under "next", V(o_{t+1}) over a batch [B, T]."""
        value = self[g].tensor_keys.value
        with set_recurrent_mode(True):
            critic(batch)  # writes V(o_t) and the state after each step under "next"
        batch.set(("next", *value), step_on_next(critic, batch).get(value))

    def advantage(self, g: str, critic: nn.Module, batch: TensorDictBase) -> None:
        """Writes group `g`'s advantage and value target into `batch` ([B, T, n_agents, 1])."""
        self.sequence_values(g, critic, batch)
        self[g](batch)
