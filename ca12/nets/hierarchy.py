"""Hierarchical (feudal) multi-agent networks: team managers set sub-goals for their workers at a
slower time scale, trained end to end with the workers.

`MultiAgentHierarchy` splits a group's agents into teams of `team_size` consecutive agents (the
last team may be smaller). Every `period` steps, and where an episode starts (`is_init`), each
team's manager reads its members' encoded observations and emits one goal vector per member;
between decisions the goal is held. Each agent's worker then acts on its own encoded observation
and its current goal:

    h_i = enc(o_i)                                                   per agent
    g_team = manager([h_j for j in team], zero-padded to team_size)  at decision steps only
    g_i(t) = g_i(t_decision)                                         held in between
    out_i = worker([h_i, g_i(t)])                                    per agent

This is the feudal idea of Dayan & Hinton (1993, "Feudal reinforcement learning": managers set
tasks for sub-managers and hide the details below them) in the multi-agent form of Ahilan &
Dayan (2019, "Feudal multi-agent hierarchies for cooperative reinforcement learning": one
manager sets goals for several workers), with FuN's temporal abstraction (Vezhnevets et al.
2017, "FeUdal networks for hierarchical reinforcement learning": the manager acts at a lower
temporal resolution, its goal conditions the worker's policy). Unlike FuN the goal is a latent
vector trained end to end: there is no transition policy gradient and no intrinsic reward, and
unlike Ahilan & Dayan the manager has no reward of its own. In sequence mode a held goal is the
very tensor computed at its decision step, so the workers' loss (PPO's surrogate, a TD error)
reaches the manager through every step its goal was held; a goal decided before the sequence
starts comes from the stored state, as data (no gradient), as a GRU's stored hidden state does.

The manager's weights are shared by all teams and it sees only its own team, so no information
crosses teams (tested: zero gradient). The goal and the steps since the team's last decision are
the net's state, carried by the collector exactly like a GRU's hidden state (ca12/nets/recurrent.py):
read from `(group, f"{name}_goal")` [*B, n, goal_size] and `(group, f"{name}_clock")` [*B, n, 1],
written under `("next", group, ...)`, registered with the env by `make_tensordict_primer()`,
step mode by default and sequence mode ([*B, T], time last) under TorchRL's
`set_recurrent_mode`. The builder's `is_recurrent` is therefore true for it, and every algorithm
that replays GRU sequences (MAPPO/IPPO, IQL/VDN/QMIX) replays these too, with no change.

Written by hand: neither TorchRL nor another library installed here offers a multi-agent feudal
network with a held, tensordict-carried goal.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey, unravel_key
from torch import nn
from torchrl.data import Composite, Unbounded
from torchrl.envs import TensorDictPrimer
from torchrl.modules import MLP, MultiAgentMLP

from ca12.nets.recurrent import MultiAgentRecurrent, time_major_inputs


class MultiAgentHierarchy(TensorDictModuleBase):
    """Team managers and per-agent workers for one group; see the module docstring.

    Reads `in_key` [*B, n, n_in], `"is_init"` [*B, 1] and the state `(group, f"{name}_goal")`
    [*B, n, goal_size], `(group, f"{name}_clock")` [*B, n, 1] (steps since the team's last
    decision; missing state: a decision is due); writes `out_key` [*B, n, n_out] and the state
    after the step under `("next", group, ...)`: the goal the step acted on, and the clock (1
    right after a decision). In sequence mode the batch is [*B, T]: the run starts from the
    stored state at t=0, decides wherever `is_init` is True or `period` steps have passed, and
    writes the output and the true state of every step.
    """

    # The same mode switch as the GRU/LSTM nets: TorchRL's global context wins, else the
    # default of this object (the collector's) or of the copy `set_recurrent_mode` returns.
    recurrent_mode = MultiAgentRecurrent.recurrent_mode
    set_recurrent_mode = MultiAgentRecurrent.set_recurrent_mode

    def __init__(
        self,
        *,
        n_in: int,
        n_out: int,
        n_agents: int,
        share_params: bool,
        hidden_sizes: Sequence[int],
        team_size: int,
        period: int,
        goal_size: int,
        manager_sizes: Sequence[int],
        activation: type[nn.Module],
        device,
        group: str,
        in_key: NestedKey,
        out_key: NestedKey,
        name: str,
    ):
        super().__init__()
        hidden_sizes, manager_sizes = list(hidden_sizes), list(manager_sizes)
        if not hidden_sizes:
            raise ValueError("hidden_sizes must name at least one layer (the per-agent encoder)")
        if min(n_in, n_out, n_agents, team_size, period, goal_size, *hidden_sizes, *manager_sizes) <= 0:
            raise ValueError("sizes, team_size, period and goal_size must be positive")
        self.n_agents, self.team_size, self.period, self.goal_size, self.group = n_agents, team_size, period, goal_size, group
        self.n_teams = -(-n_agents // team_size)  # the last team may be short
        self.state_keys: list[tuple[str, str]] = [(group, f"{name}_goal"), (group, f"{name}_clock")]
        self.in_keys = [unravel_key(in_key), "is_init", *self.state_keys]
        self.out_keys = [unravel_key(out_key), *(("next", *key) for key in self.state_keys)]
        self._recurrent_mode = False

        features = hidden_sizes[-1]
        agents = dict(n_agents=n_agents, centralized=False, share_params=share_params, device=device)
        self.encoder = MultiAgentMLP(n_in, features, num_cells=hidden_sizes[:-1], activation_class=activation, activate_last_layer=True, **agents)
        # One manager for all teams: a team's members' features in slot order -> a goal per slot.
        self.manager = MLP(
            in_features=team_size * features, out_features=team_size * goal_size, num_cells=manager_sizes, activation_class=activation, device=device
        )
        self.worker = MultiAgentMLP(features + goal_size, n_out, num_cells=[features], activation_class=activation, **agents)

    def make_tensordict_primer(self) -> TensorDictPrimer:
        """Zero goal [n_agents, goal_size] and clock [n_agents, 1] per env, at every reset.

        The group Composite carries the agent dim, as in `MultiAgentRecurrent`'s primer (without
        it the primer's `group` entry would clash with the env's [*B, n_agents] group).
        """
        shapes = {self.state_keys[0][-1]: (self.n_agents, self.goal_size), self.state_keys[1][-1]: (self.n_agents, 1)}
        entries = {key: Unbounded(shape=shape) for key, shape in shapes.items()}
        return TensorDictPrimer(Composite({self.group: Composite(entries, shape=(self.n_agents,))}), expand_specs=True)

    def propose(self, h: torch.Tensor) -> torch.Tensor:
        """The managers' goals for every agent, [*, n, F] -> [*, n, goal_size]: each team of
        `team_size` consecutive agents (the last one zero-padded) is one manager input."""
        slots = self.n_teams * self.team_size
        teams = F.pad(h, (0, 0, 0, slots - self.n_agents)).reshape(*h.shape[:-2], self.n_teams, -1)  # [*, teams, team_size*F]
        goals = self.manager(teams).reshape(*h.shape[:-2], slots, self.goal_size)  # [*, slots, G]
        return goals[..., : self.n_agents, :]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        batch, x, reset = time_major_inputs(tensordict, self.in_keys[0], self.n_agents, self.recurrent_mode)  # [T, M, n, n_in], [T, M]
        steps, n = x.shape[0], self.n_agents
        stored_goal, stored_clock = (tensordict.get(key, None) for key in self.state_keys)
        if stored_goal is None or stored_clock is None:  # no state yet: a decision is due
            goal = x.new_zeros(x.shape[1], n, self.goal_size)
            clock = x.new_full((x.shape[1], n, 1), float(self.period))
        else:  # the state at t=0: [M, n, G], [M, n, 1]
            goal = stored_goal.reshape(-1, steps, n, self.goal_size)[:, 0]
            clock = stored_clock.reshape(-1, steps, n, 1)[:, 0].to(x.dtype)

        h = self.encoder(x)  # [T, M, n, F]
        proposed = self.propose(h)  # [T, M, n, G]: what the managers would decide at each step
        goals, clocks = [], []
        for t in range(steps):
            decide = reset[t, :, None, None] | (clock >= self.period)  # [M, n, 1]
            goal = torch.where(decide, proposed[t], goal)  # held goals keep their decision step's graph
            clock = torch.where(decide, 1.0, clock + 1.0)
            goals.append(goal)
            clocks.append(clock)
        goal, clock = torch.stack(goals), torch.stack(clocks)  # [T, M, n, G], [T, M, n, 1]
        out = self.worker(torch.cat([h, goal], -1))  # [T, M, n, n_out]

        def to_batch(value: torch.Tensor) -> torch.Tensor:  # [T, M, ...] -> [*batch, ...]
            return value.transpose(0, 1).reshape(*batch, *value.shape[2:])

        for key, value in zip(self.out_keys, (out, goal, clock)):
            prefix = key[:-1] if isinstance(key, tuple) else ()
            if prefix and prefix[-1] == self.group and prefix not in tensordict.keys(include_nested=True):
                # a group's entries carry the agent dim
                tensordict.set(prefix, TensorDict(batch_size=(*batch, n), device=tensordict.device, names=[*tensordict.names, None]))
            tensordict.set(key, to_batch(value))
        return tensordict


def make_hierarchy(
    *,
    n_in: int,
    n_out: int,
    n_agents: int,
    share_params: bool,
    hidden_sizes: Sequence[int],
    team_size: int,
    period: int,
    goal_size: int,
    manager_sizes: Sequence[int],
    activation: type[nn.Module],
    device,
    group: str,
    in_key: NestedKey,
    out_key: NestedKey,
    name: str,
) -> MultiAgentHierarchy:
    """A feudal multi-agent network (team managers over per-agent workers) as a TensorDict module.

    Args:
        n_in: per-agent input size of `in_key`.
        n_out: per-agent output size of `out_key`.
        n_agents: agents in `group`.
        share_params: one weight set for all agents' encoders and workers if True, per-agent
            weights otherwise (the manager is always one, shared by the teams).
        hidden_sizes: the per-agent encoder's widths; its last width F is the features the
            manager reads and the width of the worker's hidden layer.
        team_size: agents per team (consecutive agents; the last team may be smaller).
        period: steps between a team's decisions (a new episode always decides).
        goal_size: width of the goal given to each worker.
        manager_sizes: the manager MLP's hidden widths (empty: linear).
        activation: activation class of every hidden layer.
        device: where the weights live.
        group: the agents' group, holding the state entries.
        in_key: input entry, e.g. `(group, "observation")`.
        out_key: output entry, e.g. `(group, "logits")`.
        name: state entries are `(group, f"{name}_goal")` and `(group, f"{name}_clock")`.

    Raises:
        ValueError: a non-positive size or empty `hidden_sizes`.
    """
    return MultiAgentHierarchy(
        n_in=n_in,
        n_out=n_out,
        n_agents=n_agents,
        share_params=share_params,
        hidden_sizes=hidden_sizes,
        team_size=team_size,
        period=period,
        goal_size=goal_size,
        manager_sizes=manager_sizes,
        activation=activation,
        device=device,
        group=group,
        in_key=in_key,
        out_key=out_key,
        name=name,
    )
