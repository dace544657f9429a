"""MAPPO (Yu et al. 2022, "The Surprising Effectiveness of PPO in Cooperative Multi-Agent Games").

Decentralised actors (each agent acts on its own observation) and a centralised critic (each
agent's value sees every agent's observation; on an env with several groups, every group's).
The loss is TorchRL's `MAPPOLoss` (clipped surrogate, value loss, entropy bonus) with
`MultiAgentGAE` advantages; this file only wires them to a collector batch: advantages once
per batch, then `num_epochs` passes of shuffled minibatches, each one Adam step with
gradient-norm clipping through Lightning.

Five optional parts of the update are objects the module holds, not code it inherits (IPPO and
PPO hold the same ones): the opponent models (`algo.opponent_model`, ca12/nets/opponent.py:
each agent predicts the others' actions and its actor reads the prediction), the signalling
bonus (`algo.signalling_coeff`, ca12/algos/signalling.py: a speaker paid for messages that say
something about what it sees), the league (`algo.league`, ca12/selfplay/: the untrained group
plays the learner's snapshots), GAE on values the module computes (recurrent critics,
`critic_model=gru|lstm`, and normalised ones; ca12/algos/critic_values.py) and value
normalisation (`algo.value_norm`, ca12/algos/value_norm.py: the critics learn standardised
returns). The first two add loss terms and metrics through the
same two methods (`loss_terms`, `metrics`).
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from tensordict import TensorDictBase
from tensordict.nn import TensorDictSequential
from torch import nn
from torchrl.envs import EnvBase
from torchrl.objectives import ValueEstimators
from torchrl.objectives.multiagent import MAPPOLoss

from ca12.algos.base import RLModule
from ca12.algos.critic_values import CriticValuesGAE
from ca12.algos.on_policy import minibatch_epochs
from ca12.algos.optim import fused_adam
from ca12.algos.signalling import Signalling
from ca12.algos.value_norm import ValueNorms
from ca12.errors import UsageError
from ca12.nets.builder import is_recurrent
from ca12.nets.opponent import OpponentModels
from ca12.nets.policies import FixedRandomPolicy, make_actor, make_critic
from ca12.selfplay.callback import LeagueCallback
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
    masks_agents = True
    images = True

    def __init__(self, cfg: DictConfig, env: EnvBase):
        super().__init__(cfg, env)
        self.actors, self.critics, self.losses = nn.ModuleDict(), nn.ModuleDict(), nn.ModuleDict()
        # algo.opponent_model: they act first, the actors read their prediction (empty when off)
        self.opponent_models = OpponentModels.build(self.cfg, self.groups, self.layout, env, self.model_cfg)
        for group in self.groups:
            g = group.name
            self.actors[g] = make_actor(group, self.model_cfg, device=env.device, extra_input=self.opponent_models.prediction(g))
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
                # The loss calls the networks as they are: a functional loss swaps their parameters
                # in and out on every call, a fifth of a small network's update on the CPU.
                functional=False,
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
            if group.masked:  # agents that leave: each one's trajectory ends with its own flags
                check_agent_flags(env, g)
                loss.set_keys(done=(g, "done"), terminated=(g, "terminated"))
            loss.make_value_estimator(ValueEstimators.MAGAE, gamma=self.cfg.gamma, lmbda=self.cfg.lmbda)
            self.losses[g] = loss
        # Groups whose steps the env marks (Group.masked): the loss reads the mark as TorchRL's validity mask.
        self.masked = [group.name for group in self.groups if group.masked]
        # algo.value_norm: the critics learn standardised returns (empty when off)
        self.value_norms = ValueNorms.build(self.cfg.value_norm, list(self.losses), device=env.device)
        # critic_model=gru|lstm (values over whole trajectories) or algo.value_norm (values rescaled
        # to returns): GAE on values computed here (empty otherwise: TorchRL's GAE calls the critic)
        self.estimators = CriticValuesGAE.build(
            self.losses, is_recurrent(self.critic_model_cfg), bool(self.value_norms), self.cfg.gamma, self.cfg.lmbda
        )
        self.signalling = Signalling.build(self.cfg, self.layout, self.actors)  # None when algo.signalling_coeff=0
        self.features = [f for f in (self.opponent_models, self.signalling) if f]  # the parts that add loss terms and metrics
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

    def configure_callbacks(self) -> list:
        """The league's driver (ca12/selfplay/callback.py) when there is a league."""
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

    def upgrade_state(self, state_dict: dict) -> None:
        """Renames in place the loss entries of checkpoints written while the losses were
        functional (ca12 before 2026-12-08): `losses.<g>.actor_network_params.*` ->
        `losses.<g>.actor_network.*`, the same for the critic."""
        for g in self.losses:
            for net in ("actor_network", "critic_network"):
                old = f"losses.{g}.{net}_params."
                for key in [k for k in state_dict if k.startswith(old)]:
                    state_dict[f"losses.{g}.{net}." + key.removeprefix(old)] = state_dict.pop(key)

    @torch.no_grad()
    def compute_advantage(self, batch: TensorDictBase) -> TensorDictBase:
        """Writes `(group, "advantage")` and `(group, "value_target")` into `batch` ([B, T, n_agents, 1])."""
        for g, loss in self.losses.items():
            if g in self.estimators:
                keys = loss.tensor_keys
                self.estimators.values(g, self.critics[g], batch)
                if g in self.value_norms:
                    self.value_norms.to_returns(g, batch, keys.value)
                self.estimators[g](batch)  # TorchRL's MultiAgentGAE on the values in the batch
                if g in self.value_norms:
                    self.value_norms.to_targets(g, batch, keys.value, keys.value_target)
            else:
                loss.value_estimator(batch)
        return batch

    def loss(self, minibatch: TensorDictBase) -> tuple[torch.Tensor, TensorDictBase]:
        """Total loss to minimise (the groups' losses summed) and the loss terms for logging
        (summed over groups, TorchRL's names), and those of the optional parts (`self.features`)."""
        terms = None
        for g, loss in self.losses.items():
            out = loss(minibatch) if g not in self.masked else masked_loss(loss, minibatch, g)
            terms = out if terms is None else terms + out.select(*terms.keys())
        for feature in self.features:
            terms.update(feature.loss_terms(minibatch))
        total = sum(value for key, value in terms.items() if key.startswith("loss_"))
        return total, terms

    def training_step(self, batch: TensorDictBase, batch_idx: int) -> dict:
        self.compute_advantage(batch)
        metrics = minibatch_epochs(self, batch, target_kl=self.cfg.target_kl)
        metrics["rollout/episode_reward_mean"] = self.episode_reward_mean(batch)
        for feature in self.features:
            metrics.update(feature.metrics(batch))
        return metrics


