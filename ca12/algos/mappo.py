"""MAPPO (Yu et al. 2022, "The Surprising Effectiveness of PPO in Cooperative Multi-Agent Games").

Decentralised actors (each agent acts on its own observation) and a centralised critic (each
agent's value sees every agent's observation; on an env with several groups, every group's).
The loss is TorchRL's `MAPPOLoss` (clipped surrogate, value loss, entropy bonus) with
`MultiAgentGAE` advantages; this file only wires them to a collector batch: advantages once
per batch, then `num_epochs` passes of shuffled minibatches, each one Adam step with
gradient-norm clipping through Lightning. With `algo.opponent_model=true` each agent also
predicts the other agents' actions from its own observation and its actor reads the prediction
(ca12/nets/opponent.py): an auxiliary cross-entropy term joins the loss. With
`algo.signalling_coeff > 0` the groups in `algo.signalling_groups` (discrete actions) are paid
the mutual information between their actions and their observations, estimated on each
minibatch (`positive_signalling`, Eccles et al. 2019): a speaker whose messages say something
about what it sees before any listener reads them.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from tensordict import TensorDictBase
from tensordict.nn import TensorDictSequential
from torch import nn
from torchrl.envs import EnvBase
from torchrl.modules import set_recurrent_mode
from torchrl.objectives import ValueEstimators
from torchrl.objectives.multiagent import MAPPOLoss
from torchrl.objectives.value import MultiAgentGAE

from ca12.algos.base import RLModule
from ca12.algos.on_policy import minibatch_epochs
from ca12.algos.optim import fused_adam
from ca12.algos.signalling import positive_signalling
from ca12.errors import UsageError
from ca12.nets.builder import is_recurrent
from ca12.nets.opponent import OpponentModel
from ca12.nets.policies import FixedRandomPolicy, make_actor, make_critic
from ca12.nets.recurrent import step_on_next
from ca12.selfplay.league import League


class MAPPO(RLModule):
    """MAPPO as a LightningModule; `training_step` consumes one collector batch `[B, T]`.

    Trains every group `algo.groups` names (default: all), each with its own actor, critic and
    loss; the other groups act with a fixed uniform-random policy, or, with `algo.league`, the
    other group of a two-group game plays the trained one's past snapshots (ca12/selfplay/league.py).
    A single-agent env is a group of one, so this is PPO there. With `model=gru|lstm` the actors, with
    `critic_model=gru|lstm` the critics are recurrent, and the update replays whole trajectories.
    """

    loss_class = MAPPOLoss
    centralised_critic = True
    multi_group = True
    recurrent = True
    recurrent_critic = True

    def __init__(self, cfg: DictConfig, env: EnvBase):
        super().__init__(cfg, env)
        self.actors, self.critics, self.losses = nn.ModuleDict(), nn.ModuleDict(), nn.ModuleDict()
        self.estimators = nn.ModuleDict()  # recurrent critics: GAE on values computed by `sequence_values`
        self.opponent_models = nn.ModuleDict()  # algo.opponent_model: they act first, the actors read their prediction
        if self.cfg.opponent_model and self.cfg.league.opponents is not None:
            raise UsageError(
                "algo.opponent_model=true cannot play a league (algo.league.opponents): its snapshots are actors without an opponent model"
            )
        for group in self.groups:
            g = group.name
            if self.cfg.opponent_model:
                self.opponent_models[g] = OpponentModel(group, self.layout, env, self.model_cfg, device=env.device)
            prediction = self.opponent_models[g].prediction if g in self.opponent_models else None
            self.actors[g] = make_actor(group, self.model_cfg, device=env.device, extra_input=prediction)
            self.critics[g] = make_critic(
                group, self.critic_model_cfg, centralised=self.centralised_critic, device=env.device, all_groups=list(self.layout.groups.values())
            )
            loss = self.loss_class(
                self.actors[g],
                self.critics[g],
                clip_epsilon=self.cfg.clip_epsilon,
                entropy_coeff=self.cfg.entropy_coeff,
                critic_coeff=self.cfg.critic_coeff,
                normalize_advantage=self.cfg.normalize_advantage,
                clip_value=self.cfg.clip_value,
                loss_critic_type=self.cfg.critic_loss,
            )
            loss.set_keys(
                reward=(g, "reward"),
                action=(g, "action"),
                sample_log_prob=(g, "action_log_prob"),
                value=(g, "state_value"),
                advantage=(g, "advantage"),
                value_target=(g, "value_target"),
                done="done",  # team-level [B, T, 1]; MultiAgentGAE broadcasts it to the agents
                terminated="terminated",
            )
            loss.make_value_estimator(ValueEstimators.MAGAE, gamma=self.cfg.gamma, lmbda=self.cfg.lmbda)
            self.losses[g] = loss
            if is_recurrent(self.critic_model_cfg):
                self.estimators[g] = MultiAgentGAE(gamma=self.cfg.gamma, lmbda=self.cfg.lmbda, value_network=None)
                self.estimators[g].set_keys(
                    **{k: getattr(loss.tensor_keys, k) for k in ("value", "reward", "done", "terminated", "advantage", "value_target")}
                )
        self.signalling = self._signalling_groups()
        # With a league (algo.league), the untrained group plays the learner's snapshots.
        self.league = League.build(cfg, self)
        others = [
            self.league.opponent if self.league is not None and name == self.league.opponent_group else FixedRandomPolicy(group)
            for name, group in self.layout.groups.items()
            if name not in self.losses
        ]
        # A recurrent critic also steps with the collector, so each batch holds its hidden state.
        critics = list(self.critics.values()) if self.estimators else []
        self._policy = TensorDictSequential(*self.opponent_models.values(), *self.actors.values(), *critics, *others)

    @property
    def policy(self) -> nn.Module:
        return self._policy

    def _signalling_groups(self) -> list[str]:
        """The groups paid the signalling bonus (none when its weight is 0); one-line errors for
        groups that are not trained or do not act discretely."""
        if self.cfg.signalling_coeff == 0:
            return []
        names = list(self.cfg.signalling_groups) if self.cfg.signalling_groups is not None else list(self.losses)
        for name in names:
            if name not in self.losses:
                raise UsageError(f"algo.signalling_groups names {name!r}, which is not a trained group (trained: {', '.join(self.losses)})")
            if not self.layout.groups[name].discrete:
                raise UsageError(
                    f"algo.signalling_coeff needs discrete actions: group {name!r} acts continuously "
                    "(the bonus is the mutual information of categorical policies)"
                )
        return names

    def configure_callbacks(self) -> list:
        """The league's driver (ca12/selfplay/callback.py) when there is a league."""
        from ca12.selfplay.callback import LeagueCallback

        return [LeagueCallback()] if self.league is not None else []

    # The first trained group's networks and loss (the only ones on a one-group env).
    @property
    def actor(self) -> nn.Module:
        return self.actors[self.group]

    @property
    def critic(self) -> nn.Module:
        return self.critics[self.group]

    @property
    def loss_module(self) -> nn.Module:
        return self.losses[self.group]

    def configure_optimizers(self):
        return fused_adam([*self.losses.parameters(), *self.opponent_models.parameters()], lr=self.cfg.lr)

    @torch.no_grad()
    def compute_advantage(self, batch: TensorDictBase) -> TensorDictBase:
        """Writes `(group, "advantage")` and `(group, "value_target")` into `batch` ([B, T, n_agents, 1])."""
        for g, loss in self.losses.items():
            if g in self.estimators:
                self.sequence_values(g, batch)
                self.estimators[g](batch)
            else:
                loss.value_estimator(batch, params=loss.critic_network_params, target_params=loss.target_critic_network_params)
        return batch

    def sequence_values(self, g: str, batch: TensorDictBase) -> None:
        """A recurrent critic's V(o_t) and V(o_{t+1}) over a batch [B, T], for GAE.

        The critic replays each trajectory from the hidden state it had when the batch was
        collected (resetting at episode starts), then steps once from its state after step t on
        the next observation. (TorchRL's GAE would call it on the next observations as a second
        sequence: from a stale state, and running across episode ends.)
        """
        critic, value = self.critics[g], self.losses[g].tensor_keys.value
        with set_recurrent_mode(True):
            critic(batch)  # writes V(o_t) and the state after each step under "next"
        batch.set(("next", *value), step_on_next(critic, batch).get(value))

    def loss(self, minibatch: TensorDictBase) -> tuple[torch.Tensor, TensorDictBase]:
        """Total loss to minimise (the groups' losses summed) and the loss terms for logging
        (summed over groups, TorchRL's names; `loss_opponent` is the weighted opponent-model
        cross-entropy, `opponent_cross_entropy` the plain one)."""
        terms = None
        for loss in self.losses.values():
            out = loss(minibatch)
            terms = out if terms is None else terms + out.select(*terms.keys())
        if self.opponent_models:
            cross_entropy = sum(model.cross_entropy(minibatch) for model in self.opponent_models.values())
            terms["opponent_cross_entropy"] = cross_entropy.detach()
            terms["loss_opponent"] = self.cfg.opponent_model_coeff * cross_entropy
        if self.signalling:
            information = sum(self.signalling_information(g, minibatch) for g in self.signalling)
            terms["signalling"] = information.detach()
            terms["loss_signalling"] = -self.cfg.signalling_coeff * information
        total = sum(value for key, value in terms.items() if key.startswith("loss_"))
        return total, terms

    def signalling_information(self, g: str, minibatch: TensorDictBase) -> torch.Tensor:
        """Group `g`'s I(action; observation) on `minibatch`, summed over its agents (differentiable)."""
        logits = self.actors[g].get_dist(minibatch.copy()).logits  # a shallow copy: the minibatch keeps its keys
        return positive_signalling(logits).sum()

    def training_step(self, batch: TensorDictBase, batch_idx: int) -> dict:
        self.compute_advantage(batch)
        metrics = minibatch_epochs(self, batch, target_kl=self.cfg.target_kl)
        metrics["rollout/episode_reward_mean"] = self.episode_reward_mean(batch)
        if self.opponent_models:  # of the predictions made while collecting, mean over trained groups
            metrics["train/opponent_accuracy"] = torch.stack([m.accuracy(batch) for m in self.opponent_models.values()]).mean()
        return metrics


ALGORITHM = MAPPO
