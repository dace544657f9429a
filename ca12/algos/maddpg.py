"""MADDPG (Lowe et al. 2017, "Multi-Agent Actor-Critic for Mixed Cooperative-Competitive
Environments").

Decentralised deterministic actors mu(o_a) and, for every agent, a centralised critic
Q_a(o_1..o_n, a_1..a_n) that sees all agents' observations and actions: with the others' actions
as inputs the environment is stationary from each critic's point of view, which is what makes
DDPG (Lillicrap et al. 2016) work with many learners. Trained off-policy from a replay buffer of
joint transitions (all agents' actions stored together) with soft-updated target actors and
critics, each critic Q_i on agent i's own reward. What the actors ascend is `algo.actor_objective`
(ca12/algos/actor_objective.py): `own` (the default, the paper's eq. 6) trains actor i on Q_i with
a_i from the current actor and the others' actions from the buffer, and gives each agent its own
critic parameters (conf/algo/maddpg.yaml: critic_model.share_params=false); `team` is TorchRL's and
BenchMARL's form, every actor on the mean of all agents' Q with every action from the current
actors. Exploration is annealed additive Gaussian noise on the
collector's actions; discrete actions use a straight-through Gumbel-softmax actor, as in the
paper (see ca12/nets/actor_critic.py for how its one-hot meets the env's action format).

The losses are TorchRL's `DDPGLoss` with multi-agent keys (as BenchMARL wires it; `own` replaces its
actor term); the critic
and the actor have their own Adam optimisers and are updated in that order on each minibatch.
IDDPG (iddpg.py) only swaps the critic for a per-agent one.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictSequential
from torchrl.envs import EnvBase
from torchrl.objectives import DDPGLoss, SoftUpdate

from ca12.algos.actor_objective import OwnDDPGLoss, check_actor_objective
from ca12.algos.off_policy import OffPolicyModule
from ca12.algos.optim import fused_adam
from ca12.data import ReplayBatch
from ca12.nets.actor_critic import critic_action_key, make_deterministic_actor, make_exploration, make_q_critic


class MADDPG(OffPolicyModule):
    """MADDPG as a LightningModule; `training_step` consumes a `ReplayBatch`."""

    centralised_critic = True  # I* variants set False: each agent's critic sees only its own

    def __init__(self, cfg: DictConfig, env: EnvBase):
        check_actor_objective(cfg, type(self).__name__, self.centralised_critic)
        super().__init__(cfg, env)
        cfg, group, g = self.cfg, self.groups[0], self.group
        self.actor = make_deterministic_actor(group, self.model_cfg, gumbel_temperature=cfg.gumbel_temperature, device=env.device)
        self.critic = make_q_critic(group, self.critic_model_cfg, centralised=self.centralised_critic, device=env.device)
        self.exploration = make_exploration(
            group, sigma_init=cfg.sigma_init, sigma_end=cfg.sigma_end, annealing_frames=cfg.annealing_frames, device=env.device
        )
        self._policy = self.actor if self.exploration is None else TensorDictSequential(self.actor, self.exploration)
        common = {"loss_function": cfg.loss_function, "delay_actor": True, "delay_value": True}
        if cfg.actor_objective == "own":
            self.loss_module = OwnDDPGLoss(self.actor, self.critic, action_key=critic_action_key(group), **common)
        else:
            self.loss_module = DDPGLoss(self.actor, self.critic, **common)
        self.loss_module.set_keys(
            state_action_value=(g, "state_action_value"),
            reward=(g, "reward"),
            done=(g, "done"),  # written by `prepare` [*B, n_agents, 1]
            terminated=(g, "terminated"),
        )
        self.loss_module.make_value_estimator(gamma=cfg.gamma)
        self.target_updater = SoftUpdate(self.loss_module, tau=cfg.tau)

    @property
    def policy(self) -> torch.nn.Module:
        """The exploring policy the collector acts with (noise-free in deterministic evaluation)."""
        return self._policy

    def configure_optimizers(self):
        actor = fused_adam(list(self.loss_module.actor_network_params.values(True, True)), lr=self.cfg.actor_lr)
        critic = fused_adam(list(self.loss_module.value_network_params.values(True, True)), lr=self.cfg.critic_lr)
        return [actor, critic]

    def training_step(self, batch: ReplayBatch, batch_idx: int) -> dict:
        metrics = {"rollout/episode_reward_mean": self.episode_reward_mean(batch.fresh)}
        if self.exploration is not None:  # the noise std anneals with collected frames
            self.exploration.step(batch.fresh.numel())
            metrics["train/sigma"] = self.exploration.sigma.detach()
        return {**metrics, **self.replay(batch, squared_td_error=True)}

    def update(self, sample: TensorDictBase) -> TensorDictBase:
        """Critic step on the TD(0) target of the target actor and critic, then the actor step
        through the (already updated) critic, as in DDPG."""
        actor_opt, critic_opt = self.optimizers()
        sample = self.prepare(sample)
        loss_value, _ = self.loss_module.loss_value(sample)
        terms = TensorDict({"loss_value": loss_value.detach()})
        terms["grad_norm"] = self.stepper.step(critic_opt, loss_value, terms)
        loss_actor, _ = self.loss_module.loss_actor(sample)
        terms["loss_actor"] = loss_actor.detach()
        terms["grad_norm_actor"] = self.stepper.step(actor_opt, loss_actor, terms)
        terms["loss"] = terms["loss_value"] + terms["loss_actor"]
        return terms


ALGORITHM = MADDPG
