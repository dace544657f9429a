"""`generic/pixels`: agents on a small grid who see only an egocentric image, for image
observations and `model=cnn`.

Per world (all worlds step together on `device`): a `size` x `size` grid, `n_agents` agents and
one goal cell, drawn uniformly at reset from the env's own generator. Each agent moves one cell
a step (0 stay, 1 up, 2 down, 3 left, 4 right; the grid's edge stops it). Its observation,
`("agents", "observation")` [B, n, 3, w, w] with w = 2 `view` + 1, is the window of the grid
centred on it: channel 0 the goal, channel 1 the other agents, channel 2 the cells outside the
grid; nothing else (no coordinates). The team reward, the same for every agent, is minus the
agents' mean Manhattan distance to the goal over 2 (size - 1), so in [-1, 0] a step. Episodes
are cut by the time limit (`truncated`). With `view >= size - 1` the goal is always in sight.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from tensordict import TensorDictBase
from torchrl.data import Categorical, Unbounded
from torchrl.envs import EnvBase

from ca12.envs.common import SeededTorchEnv, check_integers, family_kwargs, group_output, place, reset_mask, set_group_specs, with_return_counters

_KWARGS = ("n_agents", "size", "view")
MOVES = torch.tensor([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]])  # (row, column) per action


class GridPixels(SeededTorchEnv):
    """Batched goal-finding from egocentric images (see the module docstring)."""

    def __init__(self, num_envs=1, n_agents=2, size=5, view=4, max_steps=20, device="cpu", seed=0):
        check_integers(("num_envs", num_envs, 1), ("n_agents", n_agents, 1), ("size", size, 2), ("view", view, 1), ("max_steps", max_steps, 1))
        super().__init__("generic", num_envs, device, seed)
        self.n_agents, self.size, self.view, self.max_steps = n_agents, size, view, max_steps
        self.group_map = {"agents": [f"agent_{i}" for i in range(n_agents)]}
        b, w = num_envs, 2 * view + 1
        self._pos = torch.zeros(b, n_agents, 2, dtype=torch.long, device=self.device)
        self._goal = torch.zeros(b, 2, dtype=torch.long, device=self.device)
        self._t = torch.zeros(b, dtype=torch.long, device=self.device)
        self._moves = MOVES.to(self.device)
        offsets = torch.arange(-view, view + 1, device=self.device)
        self._window = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), -1)  # [w, w, 2]
        image = Unbounded(shape=(b, n_agents, 3, w, w), device=self.device)
        set_group_specs(self, {"agents": (image, Categorical(5, shape=(b, n_agents), dtype=torch.int64, device=self.device))})

    def _cells(self, n: int) -> torch.Tensor:
        return torch.randint(0, self.size, (self._pos.shape[0], n, 2), generator=self._rng, device=self.device)

    def _observation(self) -> torch.Tensor:
        cells = self._pos[:, :, None, None, :] + self._window  # [B, n, w, w, 2]: the grid cell under each pixel
        goal = (cells == self._goal[:, None, None, None, :]).all(-1)  # [B, n, w, w]
        at = (cells[:, :, :, :, None, :] == self._pos[:, None, None, None, :, :]).all(-1)  # [B, n, w, w, n]
        others = (at & ~torch.eye(self.n_agents, dtype=torch.bool, device=self.device)[None, :, None, None, :]).any(-1)
        outside = ((cells < 0) | (cells >= self.size)).any(-1)
        return torch.stack([goal, others, outside], 2).float()  # [B, n, 3, w, w]

    def _out(self, done: torch.Tensor, reward: torch.Tensor | None = None) -> TensorDictBase:
        agents = {"observation": self._observation()} | ({} if reward is None else {"reward": reward})
        return group_output(self, {"agents": agents}, done, ends_by="truncated")

    def _reset(self, tensordict: TensorDictBase | None, **kwargs) -> TensorDictBase:
        b = self._pos.shape[0]
        mask = reset_mask(self, tensordict)
        place(self, mask, self._cells(self.n_agents), self._cells(1)[:, 0])  # drawn for every world: one stream
        return self._out(torch.zeros(b, 1, dtype=torch.bool, device=self.device))

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        b, n, _ = self._pos.shape
        move = self._moves[tensordict.get(("agents", "action")).long()]  # [B, n, 2]
        self._pos = (self._pos + move).clamp(0, self.size - 1)
        self._t = self._t + 1
        distance = (self._pos - self._goal.unsqueeze(1)).abs().sum(-1).float()  # [B, n]
        team = -distance.mean(-1) / (2 * (self.size - 1))  # [B]
        reward = team.view(b, 1, 1).expand(b, n, 1).clone()
        return self._out((self._t >= self.max_steps).unsqueeze(-1), reward)


def make(cfg: DictConfig, seed: int) -> EnvBase:
    """`GridPixels` as the config says (discrete actions only), seeded, with return counters."""
    kwargs = family_kwargs(cfg, ("pixels",), _KWARGS)
    env = GridPixels(num_envs=cfg.num_envs, max_steps=cfg.max_steps, device=cfg.device, seed=seed, **kwargs)
    return with_return_counters(env)
