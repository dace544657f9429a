"""Repeated n-player matrix games, vectorised in torch over `num_envs` worlds.

A matrix game is the smallest multi-agent problem that still shows the failure modes of
decentralised learning: miscoordination and relative overgeneralisation (Claus & Boutilier 1998,
"The Dynamics of Reinforcement Learning in Cooperative Multiagent Systems"), and the cycling of
independent learners in zero-sum games. Here every world plays the same stage game `max_steps`
times (`max_steps=1` is the one-shot game); the payoff tensor comes from the config
(`conf/env/matrix/<game>.yaml`, or `env.payoffs=...` with `--env matrix/custom`).

Conventions:
    * `payoffs` has shape `(n_players, n_actions, ..., n_actions)` (one action axis per player):
      `payoffs[i, a_0, ..., a_{n-1}]` is player i's payoff when player j plays `a_j`.
    * Reward per agent is that player's own payoff, `("agents", "reward")` [B, n, 1]; in a
      common-payoff game all entries are equal, in a zero-sum game they sum to zero.
    * Observation per agent, `("agents", "observation")` [B, n, n*A + n + 1]:
      `[one-hot of a_0 | ... | one-hot of a_{n-1}]` of the previous joint action (all zeros at
      the start of an episode), then the agent's one-hot index (so one shared-parameter network
      can tell players apart in a general-sum game), then `t / max_steps` (the repeated game
      is finite; without time a value function could not tell the last play from the first).
    * The game really ends after `max_steps` plays: `done` and `terminated` are both set then.
    * `group_per_player=True` (`env.group_per_player=true`) puts each player in a group of its
      own, `player_i`, instead of one "agents" group: `("player_i", "observation")` [B, 1, obs],
      `("player_i", "action")` [B, 1] (or one-hot [B, 1, A]), `("player_i", "reward")` [B, 1, 1],
      with the same content as row i of the one-group keys. Separate groups let a trainer learn
      one player's policy against a fixed policy of the other (one group per policy, as in
      TorchRL's group_map convention); done flags stay env-level.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from tensordict import TensorDictBase
from torchrl.data import Bounded, Categorical, OneHot
from torchrl.envs import EnvBase

from ca12.envs.common import family_kwargs, group_output, reset_mask, set_group_specs, with_return_counters
from ca12.errors import UsageError

# Named games: each has conf/env/matrix/<name>.yaml with its payoff tensor.
GAMES = ("climbing", "coordination", "matching_pennies", "penalty", "prisoners_dilemma", "rock_paper_scissors")
# The generic template conf/env/matrix/scenario.yaml: the user gives env.payoffs.
CUSTOM = "custom"
# Task kwargs this family takes (everything else in the env section is refused).
_KWARGS = ("payoffs", "categorical_actions", "group_per_player")


def tasks() -> list[str]:
    return sorted(GAMES + (CUSTOM,))


def payoff_tensor(payoffs, device: torch.device | str = "cpu") -> torch.Tensor:
    """Check and convert a nested-list payoff table to a float tensor [n, A, ..., A].

    Raises:
        UsageError: not numeric, not one action axis per player, or players with different
            numbers of actions (the env gives every agent the same action spec).
    """
    try:
        table = torch.as_tensor(payoffs, dtype=torch.float32, device=device)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"env.payoffs must be a rectangular nested list of numbers: {exc}") from None
    shape = tuple(table.shape)
    if table.ndim < 2 or shape[0] != table.ndim - 1:
        raise UsageError(
            f"env.payoffs has shape {shape}; expected (n_players, n_actions, ..., n_actions) "
            "with one action axis per player"
        )
    if len(set(shape[1:])) != 1:
        raise UsageError(
            f"env.payoffs has shape {shape}: every player must have the same number of actions "
            f"(got {', '.join(str(a) for a in shape[1:])})"
        )
    if shape[1] < 2:
        raise UsageError(f"env.payoffs has shape {shape}: each player needs at least 2 actions")
    if not bool(torch.isfinite(table).all()):
        raise UsageError("env.payoffs must be finite numbers")
    return table


class MatrixGameEnv(EnvBase):
    """A repeated n-player matrix game played in `num_envs` parallel worlds.

    Args:
        payoffs: payoff table, nested lists or a tensor of shape (n_players, A, ..., A).
        num_envs: parallel worlds (the env's batch size).
        max_steps: plays per episode; 1 is the one-shot game.
        categorical_actions: integer actions (`Categorical`) if True, else one-hot (`OneHot`).
        device: where the game is played.
        group_per_player: one group per player (`player_i`, of size 1) if True, else one group
            "agents" holding all players.

    The game is deterministic, so there is no generator to seed.
    """

    def __init__(
        self,
        payoffs,
        num_envs: int = 1,
        max_steps: int = 1,
        categorical_actions: bool = True,
        device: torch.device | str = "cpu",
        group_per_player: bool = False,
    ):
        if max_steps <= 0:
            raise UsageError(f"env.max_steps must be positive, got {max_steps}")
        super().__init__(device=device, batch_size=torch.Size([num_envs]))
        self.payoffs = payoff_tensor(payoffs, self.device)  # [n, A, ..., A]
        self.n_agents = self.payoffs.shape[0]
        self.n_actions = self.payoffs.shape[1]
        self.max_steps = max_steps
        self.categorical_actions = categorical_actions
        self.group_per_player = group_per_player
        players = [f"player_{i}" for i in range(self.n_agents)]
        self.group_map = {p: [p] for p in players} if group_per_player else {"agents": players}
        # group -> (first, last + 1) player index: its rows of the [B, n, ...] per-player tensors.
        if group_per_player:
            self._rows = {p: (i, i + 1) for i, p in enumerate(players)}
        else:
            self._rows = {"agents": (0, self.n_agents)}
        n, a, b = self.n_agents, self.n_actions, num_envs
        # Flattened joint-action index: a_0 * A^(n-1) + ... + a_{n-1}.
        self._flat = self.payoffs.reshape(n, -1)  # [n, A^n]
        self._place = a ** torch.arange(n - 1, -1, -1, device=self.device)  # [n]
        self._agent_id = torch.eye(n, device=self.device).expand(b, n, n)  # [B, n, n]
        self.obs_dim = n * a + n + 1
        self._t = torch.zeros(b, dtype=torch.long, device=self.device)  # [B]
        self._prev = torch.zeros(b, n * a, device=self.device)  # [B, n*A], previous joint action one-hots

        specs = {}
        for group, (first, last) in self._rows.items():
            k = last - first  # players in the group
            observation = Bounded(0.0, 1.0, shape=(b, k, self.obs_dim), dtype=torch.float32, device=self.device)
            if categorical_actions:
                action = Categorical(a, shape=(b, k), dtype=torch.int64, device=self.device)
            else:
                action = OneHot(a, shape=(b, k, a), dtype=torch.bool, device=self.device)
            specs[group] = (observation, action)
        set_group_specs(self, specs)

    def _observation(self) -> torch.Tensor:
        b, n = self.batch_size[0], self.n_agents
        joint = self._prev.unsqueeze(1).expand(b, n, self._prev.shape[-1])  # [B, n, n*A]
        time = (self._t.float() / self.max_steps).view(b, 1, 1).expand(b, n, 1)  # [B, n, 1]
        return torch.cat([joint, self._agent_id, time], dim=-1)  # [B, n, obs_dim]

    def _out(self, done: torch.Tensor, reward: torch.Tensor | None = None) -> TensorDictBase:
        """Per-player tensors (observation [B, n, obs], reward [B, n, 1]) split into the groups;
        the game really ends after max_steps plays (terminated)."""
        observation, groups = self._observation(), {}
        for group, (first, last) in self._rows.items():
            groups[group] = {"observation": observation[:, first:last]}
            if reward is not None:
                groups[group]["reward"] = reward[:, first:last]
        return group_output(self, groups, done, ends_by="terminated")

    def _reset(self, tensordict: TensorDictBase | None, **kwargs) -> TensorDictBase:
        b = self.batch_size[0]
        mask = reset_mask(self, tensordict)  # [B]
        self._t = torch.where(mask, torch.zeros_like(self._t), self._t)
        self._prev = torch.where(mask.unsqueeze(-1), torch.zeros_like(self._prev), self._prev)
        return self._out(torch.zeros(b, 1, dtype=torch.bool, device=self.device))

    def joint_actions(self, action: torch.Tensor) -> torch.Tensor:
        """Integer joint actions [B, n] from the action key's value (integers or one-hot)."""
        return action.long() if self.categorical_actions else action.long().argmax(-1)

    def rewards(self, joint: torch.Tensor) -> torch.Tensor:
        """Each player's payoff [B, n, 1] for integer joint actions `joint` [B, n]."""
        index = (joint * self._place).sum(-1)  # [B]
        return self._flat[:, index].T.unsqueeze(-1)  # [B, n, 1]

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        b = self.batch_size[0]
        action = torch.cat([tensordict.get((group, "action")) for group in self._rows], dim=1)  # [B, n] or [B, n, A]
        joint = self.joint_actions(action)  # [B, n]
        reward = self.rewards(joint)  # [B, n, 1]
        self._prev = torch.nn.functional.one_hot(joint, self.n_actions).float().reshape(b, -1)  # [B, n*A]
        self._t = self._t + 1
        return self._out((self._t >= self.max_steps).unsqueeze(-1), reward)  # done [B, 1]

    def _set_seed(self, seed: int | None) -> None:
        """Nothing to seed: payoffs and transitions are deterministic."""


def make(cfg: DictConfig, seed: int) -> EnvBase:
    """The game in `cfg` (payoffs from its YAML or `env.payoffs`), with a per-agent return counter.

    `env.group_per_player` (default false when absent) gives one group per player.

    Raises:
        UsageError: continuous actions asked for, no or malformed payoffs, unknown kwargs.
    """
    kwargs = family_kwargs(cfg, tasks(), _KWARGS)
    if "payoffs" not in kwargs:
        raise UsageError(f"matrix/{cfg.task} needs its payoff table: env.payoffs=[[...]] of shape (n_players, A, ..., A)")
    if cfg.continuous_actions:
        raise UsageError("matrix games have discrete actions; set env.continuous_actions=false")
    group_per_player = kwargs.get("group_per_player", False)
    if not isinstance(group_per_player, bool):
        raise UsageError(f"env.group_per_player must be true or false, got {group_per_player!r}")
    env = MatrixGameEnv(
        kwargs["payoffs"],
        num_envs=cfg.num_envs,
        max_steps=cfg.max_steps,
        categorical_actions=bool(kwargs.get("categorical_actions", True)),
        device=cfg.device,
        group_per_player=group_per_player,
    )
    env.set_seed(seed)
    return with_return_counters(env)
