"""The two-step game of the QMIX paper (Rashid et al. 2018, "QMIX: Monotonic Value Function
Factorisation for Deep Multi-Agent Reinforcement Learning", section 6.1 and appendix B),
vectorised in torch over `num_envs` worlds: task `matrix/two_step`.

Written by hand: no env library offers it. It is the paper's smallest example of a team value
that VDN's sum cannot represent but QMIX's monotonic, state-conditioned mixer can.

Two agents, two actions each (A = 0, B = 1), every episode exactly two steps, one team reward
(both agents get the same):
    * State 1 pays 0; agent 0's action picks the next state (A -> 2A, B -> 2B), agent 1's action
      does not matter.
    * State 2A pays 7 whatever the joint action.
    * State 2B pays the matrix [[0, 1], [1, 8]] (rows: agent 0's action): 8 when both play B.
The optimal return is 8 (B, then B, B); the safe one is 7 (A, then anything). Under uniform
exploration VDN's additive fit of 2B tops out at 6.5 (its least-squares fit of the matrix), below
2A's 7, so its greedy policy goes to 2A and earns 7; a monotonic mixer fits 2B exactly and QMIX
earns 8 (the paper's Table of learned Q_tot and its figure).

Conventions (those of ca12/envs/matrix/, the family's module):
    * One group "agents" of players `player_0`, `player_1`.
    * Observation per agent, `("agents", "observation")` [B, 2, 5]: `[one-hot of the state
      1 / 2A / 2B | the agent's one-hot index]`, as in the paper (each agent sees the full state,
      and the agent id so one shared network tells the players apart). After the second step the
      state part is all zeros: the game is over.
    * Action per agent, `("agents", "action")` [B, 2]: int64 in {0, 1} (`Categorical`), or one-hot
      [B, 2, 2] with `categorical_actions=False`.
    * Reward per agent, `("agents", "reward")` [B, 2, 1]: the team reward.
    * The game really ends after step 2: `done` and `terminated` [B, 1] are set then, `truncated`
      never; `env.max_steps` must be 2.

The game is deterministic: there is no generator to seed.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from tensordict import TensorDictBase
from torchrl.data import Bounded, Categorical, OneHot
from torchrl.envs import EnvBase

from ca12.envs.common import group_output, make_discrete, reset_mask, set_group_specs
from ca12.errors import UsageError

TASKS = ("two_step",)
# Task kwargs this task takes (everything else in the env section is refused).
_KWARGS = ("categorical_actions",)
# States: 0 = state 1, 1 = 2A, 2 = 2B, OVER = 3 (between the last step and the reset).
STATE_NAMES = ("1", "2A", "2B")
OVER = len(STATE_NAMES)
# PAYOFFS[s, a_0, a_1]: the team reward of joint action (a_0, a_1) in state s.
PAYOFFS = (((0, 0), (0, 0)), ((7, 7), (7, 7)), ((0, 1), (1, 8)), ((0, 0), (0, 0)))
# NEXT_STATE[s, a_0]: state 1 goes where agent 0 says; 2A and 2B end the game.
NEXT_STATE = ((1, 2), (3, 3), (3, 3), (3, 3))


class TwoStepGameEnv(EnvBase):
    """The QMIX paper's two-step game played in `num_envs` parallel worlds.

    Args:
        num_envs: parallel worlds (the env's batch size).
        max_steps: must be 2 (the game's length; the config key every env has).
        categorical_actions: integer actions (`Categorical`) if True, else one-hot (`OneHot`).
        device: where the game is played.
        seed: unused (the game is deterministic); taken so the family builder can pass it.

    Raises:
        UsageError: `max_steps` other than 2.
    """

    n_agents, n_actions, n_states = 2, 2, len(STATE_NAMES)

    def __init__(self, num_envs: int = 1, max_steps: int = 2, categorical_actions: bool = True, device: torch.device | str = "cpu", seed: int = 0):
        if max_steps != 2:
            raise UsageError(f"matrix/two_step lasts exactly 2 steps; env.max_steps must be 2, got {max_steps}")
        super().__init__(device=device, batch_size=torch.Size([num_envs]))
        self.max_steps, self.categorical_actions = max_steps, categorical_actions
        self.group_map = {"agents": [f"player_{i}" for i in range(self.n_agents)]}
        b, n, a = num_envs, self.n_agents, self.n_actions
        self.payoffs = torch.tensor(PAYOFFS, dtype=torch.float32, device=self.device)  # [4, A, A]
        self._next = torch.tensor(NEXT_STATE, dtype=torch.long, device=self.device)  # [4, A]
        self._agent_id = torch.eye(n, device=self.device)  # [n, n]
        self._state = torch.zeros(b, dtype=torch.long, device=self.device)  # [B]
        self.obs_dim = self.n_states + n
        observation = Bounded(0.0, 1.0, shape=(b, n, self.obs_dim), dtype=torch.float32, device=self.device)
        if categorical_actions:
            action = Categorical(a, shape=(b, n), dtype=torch.int64, device=self.device)
        else:
            action = OneHot(a, shape=(b, n, a), dtype=torch.bool, device=self.device)
        set_group_specs(self, {"agents": (observation, action)})

    def observations(self, state: torch.Tensor) -> torch.Tensor:
        """Both agents' observations [S, 2, 5] in states `state` [S] (any S: the env's worlds, or
        states to query a trained network with): the state's one-hot (zeros once over), then the
        agent's one-hot index."""
        s, n = state.shape[0], self.n_agents
        shown = torch.nn.functional.one_hot(state, OVER + 1)[:, :OVER].float()  # [S, 3]
        return torch.cat([shown.unsqueeze(1).expand(s, n, self.n_states), self._agent_id.expand(s, n, n)], dim=-1)

    def _out(self, done: torch.Tensor, reward: torch.Tensor | None = None) -> TensorDictBase:
        agents = {"observation": self.observations(self._state)} | ({} if reward is None else {"reward": reward})
        return group_output(self, {"agents": agents}, done, ends_by="terminated")

    def _reset(self, tensordict: TensorDictBase | None, **kwargs) -> TensorDictBase:
        mask = reset_mask(self, tensordict)  # [B]
        self._state = torch.where(mask, torch.zeros_like(self._state), self._state)
        return self._out(torch.zeros(self.batch_size[0], 1, dtype=torch.bool, device=self.device))

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get(("agents", "action"))
        joint = action.long() if self.categorical_actions else action.long().argmax(-1)  # [B, 2]
        team = self.payoffs[self._state, joint[:, 0], joint[:, 1]]  # [B]
        self._state = self._next[self._state, joint[:, 0]]
        reward = team.view(-1, 1, 1).repeat(1, self.n_agents, 1)  # [B, n, 1]
        return self._out((self._state == OVER).unsqueeze(-1), reward)  # done [B, 1]

    def _set_seed(self, seed: int | None) -> None:
        """Nothing to seed: the game is deterministic."""


def make(cfg: DictConfig, seed: int) -> EnvBase:
    """`TwoStepGameEnv` as the config says, with a per-agent return counter.

    Raises:
        UsageError: a kwarg other than `categorical_actions`, continuous actions, or
            `env.max_steps` other than 2.
    """
    return make_discrete(cfg, seed, TwoStepGameEnv, TASKS, _KWARGS, "A or B")
