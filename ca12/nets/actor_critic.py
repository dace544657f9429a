"""Actors and Q(s, a) critics for the off-policy actor-critic family (MADDPG, IDDPG, MASAC, ISAC),
built from an env's specs.

* `make_deterministic_actor`: mu(o_a) per agent on its own observation (Lowe et al. 2017).
  Continuous actions are squashed with tanh into the action spec's bounds; discrete actions
  come from a straight-through Gumbel-softmax (Jang et al. 2017), which is how the MADDPG paper
  makes a discrete policy differentiable for the deterministic policy gradient.
* `make_exploration`: annealed additive Gaussian noise on continuous actions (TorchRL's
  `AdditiveGaussianModule`); discrete Gumbel actors explore by their own sampling.
* `make_q_critic`: Q(s, a) of every agent, on the concatenation of observation and action.
  centralised=True (MADDPG, MASAC): every agent's Q sees all agents' observations and actions.
  centralised=False (IDDPG, ISAC): every agent's Q sees only its own.
* `make_discrete_q_critic`: Q(s, .) over all of an agent's actions, for discrete SAC.

Discrete actions: ca12 keeps the env's action format. The Gumbel actor writes the one-hot it
chose to `(group, "action_onehot")` (what the critic reads, differentiable straight-through) and
the env's own action to `(group, "action")`: the index for a `Categorical` spec (VMAS default),
the one-hot for a `OneHot` spec. Both are replayed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn
from torchrl.data import Categorical
from torchrl.envs.utils import ExplorationType, exploration_type
from torchrl.modules import AdditiveGaussianModule, TanhModule

from ca12.envs.layout import Group
from ca12.nets.builder import mlp


def critic_action_key(group: Group) -> tuple[str, str]:
    """The action entry the Q critics read: the float one-hot for discrete actions."""
    return group.key("action_onehot") if group.discrete else group.key("action")


class Concat(nn.Module):
    """Concatenates its inputs along the feature dimension (observation | action)."""

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return torch.cat(tensors, dim=-1)


class GumbelSoftmaxST(nn.Module):
    """Straight-through Gumbel-softmax: a hard one-hot forward, softmax gradients backward.

    Samples while exploring (the collector, the losses); in deterministic evaluation it takes
    the arg max of the logits.
    """

    def __init__(self, temperature: float):
        super().__init__()
        self.temperature = temperature

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        if exploration_type() in (ExplorationType.RANDOM, None):
            return F.gumbel_softmax(logits, tau=self.temperature, hard=True)
        return F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)


class OneHotToAction(nn.Module):
    """The env's action from a one-hot: its index (`Categorical`) or itself cast (`OneHot`)."""

    def __init__(self, categorical: bool, dtype: torch.dtype):
        super().__init__()
        self.categorical = categorical
        self.dtype = dtype

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        return (onehot.argmax(-1) if self.categorical else onehot).to(self.dtype)


def make_deterministic_actor(group: Group, model: DictConfig, *, gumbel_temperature: float = 1.0, device=None) -> TensorDictSequential:
    """Decentralised deterministic policy mu(o_a), writing `(group, "action")` (and, for discrete
    actions, `(group, "action_onehot")`)."""
    spec, g = group.action_spec, group.name
    net = mlp(model, group.obs_dim, group.action_dim, group.n_agents, device=device)
    if group.discrete:
        return TensorDictSequential(
            TensorDictModule(net, in_keys=[(g, "observation")], out_keys=[(g, "logits")]),
            TensorDictModule(GumbelSoftmaxST(gumbel_temperature), in_keys=[(g, "logits")], out_keys=[(g, "action_onehot")]),
            TensorDictModule(OneHotToAction(isinstance(spec, Categorical), spec.dtype), in_keys=[(g, "action_onehot")], out_keys=[(g, "action")]),
        )
    return TensorDictSequential(
        TensorDictModule(net, in_keys=[(g, "observation")], out_keys=[(g, "param")]),
        TanhModule(in_keys=[(g, "param")], out_keys=[(g, "action")], spec=spec),
    )


class GaussianNoise(AdditiveGaussianModule):
    """TorchRL's `AdditiveGaussianModule` drawing its noise as mean + std * randn_like(action):
    the same distribution, but `torch.normal(mean, std)` checks std >= 0 on the host (a device
    sync), which a CUDA graph capture (`collector=cudagraph`) cannot contain."""

    def _add_noise(self, action: torch.Tensor) -> torch.Tensor:
        noise = self.mean.to(action.dtype) + self.std.to(action.dtype) * torch.randn_like(action)
        return self.spec[self.action_key].project(action + noise * self.sigma)


def make_exploration(group: Group, *, sigma_init: float, sigma_end: float, annealing_frames: int, device=None) -> GaussianNoise | None:
    """Additive Gaussian noise on continuous actions, its scale annealed linearly over
    `annealing_frames` collected frames (the caller steps it); None for discrete actions."""
    if group.discrete:
        return None
    return GaussianNoise(
        spec=group.action_spec,
        sigma_init=float(sigma_init),
        sigma_end=float(sigma_end),
        annealing_num_steps=annealing_frames,
        action_key=group.key("action"),
        device=device,
    )


def make_q_critic(group: Group, model: DictConfig, *, centralised: bool, device=None) -> TensorDictSequential:
    """Q(s, a) per agent, writing `(group, "state_action_value")` [*B, n_agents, 1].

    A per-agent MLP on `[o_a | a_a]`: with centralised=True each agent's output sees every
    agent's observation and action (MADDPG's critic), otherwise only its own.
    """
    net = mlp(model, group.obs_dim + group.action_dim, 1, group.n_agents, centralised=centralised, device=device)
    g = group.name
    return TensorDictSequential(
        TensorDictModule(Concat(), in_keys=[(g, "observation"), critic_action_key(group)], out_keys=[(g, "obs_action")]),
        TensorDictModule(net, in_keys=[(g, "obs_action")], out_keys=[(g, "state_action_value")]),
    )


def make_discrete_q_critic(group: Group, model: DictConfig, *, centralised: bool, device=None) -> TensorDictModule:
    """Q(s, .) per agent over its `n` actions, writing `(group, "action_value")` [*B, n_agents, n]
    (discrete SAC: the expectation over the policy is exact, no action input needed)."""
    net = mlp(model, group.obs_dim, group.n_actions, group.n_agents, centralised=centralised, device=device)
    return TensorDictModule(net, in_keys=[group.key("observation")], out_keys=[group.key("action_value")])
