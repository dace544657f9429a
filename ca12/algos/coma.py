"""COMA (Foerster et al. 2018, "Counterfactual Multi-Agent Policy Gradients").

Decentralised stochastic actors pi_a(u_a | o_a) and one centralised critic Q(s, u) over the
joint action. Credit assignment: each agent's advantage compares the joint action's value with
the value it would have had, in expectation over the agent's own policy, had only that agent
acted differently (the counterfactual baseline, eq. 4):

    A_a(s, u) = Q(s, u) - sum_{u'} pi_a(u' | o_a) Q(s, (u^-a, u'))

The critic is trained on TD(lambda) targets (eq. 3 of the paper's appendix; lambda-returns of
the critic's own values, computed once per batch with the critic as it stood at the start of the
iteration, which acts as the target network). TorchRL has no COMA: the maths is written here in
small functions, `coma_advantages`, `central_v_advantages` and `lambda_returns`. Teams share one
reward: the mean of the agents' rewards.

`algo.baseline` picks what the critic learns and what each agent's advantage is:

* `counterfactual` (the paper's COMA): `COMACritic` learns Q(s, u) per agent on the TD(lambda)
  targets of Q, and each agent's advantage is its own counterfactual one (above).
* `central_v` (the paper's "central-V" ablation, section 6): `CentralVCritic`, the same MLP
  family on the state alone, learns V(s) on the TD(lambda) targets of V, and every agent gets
  the same advantage G^lambda_t - V(s_t), the team's lambda-return minus the state's value. The
  paper's central-V uses the TD error r + gamma V(s') - V(s), which is this at algo.lmbda=0
  (where the critic's targets are TD(0) too). The run's lambda is kept so that the advantage
  is G - V for the very return G the critic regresses, and the two options differ in the
  critic and the baseline only; on one-shot tasks G = r and both forms are r - V(s). Every
  agent's advantage then carries every other agent's exploration noise, which the
  counterfactual baseline removes: the credit-assignment comparison of
  benchmarks/credit_assignment.py.

Each iteration trains the critic first (`num_epochs` passes over the batch), then the actors
(`actor_epochs` passes) on the updated critic's advantages. COMA's policy gradient has no ratio
clipping, so few actor passes: ten collapsed the policies to one deterministic action.

COMA is built for one shared team reward. On a task whose agents have their own rewards and are
penalised for collisions (vmas/navigation as BenchMARL sets it), the mean of those rewards
rewards moving in lock-step, which avoids collisions: measured, every agent settles on the same
fixed action (return about -2.6, below a random policy's -0.6). With the task's shared reward
(`env.shared_rew=true`), or without collisions, it learns navigation (see benchmarks/learning.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from tensordict import TensorDict, TensorDictBase
from torch import nn
from torchrl.envs import EnvBase

from ca12.algos.base import RLModule
from ca12.algos.on_policy import minibatch_epochs
from ca12.algos.optim import fused_adam
from ca12.nets.builder import activation_class
from ca12.nets.policies import make_actor


def coma_advantages(q_all: torch.Tensor, probs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Counterfactual advantages (Foerster et al. 2018, eq. 4).

    Args:
        q_all: [*, n_agents, n_actions], Q(s, (u^-a, u')) for every alternative u' of agent a.
        probs: [*, n_agents, n_actions], pi_a(u' | o_a).
        actions: [*, n_agents] integer actions taken.

    Returns:
        The advantage of the taken actions [*, n_agents] and of every alternative
        [*, n_agents, n_actions]; the latter has zero mean under each agent's policy.
    """
    baseline = (probs * q_all).sum(-1, keepdim=True)  # [*, n_agents, 1]
    all_advantages = q_all - baseline
    taken = all_advantages.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    return taken, all_advantages


def central_v_advantages(returns: torch.Tensor, values: torch.Tensor, n_agents: int) -> torch.Tensor:
    """Central-V advantages (Foerster et al. 2018, section 6, "central-V"): one number per step,
    the team's lambda-return minus the central critic's V(s), given to every agent alike.

    Args:
        returns: [*, 1] TD(lambda) targets G^lambda of V (`lambda_returns`).
        values: [*, 1] V(s).
        n_agents: agents sharing the advantage.

    Returns:
        [*, n_agents], G^lambda - V(s) in every agent's column.
    """
    return (returns - values).expand(*values.shape[:-1], n_agents)


