"""MASAC: soft actor-critic (Haarnoja et al. 2018, "Soft Actor-Critic: Off-Policy Maximum Entropy
Deep Reinforcement Learning with a Stochastic Actor"; "Soft Actor-Critic Algorithms and
Applications" for the automatic temperature) with centralised critics, as in BenchMARL.

Decentralised stochastic actors pi(a_a | o_a) and, for every agent, twin soft Q critics that see
all agents' observations and actions (continuous) or all observations with one output per own
action (discrete). Each agent maximises its own reward plus alpha times its policy's entropy;
alpha is tuned so the entropy tracks a target: -|A_a| for continuous actions (Haarnoja et al.),
0.98 log |A_a| for discrete ones (Christodoulou 2019, "Soft Actor-Critic for Discrete Action
Settings", TorchRL's default). The clipped double-Q target (minimum of the two target critics)
curbs overestimation; targets are soft-updated.

What the actors maximise is `algo.actor_objective` (ca12/algos/actor_objective.py). `team` (the
default, BenchMARL's MASAC): every action from the current actors, each actor on the mean of all
agents' soft Q, and with the default shared critic one Q fitted to the agents' mean reward. `own`
(MADDPG's form, Lowe et al. 2017): actor i on its own critic Q_i with a_i sampled from its policy
and the others' actions from the buffer, each agent with its own critic parameters
(critic_model.share_params=false). Discrete actions: the critic Q_i(x, .) reads no action, so the
two differ only in the critic's sharing.

The losses are TorchRL's `SACLoss` (TanhNormal actor, Q(s, a) critic) and `DiscreteSACLoss`
(Categorical actor, Q(s, .) critic) with multi-agent keys. Actor, critics and temperature have
their own Adam optimisers. ISAC (isac.py) swaps in per-agent critics.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from tensordict import TensorDict, TensorDictBase
from torchrl.envs import EnvBase
from torchrl.objectives import DiscreteSACLoss, SACLoss, SoftUpdate

from ca12.algos.actor_objective import OwnSACLoss, check_actor_objective
from ca12.algos.off_policy import OffPolicyModule
from ca12.algos.optim import fused_adam
from ca12.data import ReplayBatch
from ca12.nets.actor_critic import make_discrete_q_critic, make_q_critic
from ca12.nets.policies import make_actor


class MASAC(OffPolicyModule):
    """MASAC as a LightningModule; `training_step` consumes a `ReplayBatch`."""

    centralised_critic = True  # I* variants set False: each agent's critic sees only its own

    def __init__(self, cfg: DictConfig, env: EnvBase):
        check_actor_objective(cfg, type(self).__name__, self.centralised_critic)
        super().__init__(cfg, env)
        cfg, group, g = self.cfg, self.groups[0], self.group
        spec = group.action_spec
        self.actor = make_actor(group, self.model_cfg, device=env.device)
        common = dict(num_qvalue_nets=cfg.num_qvalue_nets, loss_function=cfg.loss_function, alpha_init=cfg.alpha_init, delay_qvalue=True)
        if group.discrete:
            self.critic = make_discrete_q_critic(group, self.critic_model_cfg, centralised=self.centralised_critic, device=env.device)
            self.loss_module = DiscreteSACLoss(self.actor, self.critic, action_space=spec, num_actions=spec.space.n, **common)
            self.loss_module.set_keys(action_value=(g, "action_value"))
        else:
            self.critic = make_q_critic(group, self.critic_model_cfg, centralised=self.centralised_critic, device=env.device)
            # Target entropy -|A| per agent: the actions' last dimension, not the whole group's.
            loss_class = OwnSACLoss if cfg.actor_objective == "own" else SACLoss
            self.loss_module = loss_class(self.actor, self.critic, target_entropy=-float(spec.shape[-1]), **common)
            self.loss_module.set_keys(state_action_value=(g, "state_action_value"))
        self.loss_module.set_keys(
            action=(g, "action"),
            log_prob=(g, "action_log_prob"),
            reward=(g, "reward"),
            done=(g, "done"),  # written by `prepare` [*B, n_agents, 1]
            terminated=(g, "terminated"),
        )
        self.loss_module.make_value_estimator(gamma=cfg.gamma)
        # SACLoss registers its target-entropy buffer on first use: make it now, so a fresh
        # module has the same state_dict keys as a checkpoint (resume).
        _ = self.loss_module.target_entropy
        self.target_updater = SoftUpdate(self.loss_module, tau=cfg.tau)

    @property
    def policy(self) -> torch.nn.Module:
        """The stochastic actor: it samples while collecting and takes its mode in deterministic evaluation."""
        return self.actor

    def configure_optimizers(self):
        loss = self.loss_module
        actor = fused_adam(list(loss.actor_network_params.values(True, True)), lr=self.cfg.actor_lr)
        critic = fused_adam(list(loss.qvalue_network_params.values(True, True)), lr=self.cfg.critic_lr)
        alpha = fused_adam([loss.log_alpha], lr=self.cfg.alpha_lr)
        return [actor, critic, alpha]

    def training_step(self, batch: ReplayBatch, batch_idx: int) -> dict:
        metrics = {"rollout/episode_reward_mean": self.episode_reward_mean(batch.fresh)}
        return {**metrics, **self.replay(batch)}

    def update(self, sample: TensorDictBase) -> TensorDictBase:
        """One step of each optimiser on its own term of one forward pass of the loss.

        The terms' graphs are disjoint in what they train (the actor term reads detached critic
        parameters and a detached alpha, the critic term bootstraps without gradients, the alpha
        term reads detached log-probabilities), so stepping one does not disturb the next backward.
        """
        actor_opt, critic_opt, alpha_opt = self.optimizers()
        out = self.loss_module(self.prepare(sample))
        terms = TensorDict({k: out[k].detach() for k in ("loss_actor", "loss_qvalue", "loss_alpha")})
        terms["grad_norm_actor"] = self.stepper.step(actor_opt, out["loss_actor"], terms)
        terms["grad_norm"] = self.stepper.step(critic_opt, out["loss_qvalue"], terms)
        self.stepper.step(alpha_opt, out["loss_alpha"], terms)
        terms["loss"] = terms["loss_actor"] + terms["loss_qvalue"] + terms["loss_alpha"]
        terms["alpha"] = out["alpha"].detach()
        terms["entropy"] = out["entropy"].detach()
        return terms


ALGORITHM = MASAC
