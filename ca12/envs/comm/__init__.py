"""A referential game that cannot be solved without communication, in plain batched torch.

`ReferentialEnv` exists to test talking policies (`model=commnet|tarmac|dial|graph`): the reward
needs information that only one agent sees and only the other can act on, so a team that does
not communicate is capped at chance while a talking one can reach the maximum. Episodes are
short and the reward exact, so a learning test tells the two apart quickly.

Task `comm/referential` (Lewis signalling game), per world (all worlds step together on `device`):
    * One group "agents" of 2: agent_0 is the speaker, agent_1 the listener.
    * Every step draws a target, one of `n_targets`, uniformly from the env's own generator. The
      speaker sees it; the listener sees nothing about it.
    * Both act (one of `n_targets`); the listener's action is its guess. Reward 1 to both agents
      when the guess is the target, 0 otherwise (the speaker's action does not matter: it can
      only inform the listener by a message).
    * The episode ends (terminated) after `max_steps` steps; default 1 step.

So an episode's return per agent, divided by `max_steps`, is the success rate. The listener's
observation never depends on the target, so a team without communication scores 1/n_targets
(any listener policy, memoryless or not); with messages it can score 1.

Observation per agent, `("agents", "observation")` [B, 2, n_targets + 2]:
    `[one-hot target (speaker; zeros for the listener) | one-hot role (speaker, listener)]`.
Action per agent, `("agents", "action")` [B, 2] int64 in [0, n_targets) (`Categorical`).
Reward per agent, `("agents", "reward")` [B, 2, 1].

Seeding: like `ca12.envs.memory`, each env keeps its own generator (seeded by the constructor's
`seed` and by `set_seed`), registered under `comm/<device>/<seed>` so checkpoints capture it.

The family's other tasks: `comm/traffic_junction` (CommNet's, IC3Net's and TarMAC's traffic
junction), `TrafficJunctionEnv` in ca12/envs/comm/traffic_junction.py, and `comm/predator_prey`
(IC3Net's predator-prey: limited vision, any number of predators), `PredatorPreyEnv` in
ca12/envs/comm/predator_prey.py; `make` picks by task.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from tensordict import TensorDictBase
from torchrl.data import Bounded, Categorical
from torchrl.envs import EnvBase

from ca12.envs.catalog import COMM_TASKS as TASKS  # the catalog lists tasks and documents their kwargs (start-up)
from ca12.envs.comm.predator_prey import PredatorPreyEnv
from ca12.envs.comm.traffic_junction import TrafficJunctionEnv
from ca12.envs.common import SeededTorchEnv, check_integers, group_output, make_discrete, reset_mask, set_group_specs

# Task kwargs each task takes (everything else in the env section is refused).
_KWARGS = {
    "referential": ("n_targets",),
    "traffic_junction": ("difficulty", "dim", "n_max", "arrival_prob", "vision"),
    "predator_prey": ("n_agents", "dim", "vision"),
}
SPEAKER, LISTENER = 0, 1


class ReferentialEnv(SeededTorchEnv):
    """The speaker sees the target, the listener must name it.

    Args:
        num_envs: parallel worlds (the env's batch size).
        n_targets: number of possible targets, also the number of actions.
        max_steps: steps (rounds of the game, each with a new target) per episode.
        device: where the worlds live.
        seed: seed of the env's own generator.

    Raises:
        UsageError: a size out of range.
    """

    def __init__(self, num_envs: int = 1, n_targets: int = 5, max_steps: int = 1, device: torch.device | str = "cpu", seed: int = 0):
        check_integers(("num_envs", num_envs, 1), ("n_targets", n_targets, 2, " (one target is nothing to tell)"), ("max_steps", max_steps, 1))
        super().__init__("comm", num_envs, device, seed)
        self.n_agents, self.n_targets, self.max_steps = 2, n_targets, max_steps
        self.obs_dim = n_targets + 2
        self.group_map = {"agents": ["speaker", "listener"]}

        b = num_envs
        self._target = torch.zeros(b, dtype=torch.long, device=self.device)  # [B]
        self._t = torch.zeros(b, dtype=torch.long, device=self.device)  # [B]
        observation = Bounded(0.0, 1.0, shape=(b, 2, self.obs_dim), dtype=torch.float32, device=self.device)
        action = Categorical(n_targets, shape=(b, 2), dtype=torch.int64, device=self.device)
        set_group_specs(self, {"agents": (observation, action)})

    @property
    def target(self) -> torch.Tensor:
        """The current target of every world [B] (int64), for tests and diagnostics."""
        return self._target.clone()

    def _observation(self) -> torch.Tensor:
        b = self._target.shape[0]
        seen = torch.nn.functional.one_hot(self._target, self.n_targets).float()  # [B, K]
        target = torch.stack([seen, torch.zeros_like(seen)], dim=1)  # [B, 2, K]: the listener sees zeros
        role = torch.eye(2, device=self.device).expand(b, 2, 2)  # [B, 2, 2]
        return torch.cat([target, role], dim=-1)  # [B, 2, K + 2]

    def _draw(self, mask: torch.Tensor) -> None:
        # Draw for every world whatever the mask, so the stream does not depend on which reset.
        target = torch.randint(self.n_targets, self._target.shape, generator=self._rng, device=self.device)
        self._target = torch.where(mask, target, self._target)

    def _out(self, done: torch.Tensor, reward: torch.Tensor | None = None) -> TensorDictBase:
        agents = {"observation": self._observation()} | ({} if reward is None else {"reward": reward})
        return group_output(self, {"agents": agents}, done, ends_by="terminated")

    def _reset(self, tensordict: TensorDictBase | None, **kwargs) -> TensorDictBase:
        mask = reset_mask(self, tensordict)  # [B]
        self._draw(mask)
        self._t = torch.where(mask, torch.zeros_like(self._t), self._t)
        return self._out(torch.zeros(self._target.shape[0], 1, dtype=torch.bool, device=self.device))

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        guess = tensordict.get(("agents", "action"))[:, LISTENER].long()  # [B]
        reward = (guess == self._target).float().view(-1, 1, 1).expand(-1, 2, 1).clone()  # [B, 2, 1]: shared
        self._t = self._t + 1
        self._draw(torch.ones_like(self._t, dtype=torch.bool))  # the next round's target
        return self._out((self._t >= self.max_steps).unsqueeze(-1), reward)


def make(cfg: DictConfig, seed: int) -> EnvBase:
    """The task's env (`ReferentialEnv`, `TrafficJunctionEnv` of ca12/envs/comm/traffic_junction.py
    or `PredatorPreyEnv` of ca12/envs/comm/predator_prey.py) as the config says, seeded, with a per-agent return counter.

    Raises:
        UsageError: unknown task or kwarg, continuous actions asked for, or a bad size.
    """
    if cfg.task == "predator_prey":
        return make_discrete(cfg, seed, PredatorPreyEnv, TASKS, _KWARGS[cfg.task], "a move on the grid")
    if cfg.task == "traffic_junction":
        return make_discrete(cfg, seed, TrafficJunctionEnv, TASKS, _KWARGS[cfg.task], "gas or brake")
    return make_discrete(cfg, seed, ReferentialEnv, TASKS, _KWARGS.get(cfg.task, ()), "name the target")
