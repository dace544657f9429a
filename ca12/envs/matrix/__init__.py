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
    * `history=K` (`env.history`, default 1) shows the last K joint actions, newest first:
      the observation is then [B, n, K*n*A + n + 1].
    * `opponent_strategies=[...]` (`env.opponent_strategies`, default null: off) makes player 1
      of a two-player game a scripted opponent played by the env (`ScriptedOpponent`): fixed
      strategies (mixed, or history-dependent: cycle, copy, counter) that switch at every episode
      start and, with `opponent_period=N`, every N plays. The env then has the one group
      `player_0` (the learner, its row of the observation above, so it sees the opponent's past
      actions). What the opponent played is written each step as `("player_0",
      "opponent_action")` [B, 1, 1] (int64 action index, whatever `categorical_actions`): under
      "next" for the play just made, 0 at reset. It is not part of the observation; an opponent
      model (ca12/nets/opponent.py) trains on it, the policy must not read it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from tensordict import TensorDictBase
from torchrl.data import Bounded, Categorical, OneHot
from torchrl.envs import EnvBase

from ca12.envs.catalog import MATRIX_GAMES as GAMES  # noqa: F401  (the named games and the tasks live in the catalog: start-up)
from ca12.envs.catalog import MATRIX_TASKS
from ca12.envs.common import check_integers, family_kwargs, group_output, register_env_rng, reset_mask, set_group_specs, with_return_counters
from ca12.envs.matrix.two_step import make as make_two_step
from ca12.errors import UsageError

# Task kwargs this family takes (everything else in the env section is refused).
_KWARGS = ("payoffs", "categorical_actions", "group_per_player", "history", "opponent_strategies", "opponent_period")
# History-dependent strategies of a scripted opponent (besides fixed mixed ones): see ScriptedOpponent.
NAMED_STRATEGIES = ("cycle", "copy", "counter")


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
        raise UsageError(f"env.payoffs has shape {shape}; expected (n_players, n_actions, ..., n_actions) with one action axis per player")
    if len(set(shape[1:])) != 1:
        raise UsageError(
            f"env.payoffs has shape {shape}: every player must have the same number of actions (got {', '.join(str(a) for a in shape[1:])})"
        )
    if shape[1] < 2:
        raise UsageError(f"env.payoffs has shape {shape}: each player needs at least 2 actions")
    if not bool(torch.isfinite(table).all()):
        raise UsageError("env.payoffs must be finite numbers")
    return table


