"""QMIX (Rashid et al. 2018, "QMIX: Monotonic Value Function Factorisation for Deep Multi-Agent
Reinforcement Learning").

Per-agent Q-networks on local observations; a mixing network, conditioned on the global state
(here all agents' observations), combines the agents' chosen Q-values into Q_tot with
non-negative weights, so arg max Q_tot decomposes into each agent's arg max. Trained by DQN on
Q_tot from a replay buffer of joint transitions with a soft-updated target network; the team
reward is the mean of the agents' rewards. The loss is TorchRL's `QMixerLoss`; VDN (vdn.py)
swaps the mixer for a sum, IQL (iql.py) drops it.

With `model=gru|lstm` the Q-networks are recurrent (as in the QMIX paper, whose agents are
DRQNs) and learn from replayed sequences with burn-in (R2D2, Kapturowski et al. 2019; see
ca12/data/replay.py): `sequence_loss` is written here because TorchRL's `QMixerLoss`/`DQNLoss`
evaluate the target network on the next observations in the mode of the whole call, so in
sequence mode they would replay those observations as one stream from a stale hidden state and
run across episode ends. Here the target network's state after each step comes from its own
pass over the sequence, and one step from that state gives max_a Q'(o_{t+1}, a).
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictSequential
from torchrl.data import Composite
from torchrl.envs import EnvBase
from torchrl.modules import QMixer, set_recurrent_mode
from torchrl.objectives import SoftUpdate
from torchrl.objectives.multiagent import QMixerLoss
from torchrl.objectives.utils import distance_loss

from ca12.algos.off_policy import OffPolicyModule
from ca12.algos.optim import fused_adam
from ca12.data import ReplayBatch
from ca12.data.collectors import envs_per_batch
from ca12.errors import UsageError
from ca12.nets.builder import is_recurrent
from ca12.nets.qnets import make_egreedy, make_qnet
from ca12.nets.recurrent import step_on_next


class QMIX(OffPolicyModule):
    """QMIX as a LightningModule; `training_step` consumes a `ReplayBatch`."""

    action_spaces = ("discrete",)
    recurrent = True  # model=gru|lstm: DRQN agents trained on sequences (`sequence_loss`)

    def __init__(self, cfg: DictConfig, env: EnvBase):
        super().__init__(cfg, env)
        self.sequences = is_recurrent(cfg.model)
        if self.sequences:
            steps = cfg.collector.frames_per_batch // envs_per_batch(cfg)
            if not cfg.algo.burn_in < cfg.algo.sequence_length <= steps:
                raise UsageError(
                    f"algo.sequence_length={cfg.algo.sequence_length} must exceed algo.burn_in={cfg.algo.burn_in} "
                    f"and fit the {steps} steps per env of a batch (collector.frames_per_batch / env.num_envs)"
                )
        cfg = self.cfg
        actions = env.full_action_spec_unbatched
        self.qnet = make_qnet(self.groups[0], self.model_cfg, Composite({self.group: actions[self.group]}, shape=actions.shape), device=env.device)
        self.exploration = make_egreedy(self.groups[0], eps_init=cfg.eps_init, eps_end=cfg.eps_end, annealing_frames=cfg.annealing_frames)
        self._policy = TensorDictSequential(self.qnet, self.exploration)
        self.loss_module = self.make_loss(env)
        self.loss_module.make_value_estimator(gamma=cfg.gamma)
        self.target_updater = SoftUpdate(self.loss_module, tau=cfg.tau)

    def make_mixer(self, env: EnvBase) -> TensorDictModule:
        n_agents, obs_dim = env.full_observation_spec_unbatched[self.group, "observation"].shape
        mixer = QMixer(state_shape=(n_agents, obs_dim), mixing_embed_dim=self.cfg.mixing_embed_dim, n_agents=n_agents, device=env.device)
        g = self.group
        return TensorDictModule(mixer, in_keys=[(g, "chosen_action_value"), (g, "observation")], out_keys=["chosen_action_value"])

    def make_loss(self, env: EnvBase):
        g = self.group
        loss = QMixerLoss(self.qnet, self.make_mixer(env), delay_value=True, action_space=env.full_action_spec_unbatched[g, "action"])
        loss.set_keys(
            action_value=(g, "action_value"),
            local_value=(g, "chosen_action_value"),
            global_value="chosen_action_value",
            action=(g, "action"),
            reward="reward",  # the team reward, written by `prepare` [*B, 1]
            done="done",
            terminated="terminated",
        )
        return loss

    @property
    def policy(self) -> torch.nn.Module:
        """The exploring policy the collector acts with (greedy actions in evaluation)."""
        return self._policy

    def configure_optimizers(self):
        return fused_adam(self.loss_module.parameters(), lr=self.cfg.lr)

    def prepare(self, sample: TensorDictBase) -> TensorDictBase:
        """Team reward = mean of the agents' rewards: [*B, n_agents, 1] -> [*B, 1]."""
        sample.set(("next", "reward"), sample["next", self.group, "reward"].mean(-2))
        return sample

    def training_step(self, batch: ReplayBatch, batch_idx: int) -> dict:
        metrics = {"rollout/episode_reward_mean": self.episode_reward_mean(batch.fresh)}
        self.exploration.step(batch.fresh.numel())  # epsilon anneals with collected frames
        metrics["train/epsilon"] = self.exploration.eps
        return {**metrics, **self.replay(batch, squared_td_error=True)}

    def loss(self, sample: TensorDictBase) -> tuple[torch.Tensor, TensorDictBase]:
        """TD loss on a prepared minibatch (see `prepare`) and its terms."""
        if self.sequences:
            return self.sequence_loss(sample)
        terms = self.loss_module(sample)
        return terms["loss"], terms

    def value_parts(self) -> tuple:
        """(Q-network, its parameters, its target parameters, mixer), as the loss module holds them."""
        loss = self.loss_module
        return loss.local_value_network, loss.local_value_network_params, loss.target_local_value_network_params, loss.mixer_network

    def mix(self, td: TensorDictBase, target: bool) -> torch.Tensor:
        """Q_tot [*B, 1] of the agents' `(group, "chosen_action_value")` in `td` (IQL: the agents' own values)."""
        loss = self.loss_module
        params = loss.target_mixer_network_params if target else loss.mixer_network_params
        with params.to_module(loss.mixer_network):
            return loss.mixer_network(td)[loss.tensor_keys.global_value]

    def sequence_loss(self, sample: TensorDictBase) -> tuple[torch.Tensor, TensorDictBase]:
        """The TD loss of the value family on replayed sequences [B, L] of a recurrent Q-network.

        Online and target networks replay each sequence from its stored hidden state (resetting
        where `is_init` is set); the target network then steps once from its state after step t
        on the next observation, giving the target y_t = r_t + gamma (1 - terminal_t) Q'_tot(o_{t+1}).
        Only the steps the sequence's `learn` mask picks carry loss (all when it has none): the
        burn-in steps only refresh the hidden state. Writes each step's squared TD error to `td_error` (zero in the burn-in) for
        prioritised replay, and weighs each sequence by its `priority_weight` when present.
        """
        g, keys = self.group, self.loss_module.tensor_keys
        qnet, params, target_params, _ = self.value_parts()
        with set_recurrent_mode(True):
            with params.to_module(qnet):
                online = qnet(sample.clone(False))
            with torch.no_grad(), target_params.to_module(qnet):
                replayed = qnet(sample.clone(False))  # writes the target network's state after each step
        with torch.no_grad(), target_params.to_module(qnet):
            following = step_on_next(qnet, replayed)  # max_a Q'(o_{t+1}, a) per agent
            target = self.mix(following, target=True)
            nxt = sample["next"]
            target = nxt[keys.reward] + self.cfg.gamma * (~nxt[keys.terminated]).float() * target
        action = sample[g, "action"].unsqueeze(-1)
        online.set((g, "chosen_action_value"), online[g, "action_value"].gather(-1, action))
        error = distance_loss(self.mix(online, target=False), target, "l2")  # [B, L, 1] or [B, L, n, 1]
        learn = sample.get("learn", None)  # [B, L], see ca12.data.replay.sequence_chunks
        learn = torch.ones(sample.shape, dtype=torch.bool, device=error.device) if learn is None else learn
        mask = learn.view(*sample.shape, *[1] * (error.ndim - 2)).expand_as(error).float()
        weight = sample.get("priority_weight", None)
        weight = torch.ones(()) if weight is None else weight.reshape(*sample.shape, *[1] * (error.ndim - 2))  # [B, L]: one per sequence
        sample.set("td_error", (error * mask).detach())
        loss = (error * mask * weight.to(error)).sum() / mask.sum()
        return loss, TensorDict({"loss": loss}, [])

    def update(self, sample: TensorDictBase) -> TensorDictBase:
        total, terms = self.loss(self.prepare(sample))
        terms = terms.detach().select(*[k for k in terms.keys() if k.startswith("loss")])
        terms["grad_norm"] = self.stepper.step(self.optimizers(), total, terms)
        return terms


ALGORITHM = QMIX
