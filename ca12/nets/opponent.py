"""Opponent modelling: each agent predicts the other agents' actions and acts on the prediction.

`algo.opponent_model=true` (the PPO family, ca12/algos/mappo.py) gives every trained group an
`OpponentModel`: a network from each agent's own observation to a distribution over every other
agent's action, trained by cross-entropy on the actions they took in the batch, whose predicted
probabilities the actor reads as an extra input (appended to its observation,
`make_actor(extra_input=...)`). This is the supervised opponent model of He et al. 2016
("Opponent Modeling in Deep Reinforcement Learning", DRON's multitask variant) and Hong et al.
2018 ("A Deep Policy Inference Q-Network for Multi-Agent Systems"), with the prediction itself
(not hidden features) as the policy's input. Written here: TorchRL has no opponent model.

The other agents of agent i of group g are, in this order:
  * every agent of every group of the env but i itself, groups in the env's order (its teammates
    in g and the agents of the other groups, trained or acting at random): their actions
    `(h, "action")` at the same step, which i does not see when it acts;
  * the env's scripted players, when the env writes `(g, "opponent_action")` [*B, n_g, m] (a
    matrix game with `env.opponent_strategies`): what they played in the step, read from
    `("next", g, "opponent_action")` (the env writes it with the step's outcome).
Only discrete actions are predicted (one categorical per other agent); settings with nobody to
model or a continuous other are refused in one line.

Execution stays decentralised: the model reads agent i's observation only (and, with a recurrent
`model`, its own hidden state: a summary of i's observation history); the others' actions are its
training targets, never its inputs. It is a network of its own (built from the `model` section
like the actor, so every model kind works) rather than a head on the actor's trunk: its output is
an input of the actor, which a shared trunk would have to produce before running. The actor reads
the prediction made while acting (kept in the batch like an observation), so the policy gradient
never reaches the opponent model: its cross-entropy alone trains it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import nn
from torchrl.data import OneHot
from torchrl.envs import EnvBase

from ca12.envs.layout import AgentLayout, Group
from ca12.errors import UsageError
from ca12.nets.builder import agent_net

# The env's entry for its scripted players' actions, under a group: [*B, n_agents, m] int64.
SCRIPTED_KEY = "opponent_action"


class OpponentModel(TensorDictModuleBase):
    """Predicts, for every agent of `group`, the action of each of its other agents (see the
    module docstring for who they are).

    Writes `(g, "opponent_logits")` and `(g, "opponent_probs")` [*B, n_agents, sum(sizes)]: one
    block of `sizes[j]` entries per other agent j, a softmax each (the probabilities detached,
    they are the actor's input).

    Args:
        group: the trained group whose agents predict.
        layout: the env's agent groups.
        env: the env, for its specs (a `(g, "opponent_action")` entry adds scripted players).
        model: the `model` section (the actor's).
        device: where the parameters live.

    Raises:
        UsageError: nobody to model, or another agent with continuous actions.
    """

    def __init__(self, group: Group, layout: AgentLayout, env: EnvBase, model: DictConfig, device=None):
        super().__init__()
        g = self.group = group.name
        self.agent_groups = list(layout.groups.values())
        continuous = [h.name for h in self.agent_groups if not h.discrete and (h.name != g or h.n_agents > 1)]
        if continuous:
            raise UsageError(f"algo.opponent_model=true predicts discrete actions; group '{continuous[0]}' acts continuously")
        # Agent i of g (global index first + i) models every other agent of the env, in order.
        first = sum(h.n_agents for h in self.agent_groups[: layout.names.index(g)])
        n_total = sum(h.n_agents for h in self.agent_groups)
        others = [[j for j in range(n_total) if j != first + i] for i in range(group.n_agents)]
        self.register_buffer("others", torch.tensor(others, dtype=torch.long, device=device).view(group.n_agents, n_total - 1), persistent=False)
        sizes = [h.n_actions for h in self.agent_groups for _ in range(h.n_agents)]
        del sizes[first]  # the same sizes for every agent of g: its teammates share its action spec
        scripted = env.full_observation_spec_unbatched.get((g, SCRIPTED_KEY), None)  # [n, m], m scripted players
        self.n_scripted = 0 if scripted is None else scripted.shape[-1]
        if scripted is not None:
            sizes += [int(scripted.space.n)] * self.n_scripted
        self.sizes = sizes
        if not self.sizes:
            raise UsageError(
                f"algo.opponent_model=true needs other agents to model: group '{g}' is the env's only agent "
                f"and the env writes no ({g}, {SCRIPTED_KEY}) for scripted ones"
            )
        self.logits_key, self.probs_key = group.key("opponent_logits"), group.key("opponent_probs")
        self.net = agent_net(model, group, sum(self.sizes), self.logits_key, name="opponent", device=device)
        self.in_keys, self.out_keys = list(self.net.in_keys), [*self.net.out_keys, self.probs_key]

    @property
    def prediction(self) -> tuple[tuple[str, str], int]:
        """(key, size) of what the actor reads: `make_actor(extra_input=...)`."""
        return self.probs_key, sum(self.sizes)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        logits = self.net(tensordict).get(self.logits_key)  # [*B, n, sum(sizes)]
        probs = torch.cat([block.softmax(-1) for block in logits.split(self.sizes, -1)], dim=-1)
        return tensordict.set(self.probs_key, probs.detach())

    def targets(self, tensordict: TensorDictBase) -> torch.Tensor:
        """The other agents' actions [*B, n_agents, len(sizes)] (action indices) in `sizes`' order."""
        joint = torch.cat([_indices(tensordict.get(h.key("action")), h) for h in self.agent_groups], dim=-1)  # [*B, N]
        parts = [joint[..., self.others]]  # [*B, n, N - 1]
        if self.n_scripted:
            parts.append(tensordict.get(("next", self.group, SCRIPTED_KEY)))  # [*B, n, m]
        return torch.cat(parts, dim=-1)

    def cross_entropy(self, tensordict: TensorDictBase) -> torch.Tensor:
        """Mean cross-entropy of the current network's prediction on `tensordict` ([*B] frames, or
        [b, T] sequences in recurrent mode) against the actions taken, over agents, others and frames."""
        logits = self.net(tensordict.clone(False)).get(self.logits_key)
        targets = self.targets(tensordict).unbind(-1)
        return torch.stack(
            [F.cross_entropy(block.flatten(0, -2), target.flatten()) for block, target in zip(logits.split(self.sizes, -1), targets)]
        ).mean()

    @torch.no_grad()
    def accuracy(self, tensordict: TensorDictBase) -> torch.Tensor:
        """How often the most likely predicted action, as predicted while acting (the batch's
        `(g, "opponent_probs")`), was the action taken: mean over agents, others and frames."""
        targets = self.targets(tensordict).unbind(-1)
        blocks = tensordict.get(self.probs_key).split(self.sizes, -1)
        return torch.stack([(block.argmax(-1) == target).float().mean() for block, target in zip(blocks, targets)]).mean()


def _indices(action: torch.Tensor, group: Group) -> torch.Tensor:
    """A discrete group's actions as indices [*B, n_agents] (one-hot actions are [*B, n_agents, A])."""
    return action.long().argmax(-1) if isinstance(group.action_spec, OneHot) else action.long()


class OpponentModels(nn.ModuleDict):
    """`algo.opponent_model`'s networks, one `OpponentModel` per trained group (empty when off): an
    optional part of the PPO family's update (MAPPO, IPPO, PPO hold one, they do not inherit it).

    Its parts of the update: the models act before the actors (`policy` puts them first and
    each actor reads `prediction(g)`), their weighted cross-entropy joins the loss
    (`loss_terms`), and their accuracy while acting is logged (`metrics`). Its state_dict keys
    are `opponent_models.<group>.*` under the module, as they were when MAPPO held the models.
    """

    @classmethod
    def build(cls, algo: DictConfig, groups: list[Group], layout: AgentLayout, env: EnvBase, model: DictConfig) -> "OpponentModels":
        """The models `algo` (the `algo` section) asks for; one-line `UsageError`s for a setting
        they cannot serve (a league's snapshots have no opponent model to act with)."""
        models = cls()
        if not algo.opponent_model:
            return models
        if algo.league.opponents is not None:
            raise UsageError(
                "algo.opponent_model=true cannot play a league (algo.league.opponents): its snapshots are actors without an opponent model"
            )
        models.coeff = float(algo.opponent_model_coeff)
        for group in groups:
            models[group.name] = OpponentModel(group, layout, env, model, device=env.device)
        return models

    def prediction(self, g: str) -> tuple[tuple[str, str], int] | None:
        """What group `g`'s actor reads besides its observation (`make_actor(extra_input=...)`)."""
        return self[g].prediction if g in self else None

    def loss_terms(self, minibatch: TensorDictBase) -> dict[str, torch.Tensor]:
        """`loss_opponent`, the cross-entropy summed over groups and weighted by
        `algo.opponent_model_coeff`, and `opponent_cross_entropy`, the plain (detached) one."""
        if not self:
            return {}
        cross_entropy = sum(model.cross_entropy(minibatch) for model in self.values())
        return {"opponent_cross_entropy": cross_entropy.detach(), "loss_opponent": self.coeff * cross_entropy}

    def metrics(self, batch: TensorDictBase) -> dict[str, torch.Tensor]:
        """`train/opponent_accuracy`: of the predictions made while collecting, mean over groups."""
        if not self:
            return {}
        return {"train/opponent_accuracy": torch.stack([model.accuracy(batch) for model in self.values()]).mean()}
