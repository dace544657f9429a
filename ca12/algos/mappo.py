"""MAPPO (Yu et al. 2022, "The Surprising Effectiveness of PPO in Cooperative Multi-Agent Games").

Decentralised actors (each agent acts on its own observation) and a centralised critic (each
agent's value sees every agent's observation). The loss is TorchRL's `MAPPOLoss` (clipped
surrogate, value loss, entropy bonus) with `MultiAgentGAE` advantages; this file only wires
them to a collector batch: advantages once per batch, then `num_epochs` passes of shuffled
minibatches, each one Adam step with gradient-norm clipping through Lightning.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from tensordict import TensorDictBase
from torchrl.envs import EnvBase
from torchrl.objectives import ValueEstimators
from torchrl.objectives.multiagent import MAPPOLoss

from ca12.algos.base import RLModule
from ca12.envs import agent_group
from ca12.nets import make_actor, make_critic


class MAPPO(RLModule):
    """MAPPO as a LightningModule; `training_step` consumes one collector batch `[B, T]`."""

    loss_class = MAPPOLoss
    centralised_critic = True

    def __init__(self, cfg: DictConfig, env: EnvBase):
        super().__init__(cfg)
        self.group = agent_group(env)
        nets = dict(share_params=cfg.share_params, hidden_sizes=cfg.hidden_sizes, activation=cfg.activation)
        self.actor = make_actor(env, self.group, **nets)
        self.critic = make_critic(env, self.group, centralised=self.centralised_critic, **nets)
        self.loss_module = self.loss_class(
            self.actor,
            self.critic,
            clip_epsilon=cfg.clip_epsilon,
            entropy_coeff=cfg.entropy_coeff,
            critic_coeff=cfg.critic_coeff,
            normalize_advantage=cfg.normalize_advantage,
        )
        g = self.group
        self.loss_module.set_keys(
            reward=(g, "reward"),
            action=(g, "action"),
            sample_log_prob=(g, "action_log_prob"),
            value=(g, "state_value"),
            advantage=(g, "advantage"),
            value_target=(g, "value_target"),
            done="done",  # team-level [B, T, 1]; MultiAgentGAE broadcasts it to the agents
            terminated="terminated",
        )
        self.loss_module.make_value_estimator(ValueEstimators.MAGAE, gamma=cfg.gamma, lmbda=cfg.lmbda)

    @property
    def policy(self) -> torch.nn.Module:
        return self.actor

    def configure_optimizers(self):
        return torch.optim.Adam(self.loss_module.parameters(), lr=self.cfg.lr)

    @torch.no_grad()
    def compute_advantage(self, batch: TensorDictBase) -> TensorDictBase:
        """Writes `(group, "advantage")` and `(group, "value_target")` into `batch` ([B, T, n_agents, 1])."""
        return self.loss_module.value_estimator(
            batch,
            params=self.loss_module.critic_network_params,
            target_params=self.loss_module.target_critic_network_params,
        )

    def loss(self, minibatch: TensorDictBase) -> tuple[torch.Tensor, TensorDictBase]:
        """Total loss to minimise and the loss module's terms (scalars) for logging."""
        terms = self.loss_module(minibatch)
        total = sum(value for key, value in terms.items() if key.startswith("loss_"))
        return total, terms

    def training_step(self, batch: TensorDictBase, batch_idx: int) -> None:
        self.compute_advantage(batch)
        metrics = self.minibatch_epochs(batch.reshape(-1))  # [B * T] frames, each holding all agents
        metrics["rollout/episode_reward_mean"] = self.episode_reward_mean(batch, self.group)
        self.log_iteration(batch, metrics)


ALGORITHM = MAPPO
