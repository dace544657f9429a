"""One builder for every network an algorithm uses, composed by config (conf/model/).

`model=mlp|gru|lstm|hierarchical|ic3net` chooses the actor's (or Q-network's) network and
`critic_model=...` the critic's; sizes, activation and parameter sharing come from the same
section. Algorithms never call a fixed MLP builder: they ask this module for
* `agent_net(...)`: a TensorDict module from a group's observation to an output entry, per agent
  (feed-forward, or recurrent with its hidden state carried by the collector);
* `mlp(...)`: a plain `nn.Module` [*, n_agents, n_in] -> [*, n_agents, n_out], for networks that
  read assembled inputs (Q(s, a) critics, COMA's critic; centralised or not).
`model=commnet|tarmac|dial|graph` makes either of them talk (`TalkingNet`): a per-agent encoder
MLP (hidden_sizes) -> a communication module across the group's agents
(ca12/nets/communication.py) -> a per-agent linear head. Only the messages cross agents, so a
decentralised actor stays decentralised but for them, and every algorithm gets talking
networks with no change of its own.
`model=hierarchical` gives team managers that set sub-goals for per-agent workers every
`period` steps (ca12/nets/hierarchy.py); it keeps its goals as state, like a GRU its hidden
state, so it counts as recurrent (`is_recurrent`) and is built by `agent_net` only.
`model=ic3net` gives LSTM controllers that talk (IC3Net's gated messages, ca12/nets/ic3net.py):
recurrent, so also `agent_net` only.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from tensordict.nn import TensorDictModule, TensorDictModuleBase, TensorDictSequential
from torch import nn
from torchrl.modules import MultiAgentConvNet, MultiAgentMLP

from ca12.errors import UsageError
from ca12.nets.communication import AttentionCommunication, CommNet, DIALCommunication, GraphCommunication
from ca12.nets.hierarchy import make_hierarchy
from ca12.nets.ic3net import GatedMessages
from ca12.nets.recurrent import make_recurrent
from ca12.sections import ACTIVATIONS, CNN, COMMUNICATION, HIERARCHICAL, IC3NET, RECURRENT  # the kinds and their schemas (ca12/sections.py: start-up)


def is_recurrent(model: DictConfig) -> bool:
    """The network keeps a state from step to step (gru, lstm, hierarchical, ic3net): the
    collector carries it and the losses replay whole sequences."""
    return model.kind in (*RECURRENT, HIERARCHICAL, IC3NET)


def is_communicating(model: DictConfig) -> bool:
    return model.kind in COMMUNICATION


def activation_class(name: str) -> type[nn.Module]:
    if name not in ACTIVATIONS:
        raise UsageError(f"unknown activation '{name}'; choose one of: {', '.join(ACTIVATIONS)}")
    return getattr(nn, ACTIVATIONS[name])


def mlp(model: DictConfig, n_in: int, n_out: int, n_agents: int, *, centralised: bool = False, device=None) -> nn.Module:
    """A feed-forward net per agent, [*, n_agents, n_in] -> [*, n_agents, n_out]; with
    `centralised` every agent's output sees all agents' inputs. A talking `model` kind gives a
    `TalkingNet` (its agents also exchange messages); `hierarchical` and `ic3net` are refused
    (their goals or controllers' state are kept between steps, which a network of assembled
    inputs cannot hold)."""
    if model.kind == CNN:
        raise UsageError("model=cnn convolves a group's image observations; this network reads assembled inputs (use model=mlp)")
    if model.kind in (HIERARCHICAL, IC3NET):
        kept = "its goals" if model.kind == HIERARCHICAL else "its controllers' state"
        raise UsageError(f"model={model.kind} keeps {kept} between steps, which this plain feed-forward network cannot: use model=mlp here")
    if is_communicating(model):
        return TalkingNet(model, n_in, n_out, n_agents, centralised=centralised, device=device)
    return MultiAgentMLP(
        n_agent_inputs=n_in,
        n_agent_outputs=n_out,
        n_agents=n_agents,
        centralized=centralised,
        share_params=model.share_params,
        num_cells=list(model.hidden_sizes),
        activation_class=activation_class(model.activation),
        device=device,
    )


class TalkingNet(nn.Module):
    """[*, n_agents, n_in] -> [*, n_agents, n_out]: a per-agent encoder MLP (`hidden_sizes`,
    its last width F is the message-passing width), the kind's communication module across the
    agents, a per-agent linear head. Encoder and head follow `share_params`; the communication
    module is one for all agents (as in the papers), so it is permutation equivariant.

    `graph` with `random_geometric` reads the agents' positions from the first
    `position_features` input features (VMAS observations start with the position).
    """

    def __init__(self, model: DictConfig, n_in: int, n_out: int, n_agents: int, *, centralised: bool = False, device=None):
        super().__init__()
        sizes = list(model.hidden_sizes)
        if not sizes:
            raise UsageError(f"model={model.kind} needs hidden_sizes (the encoder; its last width is what the agents exchange)")
        act = activation_class(model.activation)
        agents = dict(n_agents=n_agents, share_params=model.share_params, device=device)
        self.encoder = MultiAgentMLP(
            n_in, sizes[-1], centralized=centralised, num_cells=sizes[:-1], activation_class=act, activate_last_layer=True, **agents
        )
        self.communication = _communication(model, sizes[-1], act)
        self.head = MultiAgentMLP(sizes[-1], n_out, centralized=False, num_cells=[], **agents)
        self.communication.to(device)
        self.position_features = model.get("position_features") if model.kind == "graph" and model.graph == "random_geometric" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x)  # [*, n, F]
        if self.position_features is None:
            h = self.communication(h)
        else:
            h = self.communication(h, x[..., : self.position_features])
        return self.head(h)


def _communication(model: DictConfig, features: int, act: type[nn.Module]) -> nn.Module:
    if model.kind == "commnet":
        return CommNet(features, model.rounds, act)
    if model.kind == "tarmac":
        if model.message_size % model.heads:
            raise UsageError(f"model.message_size ({model.message_size}) must be a multiple of model.heads ({model.heads})")
        return AttentionCommunication(features, model.message_size, model.rounds, model.heads, model.attend_to_self, act)
    if model.kind == "dial":
        return DIALCommunication(features, model.message_size, model.rounds, model.noise, act)
    if model.dropout >= 1.0:
        raise UsageError(f"model.dropout must be below 1, got {model.dropout}")
    if model.top_k is not None and model.top_k < 1:
        raise UsageError(f"model.top_k must be >= 1 or null, got {model.top_k}")
    return GraphCommunication(
        features, model.graph, model.message_size, model.rounds, model.radius, model.top_k, model.dropout, model.noise, model.noisy_eval, act
    )


class JointObservation(nn.Module):
    """Observations [*, n_g, F_g] of one or more groups -> [*, n_agents, sum_g n_g F_g]: every
    agent's input is all of them (the input of a centralised network). `n_agents`: the agents
    that get it, by default those of the first input."""

    def __init__(self, n_agents: int | None = None):
        super().__init__()
        self.n_agents = n_agents

    def forward(self, *observations: torch.Tensor) -> torch.Tensor:
        joint = torch.cat([obs.flatten(-2) for obs in observations], dim=-1)  # [*, sum n_g F_g]
        n_agents = self.n_agents or observations[0].shape[-2]
        return joint.unsqueeze(-2).expand(*joint.shape[:-1], n_agents, joint.shape[-1])


def agent_net(
    model: DictConfig, group, n_out: int, out_key, *, name: str, head: nn.Module | None = None, centralised: bool = False, device=None
) -> TensorDictModuleBase:
    """The network that maps a group's observation to `out_key` [*, n_agents, n_out].

    Feed-forward, recurrent (model=gru|lstm), hierarchical (team managers over workers, with
    state like a recurrent net), talking (model=commnet|tarmac|dial|graph, a `TalkingNet`) or
    recurrent and talking (model=ic3net: LSTM controllers with IC3Net's gated messages).

    Args:
        model: the `model` (or `critic_model`) section.
        group: the `ca12.envs.Group` it serves.
        n_out: outputs per agent.
        out_key: where the output goes, e.g. `(group, "logits")`.
        name: names the state entries `(group, f"{name}_h")` (hierarchical: `_goal`, `_clock`),
            so actor and critic states stay apart.
        head: a module applied to the output (e.g. NormalParamExtractor); `out_key` may then be
            a list of keys.
        centralised: every agent's output sees all agents' observations (MAPPO's critic).
        device: where the parameters live.
    """
    in_key, n_in = group.key("observation"), group.obs_dim
    out_keys = out_key if isinstance(out_key, list) else [out_key]
    if model.kind == CNN or group.image is not None:
        net = image_net(model, group, n_out, centralised=centralised, device=device)
        return TensorDictModule(net if head is None else nn.Sequential(net, head), in_keys=[in_key], out_keys=out_keys)
    if not is_recurrent(model):
        net = mlp(model, n_in, n_out, group.n_agents, centralised=centralised, device=device)
        return TensorDictModule(net if head is None else nn.Sequential(net, head), in_keys=[in_key], out_keys=out_keys)
    steps = []
    if centralised:
        joint = group.key(f"{name}_joint_observation")
        steps.append(TensorDictModule(JointObservation(), in_keys=[in_key], out_keys=[joint]))
        in_key, n_in = joint, group.n_agents * n_in
    net = dict(
        n_in=n_in,
        n_out=n_out,
        n_agents=group.n_agents,
        share_params=model.share_params,
        activation=activation_class(model.activation),
        device=device,
        group=group.name,
        in_key=in_key,
        out_key=group.key(f"{name}_out") if head is not None else out_keys[0],
        name=name,
    )
    if model.kind == HIERARCHICAL:
        steps.append(_hierarchy(model, net))
    elif model.kind == IC3NET:
        steps.append(_ic3net(model, net))
    else:
        steps.append(
            make_recurrent(model.kind, hidden_size=model.hidden_size, num_layers=model.num_layers, mlp_sizes=list(model.hidden_sizes), **net)
        )
    if head is not None:
        steps.append(TensorDictModule(head, in_keys=[group.key(f"{name}_out")], out_keys=out_keys))
    return steps[0] if len(steps) == 1 else TensorDictSequential(*steps)


def image_net(model: DictConfig, group, n_out: int, *, centralised: bool = False, device=None) -> nn.Module:
    """A group's network over image observations [*, n_agents, C, H, W]: `model=cnn`'s
    convolutions then MLP (`ImageNet`), or `model=mlp` on the flattened image; other kinds refused."""
    if group.image is None:
        raise UsageError(f"model=cnn reads image observations [n_agents, C, H, W]; group '{group.name}' observes flat vectors (use model=mlp)")
    if model.kind == CNN:
        return ImageNet(model, group.image, n_out, group.n_agents, centralised=centralised, device=device)
    if model.kind == "mlp":
        return nn.Sequential(nn.Flatten(-3), mlp(model, group.obs_dim, n_out, group.n_agents, centralised=centralised, device=device))
    raise UsageError(f"group '{group.name}' observes images: model={model.kind} reads flat observations; use model=cnn (or mlp)")


class ImageNet(nn.Module):
    """Convolutions over each agent's image [*, n_agents, C, H, W] (TorchRL's `MultiAgentConvNet`;
    `centralised`: each agent's sees every agent's image, stacked as channels), flattened, then a
    per-agent MLP (`hidden_sizes`) to `n_out`."""

    def __init__(self, model: DictConfig, image: tuple[int, int, int], n_out: int, n_agents: int, *, centralised: bool, device=None):
        super().__init__()
        if not len(model.channels) == len(model.kernel_sizes) == len(model.strides):
            raise UsageError("model=cnn: channels, kernel_sizes and strides need one entry per convolution")
        act = activation_class(model.activation)
        self.conv = MultiAgentConvNet(
            n_agents,
            centralized=centralised,
            share_params=model.share_params,
            in_features=image[0],  # per agent: a centralised net stacks the n_agents images itself
            num_cells=list(model.channels),
            kernel_sizes=list(model.kernel_sizes),
            strides=list(model.strides),
            activation_class=act,
            device=device,
        )
        with torch.no_grad():
            features = self.conv(torch.zeros(1, n_agents, *image, device=device)).shape[-1]
        self.head = MultiAgentMLP(
            features,
            n_out,
            n_agents,
            centralized=False,
            share_params=model.share_params,
            num_cells=list(model.hidden_sizes),
            activation_class=act,
            device=device,
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(images))


def _ic3net(model: DictConfig, net: dict) -> TensorDictModuleBase:
    """IC3Net's controllers from an `IC3NetConfig` section: an LSTM core that hears `GatedMessages`."""
    sizes = list(model.hidden_sizes)
    if not sizes:
        raise UsageError("model=ic3net needs hidden_sizes (the encoder e(o); each step's message is added to its output)")
    if model.num_layers != 1:
        raise UsageError(f"model=ic3net has one LSTM layer (its message joins that layer's input), got model.num_layers={model.num_layers}")
    talk = GatedMessages(model.hidden_size, sizes[-1], gated=model.gated).to(net["device"])
    return make_recurrent("lstm", hidden_size=model.hidden_size, num_layers=1, mlp_sizes=sizes, talk=talk, **net)


def _hierarchy(model: DictConfig, net: dict) -> TensorDictModuleBase:
    """`make_hierarchy` from a `HierarchicalConfig` section and `agent_net`'s shape arguments."""
    sizes, manager_sizes = list(model.hidden_sizes), list(model.manager_sizes)
    if not sizes:
        raise UsageError("model=hierarchical needs hidden_sizes (the per-agent encoder; its last width feeds manager and worker)")
    if min(sizes + manager_sizes) <= 0:
        raise UsageError(f"model.hidden_sizes and model.manager_sizes must be positive widths, got {sizes} and {manager_sizes}")
    return make_hierarchy(
        hidden_sizes=sizes, team_size=model.team_size, period=model.period, goal_size=model.goal_size, manager_sizes=manager_sizes, **net
    )
