"""Agents that leave mid-episode (#35 item 4): the env marks which agents act, `(group, "mask")`,
and the PPO family leaves the other steps out of every loss term and of the advantage's
standardisation; the agent's own terminal flag ends its trajectory (no bootstrap past it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv
from tensordict import TensorDict

from ca12.algos import algo_class
from ca12.envs import make_env
from ca12.run.config import load_config
from ca12.untrusted import name_env_factory

LEAVES_AT = 3  # walker_1's last step (0-based): it terminates there and is gone from then on


class Leaving(ParallelEnv):
    """Two walkers with random observations and rewards; walker_1 leaves after step LEAVES_AT."""

    metadata = {"name": "leaving_v0"}
    possible_agents = ["walker_0", "walker_1"]

    def observation_space(self, agent):
        return spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)

    def action_space(self, agent):
        return spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        self.rng, self.t = np.random.default_rng(seed), 0
        self.agents = list(self.possible_agents)
        return self._observe(), {agent: {} for agent in self.agents}

    def _observe(self):
        return {agent: self.rng.uniform(-1, 1, 3).astype(np.float32) for agent in self.agents}

    def step(self, actions):
        rewards = {agent: float(self.rng.uniform(-1, 1)) for agent in self.agents}
        terminated = {agent: agent == "walker_1" and self.t == LEAVES_AT for agent in self.agents}
        truncated = {agent: False for agent in self.agents}
        observations = self._observe()
        self.t += 1
        if self.t > LEAVES_AT:
            self.agents = ["walker_0"]
        return observations, rewards, terminated, truncated, {agent: {} for agent in rewards}


@pytest.fixture(scope="module")
def batch_and_module():
    """One collected batch [2 worlds, 8 steps] of MAPPO on `Leaving`, advantages computed."""
    path = name_env_factory(Leaving)
    cfg = load_config("mappo", path, ["env.num_envs=2", "env.max_steps=8", "logger=none"])
    env = make_env(cfg.env, seed=0)
    module = algo_class("mappo")(cfg, env)
    with torch.no_grad():
        batch = env.rollout(8, policy=module.policy, break_when_any_done=False)
    module.compute_advantage(batch)
    return batch, module


def test_the_env_marks_the_agent_that_left(batch_and_module):
    batch, module = batch_and_module
    assert module.layout.groups["walker"].masked and module.masked == ["walker"]
    mask = batch["walker", "mask"]  # [2, 8, 2]
    assert mask[:, :, 0].all()
    assert mask[:, : LEAVES_AT + 1, 1].all() and not mask[:, LEAVES_AT + 1 :, 1].any()


def test_its_last_step_does_not_bootstrap(batch_and_module):
    batch, _ = batch_and_module
    target = batch["walker", "value_target"][:, LEAVES_AT, 1]
    assert torch.allclose(target, batch["next", "walker", "reward"][:, LEAVES_AT, 1])  # r + 0: terminated there
    live = batch["walker", "value_target"][:, LEAVES_AT, 0]
    assert not torch.allclose(live, batch["next", "walker", "reward"][:, LEAVES_AT, 0])  # the other one bootstraps


def _total(module, minibatch: TensorDict) -> torch.Tensor:
    torch.manual_seed(0)
    return module.loss(minibatch.clone())[0]


@pytest.mark.parametrize(
    "agent, steps, changes", [(1, slice(LEAVES_AT + 1, None), False), (1, slice(0, LEAVES_AT + 1), True), (0, slice(LEAVES_AT + 1, None), True)]
)
def test_its_steps_after_leaving_carry_no_gradient(batch_and_module, agent, steps, changes):
    """Whatever a left agent's later steps hold (advantage, old log-probability, value target,
    action), the loss is the same to the bit; the same change on a step that was acted changes it."""
    batch, module = batch_and_module
    before = _total(module, batch.reshape(-1))
    changed = batch.clone()
    generator = torch.Generator().manual_seed(1)
    for key in ("advantage", "action_log_prob", "value_target"):
        entry = changed["walker", key]
        entry[:, steps, agent] = torch.randn(entry[:, steps, agent].shape, generator=generator) * 5
    changed["walker", "action"][:, steps, agent] = 1 - changed["walker", "action"][:, steps, agent]
    after = _total(module, changed.reshape(-1))
    assert (after != before) == changes
