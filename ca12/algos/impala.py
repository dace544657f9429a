"""IMPALA (Espeholt et al. 2018, "IMPALA: Scalable Distributed Deep-RL with Importance Weighted
Actor-Learner Architectures").

Actors act with whatever weights they last received while the learner trains, so a batch may
come from a policy several updates old. The learner corrects that lag with V-trace
(`ca12.advantages.vtrace`): with rho_t = pi(a_t|x_t) / mu(a_t|x_t), the learner's policy over
the actors', the value targets v_s and advantages A_s of the paper's eq. 1 and section 4.2, and
the loss per frame

    - rho_s'' A_s log pi(a_s|x_s)  +  baseline_coeff * 1/2 (v_s - V(x_s))^2  -  entropy_coeff * H(pi(.|x_s))

(targets and advantages held fixed within a pass over the batch, recomputed from the current
networks before each of `algo.num_epochs` passes of `algo.minibatch_size` frames; the paper's
learner takes one step per batch, the default here). Actors are TorchRL's asynchronous collectors
(`collector=multiasync`, the default here: `collector.workers` processes that never wait for
the learner; `collector=sync` gives lag 0, where V-trace is the n-step return of A2C). The
actors' log-probabilities mu travel with the batch; so does the version of the weights they
acted with, a counter buffer in the policy that the learner increases after each batch and the
collector copies with the weights, so `train/policy_lag` (learner version minus the actors',
mean over the batch's frames) and `train/policy_lag_max` measure the lag.

Multi-agent: every trained group has decentralised actors and a critic (centralised with
`algo.centralised_critic`, as MAPPO's); V-trace runs per agent on the team's reward and done
flags, like MultiAgentGAE. A truncated episode (time limit) bootstraps from the value of its
true next observation: that value is folded into the reward and the trace is cut there.
Written by hand around TorchRL's actors and critics: TorchRL has V-trace but no IMPALA loss.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase, TensorDictSequential
from torch import nn
from torchrl.envs import EnvBase

from ca12.advantages import vtrace
from ca12.algos.base import RLModule
from ca12.algos.on_policy import minibatch_epochs
from ca12.algos.optim import fused_adam
from ca12.nets.policies import FixedRandomPolicy, make_actor, make_critic

VERSION = "policy_version"


class PolicyVersion(TensorDictModuleBase):
    """Writes the weights' version (a buffer the learner increases per batch learnt) into every frame
    the policy acts on, as `"policy_version"` [*B, 1]: the collector copies buffers with the
    weights, so each frame says which update its action came from."""

    def __init__(self):
        super().__init__()
        self.register_buffer("version", torch.zeros((), dtype=torch.long))
        self.in_keys, self.out_keys = [], [VERSION]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        tensordict.set(VERSION, self.version.expand(*tensordict.batch_size, 1).clone().to(tensordict.device))
        return tensordict


class IMPALA(RLModule):
    """IMPALA's learner as a LightningModule; `training_step` consumes one (possibly stale) batch [B, T]."""

    multi_group = True

    def __init__(self, cfg: DictConfig, env: EnvBase):
        super().__init__(cfg, env)
        self.actors, self.critics = nn.ModuleDict(), nn.ModuleDict()
        for group in self.groups:
            self.actors[group.name] = make_actor(group, self.model_cfg, device=env.device)
            self.critics[group.name] = make_critic(group, self.critic_model_cfg, centralised=self.cfg.centralised_critic, device=env.device)
        self.version = PolicyVersion().to(env.device)
        others = [FixedRandomPolicy(group) for name, group in self.layout.groups.items() if name not in self.actors]
        self._policy = TensorDictSequential(*self.actors.values(), *others, self.version)

    @property
    def policy(self) -> nn.Module:
        return self._policy

    def configure_optimizers(self):
        return fused_adam([*self.actors.parameters(), *self.critics.parameters()], lr=self.cfg.lr)

    def _log_prob_entropy(self, g: str, td: TensorDictBase, entropy: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """log pi(a|x) of the batch's actions and (with `entropy`) the policy's entropy, each [..., n_agents, 1]."""
        dist = self.actors[g].get_dist(td)
        log_prob = dist.log_prob(td[g, "action"]).unsqueeze(-1)
        if not entropy:
            return log_prob, None
        try:
            h = dist.entropy()
        except NotImplementedError:  # TanhNormal: a one-sample estimate, as TorchRL's losses do
            h = -dist.log_prob(dist.rsample())
        return log_prob, h.unsqueeze(-1)

    @torch.no_grad()
    def compute_targets(self, batch: TensorDictBase) -> TensorDictBase:
        """V-trace targets `(g, "value_target")` and advantages `(g, "advantage")` [B, T, n, 1]
        of every trained group, from the learner's current networks."""
        terminated, done = batch["next", "terminated"], batch["next", "done"]  # [B, T, 1]
        for g, critic in self.critics.items():
            n = batch[g, "observation"].shape[-2]
            values = critic(batch.select(*critic.in_keys, strict=False))[g, "state_value"]  # [B, T, n, 1]
            next_values = critic(batch["next"].select(*critic.in_keys, strict=False))[g, "state_value"]
            log_pi, _ = self._log_prob_entropy(g, batch, entropy=False)
            log_mu = batch[g, "action_log_prob"].unsqueeze(-1)
            ended = done.unsqueeze(-2).expand(-1, -1, n, 1)
            truncated = ended & ~terminated.unsqueeze(-2).expand(-1, -1, n, 1)
            rewards = batch["next", g, "reward"] + self.cfg.gamma * truncated * next_values  # a cut episode bootstraps here
            discounts = self.cfg.gamma * (~ended).float()
            vs, advantages = vtrace(
                log_pi - log_mu,
                discounts,
                rewards,
                values,
                next_values[:, -1],
                self.cfg.clip_rho,
                self.cfg.clip_pg_rho,
                self.cfg.clip_c,
                lmbda=self.cfg.lmbda,
                time_dim=1,
            )
            if self.cfg.normalize_advantage:
                advantages = (advantages - advantages.mean()) / advantages.std().clamp(min=1e-8)
            batch.set((g, "value_target"), vs)
            batch.set((g, "advantage"), advantages)
        return batch

    def loss(self, minibatch: TensorDictBase) -> tuple[torch.Tensor, TensorDictBase]:
        """Policy-gradient, baseline and entropy terms summed over the trained groups."""
        terms = {"loss_objective": 0.0, "loss_critic": 0.0, "loss_entropy": 0.0}
        for g, critic in self.critics.items():
            log_pi, entropy = self._log_prob_entropy(g, minibatch)
            values = critic(minibatch.select(*critic.in_keys, strict=False))[g, "state_value"]
            terms["loss_objective"] = terms["loss_objective"] - (minibatch[g, "advantage"] * log_pi).mean()
            terms["loss_critic"] = terms["loss_critic"] + self.cfg.baseline_coeff * 0.5 * (minibatch[g, "value_target"] - values).pow(2).mean()
            terms["loss_entropy"] = terms["loss_entropy"] - self.cfg.entropy_coeff * entropy.mean()
        return sum(terms.values()), TensorDict(terms, batch_size=[])

    def training_step(self, batch: TensorDictBase, batch_idx: int) -> dict:
        lag = (self.version.version - batch[VERSION]).float()
        for _ in range(self.cfg.num_epochs):  # targets from the current networks before every pass
            self.compute_targets(batch)
            metrics = minibatch_epochs(self, batch, num_epochs=1)  # the last pass's loss terms are logged
        metrics["train/epochs"] = float(self.cfg.num_epochs)
        self.version.version += 1  # the next batches' actors act with this update's weights
        metrics.update(
            {"train/policy_lag": lag.mean(), "train/policy_lag_max": lag.max(), "rollout/episode_reward_mean": self.episode_reward_mean(batch)}
        )
        return metrics


ALGORITHM = IMPALA