class ScriptedOpponent:
    """Player 1 of a two-player game, played inside the env by fixed strategies that switch.

    Each world plays one of `strategies` at a time, drawn uniformly from the opponent's own
    generator at every episode start and, with `period`, again every `period` plays of an
    episode (it may draw the one it had), so a learner facing it must tell from the history which
    one it faces now. A strategy is
      * a list of A action probabilities: a fixed mixed strategy ([1, 0, 0] always plays 0);
      * "cycle": its own previous action + 1 (mod A), as rock -> paper -> scissors;
      * "copy": the learner's previous action (tit-for-tat);
      * "counter": its best response, by player 1's payoffs (the lowest action on ties), to the
        learner's previous action;
    the history-dependent ones play action 0 at an episode's first play.

    Args:
        strategies: the list above (plain values from the config).
        payoffs: the game [2, A, A].
        num_envs: worlds.
        period: plays between draws within an episode (None: at episode starts only).
        seed: seed of the opponent's generator, registered under `matrix/<device>/<seed>` so
            checkpoints capture it.

    Raises:
        UsageError: no strategies, an unknown name, a mixed strategy that is not A probabilities.
    """

    def __init__(self, strategies, payoffs: torch.Tensor, num_envs: int, period: int | None, seed: int):
        self.device, self.n_actions, self.period = payoffs.device, payoffs.shape[-1], period
        if not isinstance(strategies, (list, tuple)) or not strategies:
            raise UsageError(f"env.opponent_strategies must be a non-empty list of strategies, got {strategies!r}")
        self.strategies = [self._strategy(s) for s in strategies]
        self.best_response = payoffs[1].argmax(-1)  # [A]: player 1's best reply to each learner action
        self.current = torch.zeros(num_envs, dtype=torch.long, device=self.device)  # [B] strategy index
        self._rng = torch.Generator(device=self.device)
        self._rng.manual_seed(seed)
        register_env_rng(self, "matrix", seed)

    def _strategy(self, strategy) -> str | torch.Tensor:
        """A named strategy, or a mixed one as a probability tensor [A]."""
        if isinstance(strategy, str):
            if strategy not in NAMED_STRATEGIES:
                raise UsageError(
                    f"unknown opponent strategy '{strategy}'; use {', '.join(NAMED_STRATEGIES)} or a list of {self.n_actions} action probabilities"
                )
            return strategy
        try:
            probs = torch.as_tensor(strategy, dtype=torch.float32, device=self.device)
        except (TypeError, ValueError):
            probs = None
        if probs is None or probs.shape != (self.n_actions,) or bool((probs < 0).any()) or abs(float(probs.sum()) - 1.0) > 1e-6:
            raise UsageError(f"opponent strategy {strategy!r} must be {', '.join(NAMED_STRATEGIES)} or {self.n_actions} probabilities summing to 1")
        return probs

    def seed(self, seed: int) -> None:
        self._rng.manual_seed(seed)

    def draw(self, worlds: torch.Tensor) -> None:
        """A new strategy, uniformly, in the worlds where `worlds` [B] is True."""
        fresh = torch.randint(len(self.strategies), self.current.shape, generator=self._rng, device=self.device)
        self.current = torch.where(worlds, fresh, self.current)

    def act(self, last: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        """Player 1's actions [B] given the last joint actions `last` [B, 2] (ignored where
        `first` [B], an episode's first play)."""
        a = self.n_actions
        learner, own = last[:, 0], last[:, 1]
        replies = {"cycle": (own + 1) % a, "copy": learner, "counter": self.best_response[learner]}
        probs = torch.stack(
            [F.one_hot(torch.where(first, 0, replies[s]), a).float() if isinstance(s, str) else s.expand(len(last), a) for s in self.strategies],
            dim=1,
        )  # [B, S, A]
        chosen = probs[torch.arange(len(last), device=self.device), self.current]  # [B, A]
        return torch.multinomial(chosen, 1, generator=self._rng).squeeze(-1)


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
        history: past joint actions in the observation (newest first).
        opponent_strategies: None, or player 1's strategies (`ScriptedOpponent`): player 1 is
            then played by the env and the learner's group is `player_0`.
        opponent_period: plays between the scripted opponent's draws within an episode.
        seed: seed of the scripted opponent's generator.

    Without a scripted opponent the game is deterministic: there is no generator to seed.
    """

    def __init__(
        self,
        payoffs,
        num_envs: int = 1,
        max_steps: int = 1,
        categorical_actions: bool = True,
        device: torch.device | str = "cpu",
        group_per_player: bool = False,
        history: int = 1,
        opponent_strategies: list | None = None,
        opponent_period: int | None = None,
        seed: int = 0,
    ):
        if max_steps <= 0:
            raise UsageError(f"env.max_steps must be positive, got {max_steps}")
        check_integers(("history", history, 1))
        super().__init__(device=device, batch_size=torch.Size([num_envs]))
        self.payoffs = payoff_tensor(payoffs, self.device)  # [n, A, ..., A]
        self.n_agents = self.payoffs.shape[0]
        self.n_actions = self.payoffs.shape[1]
        self.max_steps = max_steps
        self.categorical_actions = categorical_actions
        self.group_per_player = group_per_player
        self.opponent = None
        players = [f"player_{i}" for i in range(self.n_agents)]
        self.group_map = {p: [p] for p in players} if group_per_player else {"agents": players}
        # group -> (first, last + 1) player index: its rows of the [B, n, ...] per-player tensors.
        if group_per_player:
            self._rows = {p: (i, i + 1) for i, p in enumerate(players)}
        else:
            self._rows = {"agents": (0, self.n_agents)}
        if opponent_strategies is not None:
            if self.n_agents != 2:
                raise UsageError(f"env.opponent_strategies scripts player 1 of a two-player game; this game has {self.n_agents} players")
            if opponent_period is not None:
                check_integers(("opponent_period", opponent_period, 1))
            self.opponent = ScriptedOpponent(opponent_strategies, self.payoffs, num_envs, opponent_period, seed)
            self.group_map, self._rows = {"player_0": ["player_0"]}, {"player_0": (0, 1)}
        n, a, b = self.n_agents, self.n_actions, num_envs
        # Flattened joint-action index: a_0 * A^(n-1) + ... + a_{n-1}.
        self._flat = self.payoffs.reshape(n, -1)  # [n, A^n]
        self._place = a ** torch.arange(n - 1, -1, -1, device=self.device)  # [n]
        self._agent_id = torch.eye(n, device=self.device).expand(b, n, n)  # [B, n, n]
        self.history = history
        self.obs_dim = history * n * a + n + 1
        self._t = torch.zeros(b, dtype=torch.long, device=self.device)  # [B]
        self._prev = torch.zeros(b, history, n * a, device=self.device)  # [B, K, n*A], past joint action one-hots, newest first
        self._last = torch.zeros(b, n, dtype=torch.long, device=self.device)  # [B, n], the last joint action (0 at reset)

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
        if self.opponent is not None:  # what player 1 played, beside (not in) the learner's observation
            full = self.full_observation_spec.clone()
            full["player_0", "opponent_action"] = Categorical(a, shape=(b, 1, 1), dtype=torch.int64, device=self.device)
            self.full_observation_spec = full

    def _observation(self) -> torch.Tensor:
        b, n = self.batch_size[0], self.n_agents
        joint = self._prev.flatten(1).unsqueeze(1).expand(b, n, self._prev[0].numel())  # [B, n, K*n*A]
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
        if self.opponent is not None:
            groups["player_0"]["opponent_action"] = self._last[:, 1:].unsqueeze(1)  # [B, 1, 1]
        return group_output(self, groups, done, ends_by="terminated")

    def _reset(self, tensordict: TensorDictBase | None, **kwargs) -> TensorDictBase:
        b = self.batch_size[0]
        mask = reset_mask(self, tensordict)  # [B]
        self._t = torch.where(mask, torch.zeros_like(self._t), self._t)
        self._prev = torch.where(mask.view(-1, 1, 1), torch.zeros_like(self._prev), self._prev)
        self._last = torch.where(mask.unsqueeze(-1), torch.zeros_like(self._last), self._last)
        if self.opponent is not None:
            self.opponent.draw(mask)
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
        joint = self.joint_actions(action)  # [B, n]; [B, 1] (the learner's) with a scripted opponent
        if self.opponent is not None:
            if self.opponent.period is not None:  # a switch every `period` plays within the episode
                self.opponent.draw((self._t > 0) & (self._t % self.opponent.period == 0))
            joint = torch.cat([joint, self.opponent.act(self._last, first=self._t == 0).unsqueeze(-1)], dim=-1)  # [B, 2]
        reward = self.rewards(joint)  # [B, n, 1]
        played = F.one_hot(joint, self.n_actions).float().reshape(b, 1, -1)  # [B, 1, n*A]
        self._prev = torch.cat([played, self._prev[:, :-1]], dim=1)  # [B, K, n*A], newest first
        self._last = joint
        self._t = self._t + 1
        return self._out((self._t >= self.max_steps).unsqueeze(-1), reward)  # done [B, 1]

    def _set_seed(self, seed: int | None) -> None:
        """Seeds the scripted opponent; without one the game is deterministic."""
        if self.opponent is not None and seed is not None:
            self.opponent.seed(seed)


def make(cfg: DictConfig, seed: int) -> EnvBase:
    """The game in `cfg` (payoffs from its YAML or `env.payoffs`), with a per-agent return counter.

    `env.group_per_player` (default false when absent) gives one group per player;
    `env.history` (default 1), `env.opponent_strategies` and `env.opponent_period` (default
    null) are `MatrixGameEnv`'s arguments.

    Task `two_step` is the QMIX paper's two-step game (ca12/envs/matrix/two_step.py), built there.

    Raises:
        UsageError: continuous actions asked for, no or malformed payoffs, unknown kwargs.
    """
    if cfg.task == "two_step":
        return make_two_step(cfg, seed)
    kwargs = family_kwargs(cfg, MATRIX_TASKS, _KWARGS)
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
        history=kwargs.get("history", 1),
        opponent_strategies=kwargs.get("opponent_strategies"),
        opponent_period=kwargs.get("opponent_period"),
        seed=seed,
    )
    env.set_seed(seed)
    return with_return_counters(env)