def lambda_returns(
    reward: torch.Tensor, next_q: torch.Tensor, terminated: torch.Tensor, continues: torch.Tensor, gamma: float, lmbda: float
) -> torch.Tensor:
    """TD(lambda) targets along time dim -2 (Sutton & Barto 2018, eq. 12.3, recursive form).

    G_t = r_t + gamma (1 - term_t) [ Q_{t+1} + lambda c_t (G_{t+1} - Q_{t+1}) ], where
    Q_{t+1} is the critic's value of the next state and joint action and c_t says whether
    step t+1 continues the same trajectory inside the batch (else G_{t+1} is not known and the
    target bootstraps from Q_{t+1} alone).

    Args:
        reward, next_q, terminated, continues: [*, T, k] (any trailing k, e.g. agents).
    """
    returns = torch.zeros_like(next_q)
    following = torch.zeros_like(next_q[..., -1, :])
    for t in reversed(range(reward.shape[-2])):
        bootstrap = next_q[..., t, :] + lmbda * continues[..., t, :] * (following - next_q[..., t, :])
        following = reward[..., t, :] + gamma * (1.0 - terminated[..., t, :]) * bootstrap
        returns[..., t, :] = following
    return returns


def _mlp(width: int, hidden_sizes, activation: str, n_out: int) -> nn.Sequential:
    """The critics' network family: Linear + activation per hidden size, then a linear head."""
    layers = []
    for size in hidden_sizes:
        layers += [nn.Linear(width, size), activation_class(activation)()]
        width = size
    return nn.Sequential(*layers, nn.Linear(width, n_out))