def check_agent_flags(env: EnvBase, group: str) -> None:
    """An env that marks which agents act must say when each one's trajectory ends."""
    missing = [flag for flag in ("done", "terminated") if (group, flag) not in env.done_keys]
    if missing:
        raise UsageError(
            f"group '{group}' marks which agents act ((group, 'mask')) but has no per-agent {' or '.join(missing)} flag "
            f"({group}, '{missing[0]}') of shape [n_agents, 1] saying when each one's trajectory ends"
        )


def masked_loss(loss: nn.Module, minibatch: TensorDictBase, group: str) -> TensorDictBase:
    """`loss` on `minibatch` where the env marks which agents act, `(group, "mask")`: the actor's
    terms and the advantage's standardisation over the steps each agent acted (TorchRL's losses
    read "shifted_valid" as a validity mask, `LossModule.loss_mask_key="auto"`, set here for this
    group only), the critic's over the steps it was still in the episode (not `(group, "done")`
    before the step: a seat waiting for its turn has a value, an agent that left has none)."""
    minibatch.set("shifted_valid", minibatch.get((group, "mask")).unsqueeze(-1))
    try:
        out = loss(minibatch)
        in_play = ~minibatch.get((group, "done"))  # [*B, n_agents, 1]
        critic = loss.loss_critic(minibatch)[0]  # per step and agent
        out.set("loss_critic", torch.where(in_play, critic, 0.0).sum() / in_play.sum().clamp_min(1))
        return out
    finally:
        minibatch.del_("shifted_valid")


ALGORITHM = MAPPO
