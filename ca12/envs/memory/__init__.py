"""A cue-recall task that a memoryless policy cannot solve, in plain batched torch.

`CueMemoryEnv` exists to test recurrent policies (and the plumbing that carries their hidden
state through collection and training): its optimal return needs memory of an observation the
agent no longer sees, so a feed-forward policy is capped at chance while a recurrent one can
reach the maximum. The episode is short and the reward sparse but exact, so a learning test can
tell the two apart quickly.

Task `memory/cue`, per world (all worlds step together on `device`):
    * At reset every agent draws its own cue, one of `n_cues`, uniformly from the env's own
      `torch.Generator` (per-agent cues: each agent must remember its own, a shared team cue
      would let agents copy each other).
    * Step t = 0 (the reset observation) shows each agent its cue; later steps show no cue.
    * The action at the last step (t = max_steps - 1) is the answer: reward 1 for the agent whose
      action equals its own cue, 0 otherwise. Every other step gives reward 0.
    * The episode really ends after `max_steps` steps: `done` and `terminated` are set then,
      `truncated` never.

So the episode return per agent is the success indicator. At the last step the observation is
the same whatever the cue, so a memoryless policy scores 1/n_cues at best; a policy that
remembers the first observation scores 1.

Observation per agent, `("agents", "observation")` [B, n, n_cues + 1]:
    `[one-hot of the agent's cue (zeros after t = 0) | t / max_steps]`.
Action per agent, `("agents", "action")` [B, n] int64 in [0, n_cues) (`Categorical`).
Reward per agent, `("agents", "reward")` [B, n, 1].

Seeding: like `ca12.envs.generic`, each env keeps its own generator (seeded by the constructor's
`seed` and by `set_seed`), registered under `memory/<device>/<seed>` so checkpoints capture it.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from tensordict import TensorDictBase
from torchrl.data import Bounded, Categorical
from torchrl.envs import EnvBase

from ca12.envs.catalog import MEMORY_TASKS as TASKS  # the catalog lists tasks (start-up)
from ca12.envs.common import SeededTorchEnv, check_integers, group_output, make_discrete, reset_mask, set_group_specs

# Task kwargs this family takes (everything else in the env section is refused).
_KWARGS = ("n_agents", "n_cues")


class CueMemoryEnv(SeededTorchEnv):
    """Remember the cue shown at the first step and name it at the last one.

    Args:
        num_envs: parallel worlds (the env's batch size).
        n_agents: agents per world (one group, "agents").
        n_cues: number of distinct cues, also the number of actions.
        max_steps: steps per episode; at least 2, so the cue is gone when the answer is due.
        device: where the worlds live.
        seed: seed of the env's own generator.

    Raises:
        UsageError: a size out of range.
    """

    def __init__(
        self,
        num_envs: int = 1,
        n_agents: int = 2,
        n_cues: int = 3,
        max_steps: int = 4,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ):
        check_integers(
            ("num_envs", num_envs, 1),
            ("n_agents", n_agents, 1),
            ("n_cues", n_cues, 2, " (one cue is nothing to remember)"),
            ("max_steps", max_steps, 2, " (the cue must be gone when the answer is due)"),
        )
        super().__init__("memory", num_envs, device, seed)
        self.n_agents, self.n_cues, self.max_steps = n_agents, n_cues, max_steps
        self.obs_dim = n_cues + 1
        self.group_map = {"agents": [f"agent_{i}" for i in range(n_agents)]}

        b, n = num_envs, n_agents
        self._cue = torch.zeros(b, n, dtype=torch.long, device=self.device)  # [B, n]
        self._t = torch.zeros(b, dtype=torch.long, device=self.device)  # [B]

        observation = Bounded(0.0, 1.0, shape=(b, n, self.obs_dim), dtype=torch.float32, device=self.device)
        action = Categorical(n_cues, shape=(b, n), dtype=torch.int64, device=self.device)
        set_group_specs(self, {"agents": (observation, action)})

    @property
    def cue(self) -> torch.Tensor:
        """Each agent's current cue [B, n] (int64), for tests and diagnostics."""
        return self._cue.clone()

    def _observation(self) -> torch.Tensor:
        b, n = self._cue.shape
        shown = (self._t == 0).view(b, 1, 1)  # [B, 1, 1]
        cue = torch.nn.functional.one_hot(self._cue, self.n_cues).float() * shown  # [B, n, n_cues]
        time = (self._t.float() / self.max_steps).view(b, 1, 1).expand(b, n, 1)  # [B, n, 1]
        return torch.cat([cue, time], dim=-1)  # [B, n, n_cues + 1]

    def _out(self, done: torch.Tensor, reward: torch.Tensor | None = None) -> TensorDictBase:
        """The task ends the episode after the answer: terminated, never truncated."""
        agents = {"observation": self._observation()} | ({} if reward is None else {"reward": reward})
        return group_output(self, {"agents": agents}, done, ends_by="terminated")

    def _reset(self, tensordict: TensorDictBase | None, **kwargs) -> TensorDictBase:
        b, n = self._cue.shape
        mask = reset_mask(self, tensordict)  # [B]
        # Draw for every world whatever the mask, so the stream does not depend on which reset.
        cue = torch.randint(self.n_cues, (b, n), generator=self._rng, device=self.device)  # [B, n]
        self._cue = torch.where(mask.view(b, 1), cue, self._cue)
        self._t = torch.where(mask, torch.zeros_like(self._t), self._t)
        return self._out(torch.zeros(b, 1, dtype=torch.bool, device=self.device))

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        b, n = self._cue.shape
        action = tensordict.get(("agents", "action")).long()  # [B, n]
        answer = (self._t == self.max_steps - 1).view(b, 1)  # [B, 1]: this step's action is scored
        reward = ((action == self._cue) & answer).float().unsqueeze(-1)  # [B, n, 1]
        self._t = self._t + 1
        return self._out((self._t >= self.max_steps).unsqueeze(-1), reward)


def make(cfg: DictConfig, seed: int) -> EnvBase:
    """`CueMemoryEnv` as the config says, seeded, with a per-agent return counter.

    Raises:
        UsageError: unknown task or kwarg, continuous actions asked for, or a bad size.
    """
    return make_discrete(cfg, seed, CueMemoryEnv, TASKS, _KWARGS, "name the cue")
