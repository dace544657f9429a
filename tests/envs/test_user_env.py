"""Your own environment (ca12/envs/user.py): the README's example trains, evaluates and resumes from
outside the repository; every kind of env a factory may return enters ca12's layout with its time
limit a truncation; each way an env can be wrong is one line; a saved run never chooses the code."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
from conftest import TINY
from gymnasium.vector import AutoresetMode
from torchrl.data import Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

import ca12
from ca12 import untrusted
from ca12.errors import UsageError

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> tuple[str, list[list[str]]]:
    """The section "Your own environment": its env file and its command lines."""
    section = README.read_text().split("## Your own environment\n", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S)[1]
    commands = re.search(r"```bash\n(.*?)```", section, re.S)[1]
    return code, [shlex.split(line)[3:] for line in commands.strip().splitlines()]  # after `python -m ca12.<cmd>`


@pytest.fixture
def fresh_names(monkeypatch):
    """No factory named yet in this process (as in a new command)."""
    monkeypatch.setattr(untrusted, "_NAMED_ENV_FACTORIES", {})


def test_the_readme_example_trains_evaluates_and_resumes(tmp_path, monkeypatch, capsys, fresh_names):
    from ca12.evaluate import main as evaluate
    from ca12.fit import main as fit

    code, (train, score, resume) = readme_example()
    assert len(code.splitlines()) <= 40
    (tmp_path / "my_envs.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_envs", raising=False)
    monkeypatch.chdir(tmp_path)

    def frames(argv: list[str], total: int) -> list[str]:
        return [a for a in argv if not a.startswith("collector.total_frames=")] + [f"collector.total_frames={total}"]

    assert fit([*frames(train, 200), *TINY, "algo.minibatch_size=50"]) == 0
    assert evaluate([*score, "--episodes", "2"]) == 0
    assert "2 episodes after 200 training frames" in capsys.readouterr().out
    # The saved run does not choose the code: resuming without naming the factory is refused.
    untrusted._NAMED_ENV_FACTORIES.clear()
    before = (tmp_path / "runs/meet/checkpoints/last.ckpt").read_bytes()
    assert fit([a for a in frames(resume, 300) if a not in ("--env", "my_envs:Meet")]) == 2
    assert "my_envs:Meet, code ca12 runs only when your own command names it" in capsys.readouterr().err
    assert (tmp_path / "runs/meet/checkpoints/last.ckpt").read_bytes() == before
    assert fit(frames(resume, 300)) == 0
    assert "300 frames" in capsys.readouterr().out


# --- every kind a factory may return --------------------------------------------------------------
class TwoAgents(EnvBase):
    """An unbatched TorchRL env with one group of two agents; `shared`: one root reward for the team."""

    def __init__(self, shared: bool = False, observation: str = "observation"):
        super().__init__(batch_size=())
        self.observation_spec = Composite(agents=Composite({observation: Unbounded((2, 3))}, shape=(2,)))
        self.action_spec = Composite(agents=Composite(action=Categorical(3, (2,)), shape=(2,)))
        reward = Composite(reward=Unbounded((1,))) if shared else Composite(agents=Composite(reward=Unbounded((2, 1)), shape=(2,)))
        self.reward_spec = reward
        flag = Categorical(2, (1,), dtype=torch.bool)
        self.done_spec = Composite(done=flag, terminated=flag.clone())

    def _reset(self, tensordict):
        return self.full_observation_spec.zero().update(self.full_done_spec.zero())

    def _step(self, tensordict):
        return self._reset(tensordict).update(self.full_reward_spec.zero())

    def _set_seed(self, seed):
        pass


def cartpole():
    return gymnasium.make("CartPole-v1")


def cartpole_vector(num_envs):
    return gymnasium.make_vec("CartPole-v1", num_envs, vectorization_mode="sync", vector_kwargs={"autoreset_mode": AutoresetMode.DISABLED})


def generic_team(num_envs, seed, n_agents=3):
    from ca12.envs.generic import MultiAgentEnvironment

    return MultiAgentEnvironment(num_envs=num_envs, n_agents=n_agents, seed=seed, max_steps=1000)


def simple_spread():
    from mpe2 import simple_spread_v3

    return simple_spread_v3.parallel_env(N=2, max_cycles=1000)


def turn_based():
    from mpe2 import simple_spread_v3

    return simple_spread_v3.env(N=3, max_cycles=1000)


def navigation():
    from vmas.scenarios.navigation import Scenario

    return Scenario()


@pytest.mark.parametrize(
    "factory, groups",
    [
        (cartpole, {"agent": 1}),
        (cartpole_vector, {"agent": 1}),
        (generic_team, {"agents": 3}),
        (TwoAgents, {"agents": 2}),
        (simple_spread, {"agent": 2}),
        (navigation, {"agents": 4}),
        (turn_based, {"agent_0": 1, "agent_1": 1, "agent_2": 1}),
    ],
    ids=["gymnasium", "gymnasium-vector", "torchrl-batched", "torchrl-unbatched", "pettingzoo", "vmas", "pettingzoo-aec"],
)
def test_each_kind_enters_the_layout_and_its_time_limit_truncates(factory, groups):
    env = ca12.make_env(factory, num_envs=3, max_steps=6)
    assert {group: len(agents) for group, agents in env.group_map.items()} == groups
    rollout = env.rollout(6, break_when_any_done=False)
    assert rollout.batch_size == (3, 6)
    for group, n in groups.items():
        assert rollout["next", group, "reward"].shape[-2:] == (n, 1)
        assert rollout["next", group, "episode_reward"].shape[-2:] == (n, 1)
    ends = rollout["next", "truncated"].flatten(2).any(-1)  # [3, 6]
    assert ends[:, -1].all() and not ends[:, -2].any()  # cut at max_steps: truncated...
    if factory not in (cartpole, cartpole_vector):  # (CartPole may fall within 6 steps)
        assert not rollout["next", "terminated"].any()  # ...never terminated


# --- the one-line refusals ---------------------------------------------------------------------------
def gymnasium_autoreset(num_envs):
    return gymnasium.make_vec("CartPole-v1", num_envs, vectorization_mode="sync")


def four_worlds(num_envs):
    return generic_team(4, 0)


@pytest.mark.parametrize(
    "factory, kwargs, says",
    [
        (TwoAgents, {"shared": True}, "group 'agents': the reward must be per agent"),
        (TwoAgents, {"observation": "obs"}, "group 'agents' has no (group, 'observation') entry"),
        (TwoAgents, {"colour": 1}, "got an unexpected keyword argument 'colour' (it takes shared, observation"),
        (gymnasium_autoreset, {}, "must be made with autoreset_mode=AutoresetMode.DISABLED"),
        (four_worlds, {}, "batch size (4,); env.num_envs is 3"),
        (lambda: np.zeros(3), {}, "returned a ndarray: expected a TorchRL EnvBase"),
    ],
    ids=["shared-reward", "no-observation", "unknown-kwarg", "autoreset", "batch", "not-an-env"],
)
def test_an_env_that_does_not_fit_is_one_line(factory, kwargs, says):
    with pytest.raises(UsageError) as error:
        ca12.make_env(factory, num_envs=3, **kwargs)
    assert says in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "env, says",
    [
        ("os:system", "code ca12 runs only when your own command names it"),
        ("no_such_module:make", "cannot import no_such_module"),
        ("a b:c", "MODULE:ATTRIBUTE"),
    ],
)
def test_a_factory_path_is_checked_before_anything_runs(env, says, fresh_names):
    section = {"family": "user", "task": env}
    with pytest.raises(UsageError, match=re.escape(says)):
        if env.startswith("os"):  # a saved run's path, not named by the user: refused without importing
            untrusted.check_env_factory(section, "last.ckpt")
        else:
            ca12.make_env(env)


def test_the_api_trains_and_loads_a_run_of_its_own_env(tmp_path, fresh_names):
    run = ca12.train("ppo", cartpole, run_dir=tmp_path / "run", debug="tiny", logger="csv", env={"max_steps": 30})
    assert run.config.env.task.endswith(":cartpole")
    untrusted._NAMED_ENV_FACTORIES.clear()
    with pytest.raises(UsageError, match="code ca12 runs only when your own command names it"):
        ca12.load(tmp_path / "run").config
    result = ca12.load(tmp_path / "run", env=cartpole).evaluate(episodes=2)
    assert result.episodes == 2 and result.episode_reward_mean > 0


def test_one_world_is_still_a_batch_of_one():
    env = ca12.make_env(simple_spread, num_envs=1, max_steps=4)  # (a lone PettingZoo world came back unbatched)
    assert env.batch_size == (1,) and env.rollout(4).batch_size == (1, 4)
