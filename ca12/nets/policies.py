"""Multi-agent actors and state-value critics for one agent group, built from its specs.

Shapes come from the group's specs (`ca12.envs.Group`), never from config: observation size,
action size, number of agents and whether actions are continuous (TanhNormal within the action
bounds) or discrete (Categorical over the action's `n` choices). The networks come from the
builder (`model` / `critic_model` sections: mlp, gru, lstm).
"""

from __future__ import annotations

import dataclasses
from numbers import Number

import torch
from omegaconf import DictConfig
from tensordict import TensorDictBase
from tensordict.nn import NormalParamExtractor, TensorDictModule, TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import nn
from torch.distributions import Categorical as CategoricalDist
from torchrl.data import OneHot
from torchrl.modules import ProbabilisticActor, TanhNormal
from torchrl.modules.distributions import MaskedCategorical, MaskedOneHotCategorical, OneHotCategorical

from ca12.envs.layout import Group
from ca12.errors import UsageError
from ca12.nets.builder import JointObservation, agent_net, is_recurrent, mlp


def make_actor(group: Group, model: DictConfig, device=None, extra_input: tuple[NestedKey, int] | None = None) -> ProbabilisticActor:
    """Decentralised stochastic policy: each agent acts on its own observation.

    Writes `(group, "action")` and its log-probability `(group, "action_log_prob")`. With
    `extra_input=(key, size)` each agent's network also reads `key` [*B, n_agents, size] (its own
    entry, e.g. an opponent model's prediction), appended to its observation.
    """
    g = group.name
    net_group = group if extra_input is None else dataclasses.replace(group, obs_dim=group.obs_dim + extra_input[1])
    if group.discrete:
        module = agent_net(model, net_group, group.n_actions, (g, "logits"), name="actor", device=device)
        one_hot = isinstance(group.action_spec, OneHot)
        if group.action_masked:  # the env's legal actions: the distribution puts no mass on the others
            dist_class = MaskedOneHotCategorical if one_hot else MaskedCategorical
            dist_keys, dist_kwargs = {"logits": (g, "logits"), "mask": (g, "action_mask")}, {}
        else:
            dist_class = OneHotCategorical if one_hot else CategoricalDist
            dist_keys, dist_kwargs = [(g, "logits")], {}
    else:
        module = agent_net(
            model, net_group, 2 * group.action_dim, [(g, "loc"), (g, "scale")], name="actor", head=NormalParamExtractor(), device=device
        )
        dist_class = TanhNormal
        dist_keys, dist_kwargs = [(g, "loc"), (g, "scale")], _action_bounds(group.action_spec)
    if extra_input is not None:
        module = AppendedInput(module, group.key("observation"), extra_input[0])
    return ProbabilisticActor(
        module=module,
        spec=group.action_spec,
        in_keys=dist_keys,
        out_keys=[(g, "action")],
        distribution_class=dist_class,
        distribution_kwargs=dist_kwargs,
        return_log_prob=True,
        log_prob_key=(g, "action_log_prob"),
    )


def _action_bounds(action_spec) -> dict:
    """TanhNormal bounds: plain floats when all agents share them, so the actor moves between
    devices freely (distribution kwargs are not module buffers)."""
    low, high = action_spec.space.low, action_spec.space.high
    if bool((low == low.flatten()[0]).all()) and bool((high == high.flatten()[0]).all()):
        return {"low": float(low.flatten()[0]), "high": float(high.flatten()[0])}
    return {"low": low.clone(), "high": high.clone()}


