"""HAPPO (Kuba et al. 2022, "Trust Region Policy Optimisation in Multi-Agent Reinforcement
Learning", ICLR, algorithm 2; HARL's `happo.py`), HATRPO's sequential scheme (ca12/algos/hatrpo.py)
with PPO's clipped step in place of the trust-region step.

Per batch the agents are updated one after another in a random order i_1..i_n (HATRPO's seeded
generator). Agent i_m runs `actor_epochs` passes of Adam steps over shuffled minibatches on

    L_m(theta) = -E[ M_m * min(r A, clip(r, 1 - eps, 1 + eps) A) ] - entropy_coeff * E[H(pi^{i_m}_theta)],
    r = pi^{i_m}_theta / pi^{i_m}_old,   M_m = prod_{j<m} pi^{i_j}_new / pi^{i_j}_old

(M_m fixed during agent i_m's update, computed on the whole batch after each agent's update, as
in HARL: the factor multiplies the clipped term). The advantage is each agent's GAE advantage
from the centralised critic, which is fitted afterwards as TRPO's and HATRPO's is.

Each agent has its own Adam (HARL: one actor and optimiser per agent). Its policy parameters are
its slice of the actor's agent-stacked weights (`model.share_params=false`, as HATRPO), so every
agent's Adam holds the whole actor but only ever sees gradients in its own slice: the others'
moments stay exactly zero and Adam moves them by exactly zero (tested bit for bit). Entropy:
closed form for categorical policies; a one-sample estimate -log pi(a~) for TanhNormal ones, which
have none (TorchRL's ClipPPOLoss does the same). The ratio is the joint one over action dimensions
(HARL's `action_aggregation: prod`); conf/algo/happo.yaml says where the defaults differ from HARL's.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase

from ca12.algos.hatrpo import HATRPO
from ca12.algos.optim import fused_adam


class HAPPO(HATRPO):
    """HAPPO as a LightningModule: HATRPO's order and critic, a clipped PPO update per agent."""

    def configure_optimizers(self):
        critic = fused_adam(self.critic.parameters(), lr=self.cfg.critic_lr)
        return [critic, *(fused_adam(self.actor.parameters(), lr=self.cfg.lr) for _ in range(self.groups[0].n_agents))]

    def critic_optimiser(self):
        return self.optimizers()[0]

    def agent_loss(self, minibatch: TensorDictBase, agent: int, old_log_prob: torch.Tensor, advantage: torch.Tensor, weight: torch.Tensor):
        """(total loss, terms) of `agent`'s clipped, M-weighted surrogate on a minibatch [N]."""
        dist, log_prob = self.policy_terms(minibatch)
        log_ratio = log_prob[:, agent] - old_log_prob
        ratio = log_ratio.exp()
        eps = self.cfg.clip_epsilon
        surrogate = torch.min(ratio * advantage, ratio.clamp(1 - eps, 1 + eps) * advantage)
        try:
            entropy = dist.entropy()[:, agent]
        except NotImplementedError:  # TanhNormal: no closed form
            entropy = -dist.log_prob(dist.rsample())[:, agent]
        terms = TensorDict(
            {
                "loss_objective": -(weight * surrogate).mean(),
                "loss_entropy": -self.cfg.entropy_coeff * entropy.mean(),
                "entropy": entropy.mean().detach(),
                "clip_fraction": ((ratio - 1).abs() > eps).float().mean(),
                "kl_approx": ((ratio - 1) - log_ratio).mean().detach(),  # Schulman's k3 estimator of KL(old || new)
            },
            [],
        )
        return terms["loss_objective"] + terms["loss_entropy"], terms

    def policy_update(self, frames: TensorDictBase) -> dict:
        """Each agent's clipped PPO epochs, in a random order, against the advantage reweighted by
        the ratios of the agents updated before it. Metrics: means over agents and minibatches."""
        cfg, n_frames = self.cfg, frames.shape[0]
        advantage = frames[self.group, "advantage"].squeeze(-1)  # [N, n_agents]
        with torch.no_grad():
            old_log_prob = self.policy_terms(frames)[1]  # [N, n_agents]: the behaviour policy's
        weight = torch.ones_like(advantage[:, 0])  # M_m [N]: ratios of the agents already updated
        optimisers = self.optimizers()[1:]
        self.last_order, sums, count = self.agent_order(), None, 0
        for agent in self.last_order:
            for _ in range(cfg.actor_epochs):
                for index in torch.randperm(n_frames, device=advantage.device).split(cfg.minibatch_size):
                    total, terms = self.agent_loss(frames[index], agent, old_log_prob[index, agent], advantage[index, agent], weight[index])
                    terms = terms.detach()
                    terms["grad_norm"] = self.stepper.step(optimisers[agent], total, terms)
                    sums, count = (terms if sums is None else sums + terms), count + 1
            with torch.no_grad():
                weight = weight * torch.exp(self.policy_terms(frames)[1][:, agent] - old_log_prob[:, agent])
        metrics = {f"train/{key}": value / count for key, value in sums.items()}
        metrics["train/factor_std"] = weight.std()  # how far the last agent's M strays from 1
        return metrics


ALGORITHM = HAPPO
