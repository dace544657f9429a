"""Multi-agent actors and critics built from an env's specs.

Shapes come from the specs, never from config: observation size, action size, number of agents
and whether actions are continuous (TanhNormal within the action bounds) or discrete
(Categorical over the action's `n` choices).
"""

from __future__ import annotations

from typing import Sequence

import torch
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.data import Categorical, OneHot
from torchrl.envs import EnvBase
from torchrl.modules import MultiAgentMLP, ProbabilisticActor, TanhNormal
from torchrl.modules.distributions import OneHotCategorical
from torch.distributions import Categorical as CategoricalDist

from ca12.errors import UsageError

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU}


def activation_class(name: str) -> type[nn.Module]:
    if name not in ACTIVATIONS:
        raise UsageError(f"unknown activation '{name}'; choose one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def _group_shapes(env: EnvBase, group: str) -> tuple[int, int]:
    obs_spec = env.full_observation_spec_unbatched[group, "observation"]
    if obs_spec.ndim != 2:
        raise UsageError(f"expected flat per-agent observations [n_agents, dim], got shape {tuple(obs_spec.shape)}")
    n_agents, obs_dim = obs_spec.shape
    return n_agents, obs_dim


def _mlp(n_in: int, n_out: int, n_agents: int, centralised: bool, share_params: bool, hidden: Sequence[int], activation: str, device) -> MultiAgentMLP:
    return MultiAgentMLP(
        n_agent_inputs=n_in,
        n_agent_outputs=n_out,
        n_agents=n_agents,
        centralized=centralised,
        share_params=share_params,
        num_cells=list(hidden),
        activation_class=activation_class(activation),
        device=device,
    )


def make_actor(env: EnvBase, group: str, *, share_params: bool, hidden_sizes: Sequence[int], activation: str) -> ProbabilisticActor:
    """Decentralised stochastic policy: each agent acts on its own observation.

    Writes `(group, "action")` and its log-probability `(group, "action_log_prob")`.
    """
    n_agents, obs_dim = _group_shapes(env, group)
    action_spec = env.full_action_spec_unbatched[group, "action"]
    device = env.device
    if isinstance(action_spec, (Categorical, OneHot)):
        n_actions = action_spec.space.n
        net = _mlp(obs_dim, n_actions, n_agents, False, share_params, hidden_sizes, activation, device)
        module = TensorDictModule(net, in_keys=[(group, "observation")], out_keys=[(group, "logits")])
        dist_class = OneHotCategorical if isinstance(action_spec, OneHot) else CategoricalDist
        dist_keys, dist_kwargs = [(group, "logits")], {}
    else:
        action_dim = action_spec.shape[-1]
        net = nn.Sequential(
            _mlp(obs_dim, 2 * action_dim, n_agents, False, share_params, hidden_sizes, activation, device),
            NormalParamExtractor(),
        )
        module = TensorDictModule(net, in_keys=[(group, "observation")], out_keys=[(group, "loc"), (group, "scale")])
        dist_class = TanhNormal
        dist_keys, dist_kwargs = [(group, "loc"), (group, "scale")], _action_bounds(action_spec)
    return ProbabilisticActor(
        module=module,
        spec=env.full_action_spec_unbatched[group, "action"],
        in_keys=dist_keys,
        out_keys=[(group, "action")],
        distribution_class=dist_class,
        distribution_kwargs=dist_kwargs,
        return_log_prob=True,
        log_prob_key=(group, "action_log_prob"),
    )


def _action_bounds(action_spec) -> dict:
    """TanhNormal bounds: plain floats when all agents share them, so the actor moves between
    devices freely (distribution kwargs are not module buffers)."""
    low, high = action_spec.space.low, action_spec.space.high
    if bool((low == low.flatten()[0]).all()) and bool((high == high.flatten()[0]).all()):
        return {"low": float(low.flatten()[0]), "high": float(high.flatten()[0])}
    return {"low": low.clone(), "high": high.clone()}


def make_critic(env: EnvBase, group: str, *, centralised: bool, share_params: bool, hidden_sizes: Sequence[int], activation: str) -> TensorDictModule:
    """State-value critic writing `(group, "state_value")` of shape [*B, n_agents, 1].

    centralised=True (MAPPO): every agent's value sees all agents' observations.
    centralised=False (IPPO): every agent's value sees only its own observation.
    """
    n_agents, obs_dim = _group_shapes(env, group)
    net = _mlp(obs_dim, 1, n_agents, centralised, share_params, hidden_sizes, activation, env.device)
    return TensorDictModule(net, in_keys=[(group, "observation")], out_keys=[(group, "state_value")])


@torch.no_grad()
def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
