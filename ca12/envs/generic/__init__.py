"""A generic cooperative multi-agent env in plain batched torch: agents gather at a shared goal.

`MultiAgentEnvironment` is the smallest continuous-state cooperative task with a team reward,
for any number of agents and any state dimension, and with no simulator dependency: it lets a
user (or a test) train on a cooperative problem whose size is a constructor argument.

Dynamics, per world (all worlds step together on `device`):
    * Each agent has a position in [-1, 1]^state_dim; one goal per world, shared by the team.
      Positions and goal are drawn uniformly at reset from the env's own `torch.Generator`.
    * Continuous actions (`generic/coop`): a velocity in [-1, 1]^action_dim, with
      action_dim == state_dim (velocity i moves coordinate i): pos += step_size * action.
    * Discrete actions (`generic/coop_discrete`): one of 2*state_dim + 1 unit moves:
      0 stays, 2k+1 moves +step_size along axis k, 2k+2 moves -step_size along axis k.
    * Positions are clipped to the arena [-1, 1]^state_dim.
    * Team reward (every agent gets it, [B, n, 1]): minus the mean distance of the agents to the
      goal, plus `bonus` on every step where all agents are within `goal_radius` of it.
    * Episodes last `max_steps` steps and are cut by the time limit, not ended by the task:
      `done` and `truncated` are set at max_steps, `terminated` never (so value targets
      bootstrap from the last state).

Observation per agent, `("agents", "observation")` [B, n, 3*state_dim]:
    `[own position | goal - own position | team mean position]`.

Seeding: each env keeps its own generator (seeded by the constructor's `seed` and by `set_seed`),
so building or seeding an env never touches torch's global generator. Its base,
`ca12.envs.common.SeededTorchEnv`, registers the generator under `generic/<device>/<seed>`, so a
checkpoint of a training run captures the training env's reset stream and resume restores it.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from tensordict import TensorDictBase
from torchrl.data import Bounded, Categorical, Unbounded
from torchrl.envs import EnvBase

from ca12.envs.catalog import GENERIC_TASKS as TASKS  # task -> continuous actions (the catalog lists tasks: start-up)
from ca12.envs.common import SeededTorchEnv, family_kwargs, group_output, place, reset_mask, set_group_specs, with_return_counters
from ca12.errors import UsageError

# Task kwargs this family takes (everything else in the env section is refused).
_KWARGS = ("n_agents", "state_dim", "action_dim", "step_size", "goal_radius", "bonus")


class MultiAgentEnvironment(SeededTorchEnv):
    """Batched cooperative goal-reaching for `n_agents` agents in `state_dim` dimensions.

    Args:
        num_envs: parallel worlds (the env's batch size).
        n_agents: agents per world (one group, "agents").
        state_dim: dimension of each agent's position.
        action_dim: continuous: must equal state_dim (defaults to it); discrete: must equal
            2*state_dim + 1 (defaults to it).
        continuous_actions: velocity actions in [-1, 1]^action_dim if True, else unit moves.
        max_steps: steps per episode.
        step_size: distance moved per step by a unit action.
        goal_radius: distance to the goal within which an agent counts as arrived.
        bonus: team reward added on steps where every agent has arrived.
        device: where the worlds live.
        seed: seed of the env's own generator.

    Raises:
        UsageError: a non-positive size, or an action_dim that does not fit the dynamics.
    """

    def __init__(
        self,
        num_envs: int = 1,
        n_agents: int = 2,
        state_dim: int = 2,
        action_dim: int | None = None,
        continuous_actions: bool = True,
        max_steps: int = 50,
        step_size: float = 0.1,
        goal_radius: float = 0.1,
        bonus: float = 1.0,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ):
        for key, value in (("num_envs", num_envs), ("n_agents", n_agents), ("state_dim", state_dim), ("max_steps", max_steps)):
            if value <= 0:
                raise UsageError(f"{key} must be positive, got {value}")
        expected = state_dim if continuous_actions else 2 * state_dim + 1
        if action_dim is None:
            action_dim = expected
        if action_dim != expected:
            rule = (
                f"equal state_dim ({state_dim}): each velocity component moves one coordinate"
                if continuous_actions
                else f"be 2*state_dim+1 = {expected}: stay, or a unit move along +/- each axis"
            )
            raise UsageError(f"action_dim ({action_dim}) must {rule}")
        super().__init__("generic", num_envs, device, seed)
        self.n_agents, self.state_dim, self.action_dim = n_agents, state_dim, action_dim
        self.continuous_actions = continuous_actions
        self.max_steps, self.step_size, self.goal_radius, self.bonus = max_steps, step_size, goal_radius, bonus
        self.group_map = {"agents": [f"agent_{i}" for i in range(n_agents)]}

        b, n, d = num_envs, n_agents, state_dim
        self._pos = torch.zeros(b, n, d, device=self.device)  # [B, n, d]
        self._goal = torch.zeros(b, d, device=self.device)  # [B, d]
        self._t = torch.zeros(b, dtype=torch.long, device=self.device)  # [B]
        if not continuous_actions:
            moves = torch.zeros(action_dim, d, device=self.device)  # [2d+1, d]: row 0 stays
            axes = torch.arange(d, device=self.device)
            moves[2 * axes + 1, axes] = 1.0
            moves[2 * axes + 2, axes] = -1.0
            self._moves = moves

        if continuous_actions:
            action = Bounded(-1.0, 1.0, shape=(b, n, action_dim), device=self.device)
        else:
            action = Categorical(action_dim, shape=(b, n), dtype=torch.int64, device=self.device)
        set_group_specs(self, {"agents": (Unbounded(shape=(b, n, 3 * d), device=self.device), action)})

    def _uniform(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self._rng, device=self.device) * 2 - 1

    def _observation(self) -> torch.Tensor:
        b, n, d = self._pos.shape
        to_goal = self._goal.unsqueeze(1) - self._pos  # [B, n, d]
        mean = self._pos.mean(1, keepdim=True).expand(b, n, d)  # [B, n, d]
        return torch.cat([self._pos, to_goal, mean], dim=-1)  # [B, n, 3d]

    def _out(self, done: torch.Tensor, reward: torch.Tensor | None = None) -> TensorDictBase:
        """Episodes are cut by the time limit, never ended by the task: truncated, not terminated."""
        agents = {"observation": self._observation()} | ({} if reward is None else {"reward": reward})
        return group_output(self, {"agents": agents}, done, ends_by="truncated")

    def _reset(self, tensordict: TensorDictBase | None, **kwargs) -> TensorDictBase:
        b, n, d = self._pos.shape
        mask = reset_mask(self, tensordict)  # [B]
        # Draw for every world whatever the mask, so the stream does not depend on which reset.
        place(self, mask, self._uniform(b, n, d), self._uniform(b, d))
        return self._out(torch.zeros(b, 1, dtype=torch.bool, device=self.device))

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        b, n, _ = self._pos.shape
        action = tensordict.get(("agents", "action"))
        if self.continuous_actions:
            velocity = action.clamp(-1.0, 1.0)  # [B, n, d]
        else:
            velocity = self._moves[action.long()]  # [B, n, d]
        self._pos = (self._pos + self.step_size * velocity).clamp(-1.0, 1.0)
        self._t = self._t + 1
        distance = (self._goal.unsqueeze(1) - self._pos).norm(dim=-1)  # [B, n]
        arrived = (distance <= self.goal_radius).all(-1)  # [B]
        team = -distance.mean(-1) + self.bonus * arrived.float()  # [B]
        reward = team.view(b, 1, 1).expand(b, n, 1).clone()  # [B, n, 1]
        return self._out((self._t >= self.max_steps).unsqueeze(-1), reward)


def make(cfg: DictConfig, seed: int) -> EnvBase:
    """`MultiAgentEnvironment` as the config says, seeded, with a per-agent return counter.

    Raises:
        UsageError: unknown task or kwarg, or continuous_actions disagreeing with the task.
    """
    if cfg.task == "pixels":  # egocentric images (ca12/envs/generic/pixels.py)
        from ca12.envs.generic import pixels

        return pixels.make(cfg, seed)
    kwargs = family_kwargs(cfg, TASKS, _KWARGS)
    if bool(cfg.continuous_actions) != TASKS[cfg.task]:
        other = "coop" if cfg.continuous_actions else "coop_discrete"
        raise UsageError(
            f"generic/{cfg.task} has {'continuous' if TASKS[cfg.task] else 'discrete'} actions; "
            f"use --env generic/{other} for env.continuous_actions={str(cfg.continuous_actions).lower()}"
        )
    env = MultiAgentEnvironment(
        num_envs=cfg.num_envs,
        continuous_actions=TASKS[cfg.task],
        max_steps=cfg.max_steps,
        device=cfg.device,
        seed=seed,
        **kwargs,
    )
    return with_return_counters(env)
