"""One builder for every network an algorithm uses, composed by config (conf/model/).

`model=mlp|gru|lstm` chooses the actor's (or Q-network's) network and `critic_model=...` the
critic's; sizes, activation and parameter sharing come from the same section. Algorithms never
call a fixed MLP builder: they ask this module for
* `agent_net(...)`: a TensorDict module from a group's observation to an output entry, per agent
  (feed-forward, or recurrent with its hidden state carried by the collector);
* `mlp(...)`: a plain `nn.Module` [*, n_agents, n_in] -> [*, n_agents, n_out], for networks that
  read assembled inputs (Q(s, a) critics, COMA's critic; centralised or not).
Communication modules (CommNet, TarMAC, DIAL) plug in here as further kinds.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig
from tensordict.nn import TensorDictModule, TensorDictModuleBase, TensorDictSequential
from torch import nn
from torchrl.modules import MultiAgentMLP

from ca12.errors import UsageError
from ca12.nets.recurrent import make_recurrent
from ca12.schema import key

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU}
RECURRENT = ("gru", "lstm")


@dataclass
class MLPConfig:
    """conf/model/mlp.yaml."""

    kind: str = key("network kind: mlp, gru, lstm", choices=("mlp", *RECURRENT))
    hidden_sizes: list[int] = key("hidden layer widths (recurrent kinds: the encoder before the core)")
    activation: str = key("activation between layers", choices=tuple(ACTIVATIONS))
    share_params: bool = key("one set of weights for all agents of a group")


@dataclass
class RecurrentConfig(MLPConfig):
    """conf/model/gru.yaml, lstm.yaml."""

    hidden_size: int = key("width of the recurrent state", positive=True)
    num_layers: int = key("stacked recurrent layers", positive=True)


def model_schema(kind: str | None) -> type:
    return RecurrentConfig if kind in RECURRENT else MLPConfig


def is_recurrent(model: DictConfig) -> bool:
    return model.kind in RECURRENT


def activation_class(name: str) -> type[nn.Module]:
    if name not in ACTIVATIONS:
        raise UsageError(f"unknown activation '{name}'; choose one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def mlp(model: DictConfig, n_in: int, n_out: int, n_agents: int, *, centralised: bool = False, device=None) -> MultiAgentMLP:
    """A feed-forward net per agent, [*, n_agents, n_in] -> [*, n_agents, n_out]; with
    `centralised` every agent's output sees all agents' inputs."""
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


class JointObservation(nn.Module):
    """[*, n_agents, F] -> [*, n_agents, n_agents * F]: every agent's input is all agents'
    observations (the input of a centralised recurrent network)."""

    def forward(self, obs):
        n_agents = obs.shape[-2]
        return obs.flatten(-2).unsqueeze(-2).expand(*obs.shape[:-2], n_agents, n_agents * obs.shape[-1])


def agent_net(model: DictConfig, group, n_out: int, out_key, *, name: str, head: nn.Module | None = None,
              centralised: bool = False, device=None) -> TensorDictModuleBase:
    """The network that maps a group's observation to `out_key` [*, n_agents, n_out].

    Args:
        model: the `model` (or `critic_model`) section.
        group: the `ca12.envs.Group` it serves.
        n_out: outputs per agent.
        out_key: where the output goes, e.g. `(group, "logits")`.
        name: names the recurrent state entries `(group, f"{name}_h")`, so actor and critic
            states stay apart.
        head: a module applied to the output (e.g. NormalParamExtractor); `out_key` may then be
            a list of keys.
        centralised: every agent's output sees all agents' observations (MAPPO's critic).
        device: where the parameters live.
    """
    in_key, n_in = group.key("observation"), group.obs_dim
    out_keys = out_key if isinstance(out_key, list) else [out_key]
    if not is_recurrent(model):
        net = mlp(model, n_in, n_out, group.n_agents, centralised=centralised, device=device)
        return TensorDictModule(net if head is None else nn.Sequential(net, head), in_keys=[in_key], out_keys=out_keys)
    steps = []
    if centralised:
        joint = group.key(f"{name}_joint_observation")
        steps.append(TensorDictModule(JointObservation(), in_keys=[in_key], out_keys=[joint]))
        in_key, n_in = joint, group.n_agents * n_in
    core = make_recurrent(
        model.kind, n_in=n_in, n_out=n_out, n_agents=group.n_agents, share_params=model.share_params,
        hidden_size=model.hidden_size, num_layers=model.num_layers, mlp_sizes=list(model.hidden_sizes),
        activation=activation_class(model.activation), device=device, group=group.name,
        in_key=in_key, out_key=group.key(f"{name}_out") if head is not None else out_keys[0], name=name,
    )
    steps.append(core)
    if head is not None:
        steps.append(TensorDictModule(head, in_keys=[group.key(f"{name}_out")], out_keys=out_keys))
    return steps[0] if len(steps) == 1 else TensorDictSequential(*steps)
