"""IQL (Tan 1993, "Multi-Agent Reinforcement Learning: Independent vs. Cooperative Agents"):
every agent learns its own Q(o_a, u_a) by DQN on its own reward, treating the others as part of
the environment. QMIX's replay, exploration and target updates with TorchRL's `DQNLoss` on
per-agent values instead of a mixed team value.
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torchrl.envs import EnvBase
from torchrl.objectives import DQNLoss

from ca12.algos.off_policy import per_agent_flags
from ca12.algos.qmix import QMIX


class IQL(QMIX):
    def make_loss(self, env: EnvBase) -> DQNLoss:
        g = self.group
        loss = DQNLoss(self.qnet, delay_value=True, action_space=env.full_action_spec_unbatched[g, "action"])
        loss.set_keys(
            action_value=(g, "action_value"),
            value=(g, "chosen_action_value"),
            action=(g, "action"),
            reward=(g, "reward"),
            done=(g, "done"),  # written by `prepare` [*B, n_agents, 1]
            terminated=(g, "terminated"),
        )
        return loss

    def value_parts(self) -> tuple:
        loss = self.loss_module
        return loss.value_network, loss.value_network_params, loss.target_value_network_params, None

    def mix(self, td: TensorDictBase, target: bool) -> torch.Tensor:
        """No mixer: each agent's own chosen value [*B, n_agents, 1]."""
        return td[self.group, "chosen_action_value"]

    def prepare(self, sample: TensorDictBase) -> TensorDictBase:
        """Per-agent rewards and done flags: no team reward (each agent learns alone)."""
        return per_agent_flags(sample, self.group)


ALGORITHM = IQL
