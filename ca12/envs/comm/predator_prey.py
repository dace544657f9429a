"""Predator-prey with limited vision (IC3Net's, cooperative mode), vectorised in plain torch: a task
where what one agent sees the others need, at any number of agents.

Predators search a grid for a prey none of them can see from afar; the first to find it can only
help the others by telling them where it is. The task is IC3Net's (Singh et al. 2019, "Learning
when to communicate at scale", section 4.1, `ic3net-envs/ic3net_envs/predator_prey_env.py` of
github.com/IC3Net/IC3Net), used there at 3, 5 and 10 predators; no library offers it batched in
torch, so it is written here by hand:

    * Grid `dim` x `dim`, `n_agents` predators and one prey, all placed uniformly at random at
      reset (cells may be shared); the prey stays where it is (IC3Net's default).
    * A step: each predator moves one cell up, right, down or left, or stays (actions 0-4); a
      move into the wall leaves it in place. A predator on the prey's cell has caught it and stays
      there for the rest of the episode (its actions are ignored), as in IC3Net.
    * Reward per predator and step (IC3Net's cooperative mode): -0.05 while it is not on the
      prey, +0.05 times the number of predators on the prey once it is: the team gains by all
      of them gathering there.
    * The episode lasts `max_steps` steps and is cut there (truncated: the observation has no
      clock, so values bootstrap at the cut). It is a success when every predator is on the prey
      at its last step (IC3Net's `stat['success']`).

Observation per predator, `("agents", "observation")` [B, n, 3 + 3 (2v+1)^2]:
    `[row, col (its cell / (dim - 1)) | caught (on the prey) | per cell of the (2v+1)^2 square
      around it: inside the grid, the prey there, predators there / n]`.
With `vision=0` a predator sees its own cell only (IC3Net's hardest setting). A predator never
sees the prey beyond its square, so without messages each one searches alone; with them, the
first to find the prey can lead the rest. Differences from IC3Net's code, chosen: positions are
two scaled coordinates rather than a one-hot cell, and predators-per-cell is a fraction of the
team so the observation's scale does not change with `n_agents`.

Action per predator, `("agents", "action")` [B, n] int64 in 0..4.
Reward per predator, `("agents", "reward")` [B, n, 1].
`("stats", "success")` [B, 1]: 1 while every predator is on the prey (at an episode's last step,
its success); `("stats", "caught")` [B, 1]: the fraction of predators on the prey.

Seeding: the env keeps its own generator (constructor `seed`, `set_seed`), registered under
`comm/predator_prey/<device>/<seed>` so checkpoints capture it.
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torchrl.data import Bounded, Categorical, Composite

from ca12.envs.common import SeededTorchEnv, check_integers, group_output, reset_mask, set_group_specs

TIME_PENALTY, ON_PREY_REWARD = -0.05, 0.05
# up, right, down, left, stay (row, column steps)
MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1), (0, 0))


class PredatorPreyEnv(SeededTorchEnv):
    """`n_agents` predators search a `dim` x `dim` grid for a prey they see only within `vision`
    cells (module docstring).

    Args:
        num_envs: parallel worlds (the env's batch size).
        n_agents: predators.
        dim: grid side.
        vision: a predator sees the (2 vision + 1)^2 square around it.
        max_steps: steps per episode.
        device: where the worlds live.
        seed: seed of the env's generator.

    Raises:
        UsageError: a size out of range.
    """

    def __init__(
        self,
        num_envs: int = 1,
        n_agents: int = 5,
        dim: int = 10,
        vision: int = 1,
        max_steps: int = 40,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ):
        check_integers(("num_envs", num_envs, 1), ("n_agents", n_agents, 1), ("dim", dim, 2), ("vision", vision, 0), ("max_steps", max_steps, 1))
        super().__init__("comm/predator_prey", num_envs, device, seed)
        self.n_agents, self.dim, self.vision, self.max_steps = n_agents, dim, vision, max_steps
        self.group_map = {"agents": [f"predator_{i}" for i in range(n_agents)]}
        span = torch.arange(-vision, vision + 1, device=self.device)
        self._window = torch.stack(torch.meshgrid(span, span, indexing="ij"), -1).reshape(-1, 2)  # [K, 2] offsets
        self._moves = torch.tensor(MOVES, device=self.device)  # [5, 2]

        b, n = num_envs, n_agents
        self._predators = torch.zeros(b, n, 2, dtype=torch.long, device=self.device)
        self._prey = torch.zeros(b, 2, dtype=torch.long, device=self.device)
        self._t = torch.zeros(b, dtype=torch.long, device=self.device)
        self.obs_dim = 3 + 3 * self._window.shape[0]
        observation = Bounded(0.0, 1.0, shape=(b, n, self.obs_dim), dtype=torch.float32, device=self.device)
        action = Categorical(len(MOVES), shape=(b, n), dtype=torch.int64, device=self.device)
        set_group_specs(self, {"agents": (observation, action)})
        self.full_observation_spec["stats"] = Composite(
            success=Bounded(0.0, 1.0, shape=(b, 1), device=self.device), caught=Bounded(0.0, 1.0, shape=(b, 1), device=self.device), shape=(b,)
        )

    # --- state, for tests and diagnostics ---------------------------------------------------------
    @property
    def predators(self) -> torch.Tensor:
        """Every predator's cell [B, n, 2] (row, col)."""
        return self._predators.clone()

    @property
    def prey(self) -> torch.Tensor:
        """The prey's cell [B, 2] (row, col)."""
        return self._prey.clone()

    def place(self, world: int, predators: list[tuple[int, int]], prey: tuple[int, int]) -> None:
        """Put the predators and the prey of `world` on the given cells (hand-built scenes in tests)."""
        self._predators[world] = torch.tensor(predators, device=self.device)
        self._prey[world] = torch.tensor(prey, device=self.device)

    # --- dynamics -----------------------------------------------------------------------------------
    def _on_prey(self) -> torch.Tensor:
        """Which predators stand on the prey [B, n] (bool)."""
        return (self._predators == self._prey.unsqueeze(1)).all(-1)

    def _observation(self) -> torch.Tensor:
        b, n, d = self._predators.shape[0], self.n_agents, self.dim
        seen = self._predators.unsqueeze(2) + self._window  # [B, n, K, 2]
        inside = ((seen >= 0) & (seen < d)).all(-1)  # [B, n, K]
        prey = (seen == self._prey.view(b, 1, 1, 2)).all(-1)  # [B, n, K]
        cell = (seen[..., 0] * d + seen[..., 1]).clamp(0, d * d - 1).view(b, -1)  # [B, n K]
        counts = torch.zeros(b, d * d, device=self.device).scatter_add(
            1, self._predators[..., 0] * d + self._predators[..., 1], torch.ones(b, n, device=self.device)
        )
        others = counts.gather(1, cell).view(b, n, -1) * inside / n  # [B, n, K]
        square = torch.stack([inside.float(), prey.float(), others], -1).flatten(2)  # [B, n, 3K]
        scalars = torch.cat([self._predators.float() / max(d - 1, 1), self._on_prey().float().unsqueeze(-1)], -1)  # [B, n, 3]
        return torch.cat([scalars, square], -1)

    def _out(self, done: torch.Tensor, reward: torch.Tensor | None = None) -> TensorDictBase:
        agents = {"observation": self._observation()} | ({} if reward is None else {"reward": reward})
        out = group_output(self, {"agents": agents}, done, ends_by="truncated")
        caught = self._on_prey().float()
        out.set(("stats", "success"), caught.min(1, keepdim=True).values)
        out.set(("stats", "caught"), caught.mean(1, keepdim=True))
        return out

    def _reset(self, tensordict: TensorDictBase | None, **kwargs) -> TensorDictBase:
        mask = reset_mask(self, tensordict)  # [B]
        b, n = mask.shape[0], self.n_agents
        # Draw for every world whatever the mask, so the stream does not depend on which reset.
        predators = torch.randint(self.dim, (b, n, 2), generator=self._rng, device=self.device)
        prey = torch.randint(self.dim, (b, 2), generator=self._rng, device=self.device)
        self._predators = torch.where(mask.view(b, 1, 1), predators, self._predators)
        self._prey = torch.where(mask.view(b, 1), prey, self._prey)
        self._t = torch.where(mask, 0, self._t)
        return self._out(torch.zeros(b, 1, dtype=torch.bool, device=self.device))

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get(("agents", "action")).long()  # [B, n]
        moved = (self._predators + self._moves[action]).clamp(0, self.dim - 1)
        self._predators = torch.where(self._on_prey().unsqueeze(-1), self._predators, moved)  # a catcher stays
        on_prey = self._on_prey()
        reward = torch.where(on_prey, ON_PREY_REWARD * on_prey.sum(1, keepdim=True), TIME_PENALTY)  # [B, n]
        self._t = self._t + 1
        return self._out((self._t >= self.max_steps).unsqueeze(-1), reward.unsqueeze(-1).float())