def make_critic(group: Group, model: DictConfig, *, centralised: bool, device=None, all_groups: list[Group] | None = None) -> TensorDictModuleBase:
    """State-value critic writing `(group, "state_value")` of shape [*B, n_agents, 1].

    centralised=True (MAPPO): every agent's value sees all agents' observations: those of its
    group, or, given `all_groups` (an env with several groups, e.g. a speaker and a listener),
    those of every group (a feed-forward `model` only: a recurrent critic's state is per group).
    centralised=False (IPPO): every agent's value sees only its own observation.
    A recurrent `model` keeps its state in `(group, "critic_h")`.
    """
    if centralised and all_groups and len(all_groups) > 1 and not is_recurrent(model):
        if any(g.image is not None for g in all_groups):
            raise UsageError("a centralised critic over several groups reads flat observations: images are refused there (use ippo)")
        n_in = sum(g.n_agents * g.obs_dim for g in all_groups)
        net = JointInput(group.n_agents, mlp(model, n_in, 1, group.n_agents, device=device))
        return TensorDictModule(net, in_keys=[g.key("observation") for g in all_groups], out_keys=[group.key("state_value")])
    return agent_net(model, group, 1, group.key("state_value"), name="critic", centralised=centralised, device=device)


class JointInput(nn.Module):
    """`net` on the observations of several groups, each [*B, n_g, F_g], joined by the builder's
    `JointObservation` and given to every one of `n_agents` agents."""

    def __init__(self, n_agents: int, net: nn.Module):
        super().__init__()
        self.join, self.net = JointObservation(n_agents), net

    def forward(self, *observations: torch.Tensor) -> torch.Tensor:
        return self.net(self.join(*observations))


class AppendedInput(TensorDictModuleBase):
    """`net` (a builder network of a group's observation) run on the observation with `extra`
    [*B, n_agents, k] appended to each agent's features: a wider input for any model kind, since
    the builder's networks read the observation entry.

    The net runs on a shallow copy of the tensordict whose observation is the joined one, and its
    outputs are copied back: the caller's observation stays as the env wrote it.
    """

    def __init__(self, net: TensorDictModuleBase, observation: NestedKey, extra: NestedKey):
        super().__init__()
        self.net, self.observation, self.extra = net, observation, extra
        self.in_keys, self.out_keys = [*net.in_keys, extra], list(net.out_keys)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        joined = tensordict.clone(False)
        joined.set(self.observation, torch.cat([tensordict.get(self.observation), tensordict.get(self.extra)], dim=-1))
        return tensordict.update(self.net(joined).select(*self.out_keys))


class FixedRandomPolicy(TensorDictModuleBase):
    """A group that is not trained acts uniformly at random from its action spec (the fixed
    opponent or partner of the groups an algorithm trains)."""

    def __init__(self, group: Group):
        super().__init__()
        self.spec = group.action_spec  # [n_agents, ...]
        self.in_keys, self.out_keys = ([group.key("action_mask")] if group.action_masked else []), [group.key("action")]

    def forward(self, tensordict):
        if self.in_keys:  # uniform over the legal actions
            legal = tensordict.get(self.in_keys[0]).float()  # [*B, n_agents, n_actions]
            choice = torch.multinomial(legal.flatten(0, -2), 1).view(legal.shape[:-1])
            action = torch.nn.functional.one_hot(choice, legal.shape[-1]) if isinstance(self.spec, OneHot) else choice
        else:
            action = self.spec.expand(*tensordict.batch_size, *self.spec.shape).rand()
        tensordict.set(self.out_keys[0], action.to(tensordict.device))
        return tensordict


@torch.no_grad()
def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def bounds_on_device(module: nn.Module, device: torch.device) -> None:
    """Action bounds that actors keep as plain numbers (`distribution_kwargs` low/high) become
    device tensors: a number is copied to the device at every forward, which a CUDA graph
    cannot capture."""
    for sub in module.modules():
        kwargs = getattr(sub, "distribution_kwargs", None)
        if isinstance(kwargs, dict):
            for name in ("low", "high"):
                if isinstance(kwargs.get(name), Number):
                    kwargs[name] = torch.tensor(float(kwargs[name]), device=device)
                elif isinstance(kwargs.get(name), torch.Tensor):
                    kwargs[name] = kwargs[name].to(device)