class COMACritic(nn.Module):
    """Q(s, (u^-a, .)) for every agent a, one output per action of agent a (the paper's critic,
    Fig. 1c): input = a's own observation, all agents' observations (the state), the other
    agents' one-hot actions (a's own zeroed) and a's one-hot id.

    The own observation is in the input on purpose (the paper has it too): a shared critic given
    only the state and the id must first learn which slice of the state is agent a's, and until
    it has, its action values are the same for every agent and push all of them the same way.
    """

    def __init__(self, n_agents: int, obs_dim: int, n_actions: int, hidden_sizes, activation: str):
        super().__init__()
        self.n_agents, self.n_actions = n_agents, n_actions
        self.net = _mlp(obs_dim + n_agents * obs_dim + n_agents * n_actions + n_agents, hidden_sizes, activation, n_actions)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """obs [*, n, obs_dim], actions [*, n] -> Q [*, n, n_actions]."""
        n, batch = self.n_agents, obs.shape[:-2]
        state = obs.flatten(-2).unsqueeze(-2).expand(*batch, n, -1)  # [*, n, n*obs]
        onehot = F.one_hot(actions, self.n_actions).to(obs.dtype)  # [*, n, A]
        others = onehot.unsqueeze(-3).expand(*batch, n, n, self.n_actions)  # [*, a, b, A]: b's action seen by a
        others = others * (1 - torch.eye(n, device=obs.device, dtype=obs.dtype)).unsqueeze(-1)
        ids = torch.eye(n, device=obs.device, dtype=obs.dtype).expand(*batch, n, n)
        return self.net(torch.cat([obs, state, others.flatten(-2), ids], -1))

    def value(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q(s, u) of the taken joint action, one estimate per agent's head: [*, n]."""
        return self(obs, actions).gather(-1, actions.unsqueeze(-1)).squeeze(-1)


class CentralVCritic(nn.Module):
    """V(s), the central-V ablation's critic: the same MLP family as `COMACritic` on the state
    alone (all agents' observations), one output."""

    def __init__(self, n_agents: int, obs_dim: int, hidden_sizes, activation: str):
        super().__init__()
        self.net = _mlp(n_agents * obs_dim, hidden_sizes, activation, 1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """obs [*, n, obs_dim] -> V [*, 1]."""
        return self.net(obs.flatten(-2))

    def value(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """V(s) [*, 1]; the joint action is not an input."""
        return self(obs)


class COMA(RLModule):
    """COMA as a LightningModule; `training_step` consumes one on-policy collector batch [B, T]."""

    action_spaces = ("discrete",)

    def __init__(self, cfg: DictConfig, env: EnvBase):
        super().__init__(cfg, env)
        group = self.groups[0]
        self.actor = make_actor(group, self.model_cfg, device=env.device)
        critic = self.critic_model_cfg
        if self.cfg.baseline == "central_v":
            self.critic = CentralVCritic(group.n_agents, group.obs_dim, critic.hidden_sizes, critic.activation).to(env.device)
        else:
            self.critic = COMACritic(group.n_agents, group.obs_dim, group.n_actions, critic.hidden_sizes, critic.activation).to(env.device)

    @property
    def policy(self) -> nn.Module:
        return self.actor

    def configure_optimizers(self):
        return fused_adam([{"params": self.actor.parameters(), "lr": self.cfg.lr}, {"params": self.critic.parameters(), "lr": self.cfg.critic_lr}])

    def _action_index(self, td: TensorDictBase) -> torch.Tensor:
        """Integer actions [*, n_agents] from categorical or one-hot action entries."""
        action = td[self.group, "action"]
        return action if not (action.dtype.is_floating_point or action.dtype == torch.bool) else action.long().argmax(-1)

    @torch.no_grad()
    def critic_targets(self, batch: TensorDictBase) -> torch.Tensor:
        """TD(lambda) targets of the critic's value of the taken steps: [B, T, n_agents] for
        Q(s, u) (counterfactual), [B, T, 1] for V(s) (central_v)."""
        g = self.group
        actions, next_obs = self._action_index(batch), batch["next", g, "observation"]
        q_taken = self.critic.value(batch[g, "observation"], actions)  # [B, T, n] or [B, T, 1]
        # The next step's value: the next transition's own joint action inside the same trajectory,
        # else a joint action sampled from the current policies at the next observation (V ignores it).
        sampled = self.actor(batch["next"].select((g, "observation")).clone())
        q_sampled = self.critic.value(next_obs, self._action_index(sampled))
        done = batch["next", "done"].float()  # [B, T, 1]
        continues = torch.ones_like(done)
        continues[:, -1] = 0.0
        continues = continues * (1.0 - done)
        next_q = torch.where(continues.bool(), torch.roll(q_taken, -1, dims=1), q_sampled)
        reward = batch["next", g, "reward"].mean(-2)  # team reward [B, T, 1]
        terminated = batch["next", "terminated"].float()
        return lambda_returns(reward, next_q, terminated, continues, self.cfg.gamma, self.cfg.lmbda)

    def loss_critic(self, minibatch: TensorDictBase) -> tuple[torch.Tensor, TensorDictBase]:
        """Regression of Q(s, u) for the taken joint action (or of V(s)) on its TD(lambda) target."""
        value = self.critic.value(minibatch[self.group, "observation"], self._action_index(minibatch))
        loss_critic = F.mse_loss(value, minibatch["coma_target"])
        return loss_critic, TensorDict({"loss": loss_critic}, [])  # logged as train/loss_critic

    @torch.no_grad()
    def advantages(self, minibatch: TensorDictBase, probs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Each agent's advantage [M, n_agents] under `algo.baseline`: its counterfactual one
        from Q (`coma_advantages`), or the shared G^lambda - V(s) (`central_v_advantages`, G the
        batch's TD(lambda) target, V the critic as it is now, after this iteration's critic passes).

        Args:
            probs: [M, n_agents, n_actions] the actors' current action probabilities.
            actions: [M, n_agents] the integer actions taken.
        """
        obs = minibatch[self.group, "observation"]
        if self.cfg.baseline == "central_v":
            return central_v_advantages(minibatch["coma_target"], self.critic(obs), actions.shape[-1])
        return coma_advantages(self.critic(obs, actions), probs, actions)[0]

    def loss_actor(self, minibatch: TensorDictBase) -> tuple[torch.Tensor, TensorDictBase]:
        """Policy gradient on `advantages` (the critic is not trained here).

        With `normalize_advantage` the advantages are divided by their standard deviation over
        the minibatch (not centred: sum_u pi(u) A(u) = 0 per agent is kept), so the step size
        does not depend on the reward's scale and the entropy bonus keeps a fixed weight.
        """
        g = self.group
        actions = self._action_index(minibatch)
        dist = self.actor.get_dist(minibatch.select((g, "observation")).clone())
        advantage = self.advantages(minibatch, dist.probs.detach(), actions)  # [M, n]
        if self.cfg.normalize_advantage:
            advantage = advantage / advantage.std().clamp(min=1e-8)
        loss_objective = -(dist.log_prob(minibatch[g, "action"]) * advantage).mean()
        entropy = dist.entropy().mean()
        loss_entropy = -self.cfg.entropy_coeff * entropy
        terms = TensorDict({"loss_objective": loss_objective, "loss_entropy": loss_entropy, "entropy": entropy.detach()}, [])
        return loss_objective + loss_entropy, terms

    def training_step(self, batch: TensorDictBase, batch_idx: int) -> dict:
        """Critic first (`num_epochs` passes on the batch's TD(lambda) targets), then the actors
        (`actor_epochs` passes, few: the plain policy gradient has no ratio clipping, so it must
        stay close to the policy that collected the batch) on the updated critic's advantages."""
        batch.set("coma_target", self.critic_targets(batch))
        metrics = minibatch_epochs(self, batch, self.loss_critic, self.cfg.num_epochs, suffix="_critic")
        metrics.update(minibatch_epochs(self, batch, self.loss_actor, self.cfg.actor_epochs))
        metrics["rollout/episode_reward_mean"] = self.episode_reward_mean(batch)
        return metrics


ALGORITHM = COMA
