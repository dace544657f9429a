"""QMIX (Rashid et al. 2018, "QMIX: Monotonic Value Function Factorisation for Deep Multi-Agent
Reinforcement Learning").

Per-agent Q-networks on local observations; a mixing network, conditioned on the global state
(here all agents' observations), combines the agents' chosen Q-values into Q_tot with
non-negative weights, so arg max Q_tot decomposes into each agent's arg max. Trained by DQN on
Q_tot from a replay buffer of joint transitions with a soft-updated target network; the team
reward is the mean of the agents' rewards. The loss is TorchRL's `QMixerLoss`; VDN (vdn.py)
swaps the mixer for a sum, IQL (iql.py) drops it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictSequential
from torchrl.data import Composite
from torchrl.envs import EnvBase
from torchrl.modules import QMixer
from torchrl.objectives import SoftUpdate
from torchrl.objectives.multiagent import QMixerLoss

from ca12.algos.off_policy import OffPolicyModule, ReplayConfig
from ca12.nets.qnets import make_egreedy, make_qnet
from ca12.schema import key


@dataclass
class ValueConfig(ReplayConfig):
    """The value-decomposition family's keys (IQL, VDN; conf/algo/base/value.yaml)."""

    lr: float = key("Adam learning rate", positive=True)
    eps_init: float = key("epsilon-greedy: first epsilon", minimum=0.0)
    eps_end: float = key("epsilon-greedy: final epsilon", minimum=0.0)
    annealing_frames: int = key("collected frames over which epsilon falls linearly", positive=True)


@dataclass
class Config(ValueConfig):
    """QMIX's keys."""

    mixing_embed_dim: int = key("width of QMIX's state-conditioned mixing network", positive=True)


class QMIX(OffPolicyModule):
    """QMIX as a LightningModule; the replay loop is `OffPolicyModule.training_step`."""

    schema = Config

    action_spaces = ("discrete",)
    squared_td_error = True

    def __init__(self, cfg: DictConfig, env: EnvBase):
        super().__init__(cfg, env)
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
        return torch.optim.Adam(self.loss_module.parameters(), lr=self.cfg.lr)

    def prepare(self, sample: TensorDictBase) -> TensorDictBase:
        """Team reward = mean of the agents' rewards: [*B, n_agents, 1] -> [*B, 1]."""
        sample.set(("next", "reward"), sample["next", self.group, "reward"].mean(-2))
        return sample

    def exploration_metrics(self, fresh_frames: int) -> dict:
        self.exploration.step(fresh_frames)
        return {"train/epsilon": self.exploration.eps}

    def loss(self, sample: TensorDictBase) -> tuple[torch.Tensor, TensorDictBase]:
        """TD loss on a prepared minibatch (see `prepare`) and its terms."""
        terms = self.loss_module(sample)
        return terms["loss"], terms

    def update(self, sample: TensorDictBase) -> TensorDictBase:
        total, terms = self.loss(sample)
        terms = terms.detach().select(*[k for k in terms.keys() if k.startswith("loss")])
        terms["grad_norm"] = self.optimiser_step(self.optimizers(), total, terms)
        return terms


ALGORITHM = QMIX
