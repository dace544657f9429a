"""The memory/cue task (recurrence needed), matrix games with one group per player, and
single-agent TorchRL envs wrapped as a group of one agent."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDict, TensorDictBase
from torchrl.collectors import Collector
from torchrl.envs import CatTensors, Compose, PendulumEnv, SerialEnv, TransformedEnv, UnsqueezeTransform
from torchrl.envs.utils import RandomPolicy, check_env_specs

from ca12.envs import family_tasks, matrix, memory
from ca12.envs.gym.single_agent import AsAgentGroup, as_agent_group, group_map_of
from ca12.envs.memory import CueMemoryEnv
from ca12.errors import UsageError
from ca12.seeding import capture_rng_state, restore_rng_state

CONF = Path(__file__).resolve().parents[2] / "conf"

# ---- memory/cue ---------------------------------------------------------------------------


def _cue_cfg(**overrides) -> DictConfig:
    """conf/env/memory/cue.yaml (a plain YAML, no defaults list) with `overrides` merged in."""
    return OmegaConf.merge(OmegaConf.load(CONF / "env" / "memory" / "cue.yaml"), overrides)


def _cue_env(seed: int = 0, **overrides):
    return memory.make(_cue_cfg(**overrides), seed)


def _memory_policy(n_cues: int):
    """The optimal policy: remember the cue seen at t = 0, answer it (a closure is its memory)."""
    remembered: list[torch.Tensor] = []

    def policy(td: TensorDictBase) -> TensorDictBase:
        obs = td["agents", "observation"]  # [B, n, n_cues + 1]
        cue = obs[..., :n_cues]
        shown = cue.sum(-1) > 0  # [B, n]: true at t = 0
        if not remembered:
            remembered.append(torch.zeros(shown.shape, dtype=torch.long))
        remembered[0] = torch.where(shown, cue.argmax(-1), remembered[0])
        td["agents", "action"] = remembered[0].clone()
        return td

    return policy


def _memoryless_policy(n_cues: int):
    """A policy of the current observation only: the argmax of the visible cue (0 when hidden)."""

    def policy(td: TensorDictBase) -> TensorDictBase:
        td["agents", "action"] = td["agents", "observation"][..., :n_cues].argmax(-1)  # [B, n]
        return td

    return policy


def test_cue_yaml_builds_the_default_task_with_valid_specs():
    cfg = _cue_cfg()
    assert (cfg.family, cfg.task, cfg.num_envs, cfg.max_steps, cfg.n_agents, cfg.n_cues) == ("memory", "cue", 60, 4, 2, 3)
    assert cfg.continuous_actions is False
    env = memory.make(cfg, 0)
    check_env_specs(env)
    assert family_tasks("memory") == ["cue"]
    assert env.base_env.group_map == {"agents": ["agent_0", "agent_1"]}
    td = env.rollout(10)  # random actions; stops at the end of the first episode
    assert td.batch_size == (60, 4)
    assert td["agents", "observation"].shape == (60, 4, 2, 4)
    assert td["agents", "action"].shape == (60, 4, 2) and td["agents", "action"].dtype == torch.int64
    assert td["next", "agents", "reward"].shape == (60, 4, 2, 1)
    assert td["next", "agents", "episode_reward"].shape == (60, 4, 2, 1)
    assert td["next", "done"].shape == (60, 4, 1)
    assert td["next", "done"][:, -1].all() and not td["next", "done"][:, :-1].any()
    assert torch.equal(td["next", "terminated"], td["next", "done"]) and not td["next", "truncated"].any()


def test_cue_is_shown_only_first_and_rewarded_only_last():
    env = _cue_env(num_envs=200)
    td = env.rollout(4, policy=_memory_policy(3))
    obs = td["agents", "observation"]  # [B, T, n, 4]
    cue = env.base_env.cue  # [B, n]
    assert torch.equal(obs[:, 0, :, :3], torch.nn.functional.one_hot(cue, 3).float())
    assert not obs[:, 1:, :, :3].any()
    assert torch.allclose(obs[:, :, :, 3], torch.arange(4).float().div(4).view(1, 4, 1).expand(200, 4, 2))
    reward = td["next", "agents", "reward"]  # [B, T, n, 1]
    assert not reward[:, :-1].any()
    # Per-agent cues: agents of one world do not share theirs.
    assert (cue[:, 0] != cue[:, 1]).any()
    # The last observation is the same in every world whatever the cues: no memoryless policy
    # can do better than a fixed guess there.
    assert (obs[:, -1] == obs[0, -1]).all()


def test_memory_policy_scores_one_and_memoryless_policy_scores_chance():
    env = _cue_env(num_envs=3000)
    recall = env.rollout(4, policy=_memory_policy(3))["next", "agents", "episode_reward"][:, -1]  # [B, n, 1]
    assert torch.equal(recall, torch.ones_like(recall))
    guess = env.rollout(4, policy=_memoryless_policy(3))["next", "agents", "episode_reward"][:, -1]
    assert abs(guess.mean().item() - 1 / 3) < 0.03
    assert set(guess.unique().tolist()) <= {0.0, 1.0}


def test_memory_policy_keeps_scoring_across_automatic_resets():
    env = _cue_env(num_envs=8, n_cues=5, max_steps=3, n_agents=3)
    td = env.rollout(9, policy=_memory_policy(5), break_when_any_done=False)  # three episodes
    done = td["next", "done"].squeeze(-1)  # [B, T]
    assert done.sum().item() == 8 * 3 and done[:, 2::3].all()
    assert torch.equal(td["next", "agents", "episode_reward"][done], torch.ones(8 * 3, 3, 1))
    assert td["next", "agents", "reward"].sum().item() == 8 * 3 * 3


def test_cue_seeding_is_reproducible_and_independent_of_the_reset_mask():
    def cues(seed: int, resets: int = 3) -> list[torch.Tensor]:
        env = CueMemoryEnv(num_envs=16, seed=seed)
        out = []
        for _ in range(resets):
            env.reset()
            out.append(env.cue)
        return out

    assert all(torch.equal(a, b) for a, b in zip(cues(7), cues(7)))
    assert not all(torch.equal(a, b) for a, b in zip(cues(7), cues(8)))
    # Build-time seeding does not touch torch's global generator.
    before = torch.get_rng_state()
    CueMemoryEnv(num_envs=4, seed=3).reset()
    assert torch.equal(before, torch.get_rng_state())
    # A partial reset draws for every world: the reset worlds get what a full reset would give.
    full, partial = CueMemoryEnv(num_envs=16, seed=5), CueMemoryEnv(num_envs=16, seed=5)
    full.reset(), partial.reset()
    kept = partial.cue
    mask = torch.arange(16) % 2 == 0
    full.reset()
    partial.reset(TensorDict({"_reset": mask.view(16, 1)}, batch_size=[16]))
    assert torch.equal(partial.cue[mask], full.cue[mask]) and torch.equal(partial.cue[~mask], kept[~mask])
    # set_seed restarts the stream; checkpoints capture it under memory/<device>/<seed>.
    env = CueMemoryEnv(num_envs=16, seed=11)
    env.reset()
    saved = capture_rng_state()
    assert "memory/cpu/11" in saved["extra"]
    env.reset()
    after = env.cue
    restore_rng_state(saved)
    env.reset()
    assert torch.equal(env.cue, after)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"n_cues": 1}, "n_cues"),
        ({"max_steps": 1}, "max_steps"),
        ({"n_agents": 0}, "n_agents"),
        ({"n_cues": 2.5}, "n_cues"),
        ({"continuous_actions": True}, "discrete"),
        ({"cue_period": 2}, "does not take cue_period"),
        ({"task": "recall"}, "unknown memory task"),
    ],
)
def test_cue_refuses_bad_settings_with_one_line(overrides, message):
    with pytest.raises(UsageError, match=message) as info:
        memory.make(_cue_cfg(**overrides), 0)
    assert "\n" not in str(info.value)


# ---- matrix games, one group per player ---------------------------------------------------


CLIMBING = [[[11, -30, 0], [-30, 7, 6], [0, 0, 5]]] * 2  # common payoff, 3 actions
PENNIES = [[[1, -1], [-1, 1]], [[-1, 1], [1, -1]]]  # zero-sum, 2 actions


def _matrix(payoffs, **overrides):
    """A matrix-family env section as the YAMLs compose it (built here: those YAMLs are being
    restructured), with `overrides` merged in; `group_per_player` absent unless given."""
    cfg = OmegaConf.create(
        {
            "family": "matrix",
            "task": "custom",
            "num_envs": 9,
            "max_steps": 2,
            "device": "cpu",
            "continuous_actions": False,
            "categorical_actions": True,
            "payoffs": payoffs,
        }
    )
    return matrix.make(OmegaConf.merge(cfg, overrides), 0)


@pytest.mark.parametrize("categorical", [True, False])
def test_group_per_player_splits_the_same_game_into_one_group_per_player(categorical):
    joint = torch.tensor([[a, b] for a in range(3) for b in range(3)])  # every joint action, [9, 2]
    one = _matrix(CLIMBING, categorical_actions=categorical)
    split = _matrix(CLIMBING, categorical_actions=categorical, group_per_player=True)
    check_env_specs(split)
    assert split.base_env.group_map == {"player_0": ["player_0"], "player_1": ["player_1"]}
    assert one.base_env.group_map == {"agents": ["player_0", "player_1"]}

    def encode(a: torch.Tensor) -> torch.Tensor:
        return a if categorical else torch.nn.functional.one_hot(a, 3).bool()

    td_one, td_split = one.reset(), split.reset()
    td_one["agents", "action"] = encode(joint)
    for i in range(2):
        assert td_split[f"player_{i}", "observation"].shape == (9, 1, 2 * 3 + 2 + 1)
        assert torch.equal(td_split[f"player_{i}", "observation"], td_one["agents", "observation"][:, i : i + 1])
        td_split[f"player_{i}", "action"] = encode(joint[:, i : i + 1])  # [9, 1] or [9, 1, 3]
    out_one, out_split = one.step(td_one)["next"], split.step(td_split)["next"]
    for i in range(2):
        key = f"player_{i}"
        assert out_split[key, "reward"].shape == (9, 1, 1)
        assert torch.equal(out_split[key, "reward"], out_one["agents", "reward"][:, i : i + 1])
        assert torch.equal(out_split[key, "episode_reward"], out_one["agents", "episode_reward"][:, i : i + 1])
        assert torch.equal(out_split[key, "observation"], out_one["agents", "observation"][:, i : i + 1])
    assert out_split["done"].shape == (9, 1)


def test_group_per_player_rolls_out_one_learner_against_a_fixed_opponent():
    env = _matrix(PENNIES, group_per_player=True, max_steps=5)
    learner = RandomPolicy(env.full_action_spec)

    def policy(td: TensorDictBase) -> TensorDictBase:
        td = learner(td)  # fills both groups' actions at random ...
        td["player_1", "action"] = torch.zeros(9, 1, dtype=torch.long)  # ... then fixes player 1's
        return td

    td = env.rollout(5, policy=policy)
    assert td["player_0", "action"].shape == (9, 5, 1) and not td["player_1", "action"].any()
    total = td["next", "player_0", "episode_reward"][:, -1] + td["next", "player_1", "episode_reward"][:, -1]
    assert torch.equal(total, torch.zeros_like(total))  # zero-sum, group by group


def test_group_per_player_must_be_a_boolean():
    with pytest.raises(UsageError, match="group_per_player"):
        _matrix(CLIMBING, group_per_player=2)


# ---- single-agent envs as a group of one --------------------------------------------------


def _pendulum() -> TransformedEnv:
    """TorchRL's pure-torch (stateless, unbatched) Pendulum with an "observation" [*B, 2] entry."""
    return TransformedEnv(
        PendulumEnv(seed=0),
        Compose(
            UnsqueezeTransform(-1, in_keys=["th", "thdot"], in_keys_inv=["th", "thdot"]),
            CatTensors(["th", "thdot"], "observation", del_keys=False),
        ),
    )


def test_pendulum_as_a_group_of_one_has_agent_dims_and_valid_specs():
    env = as_agent_group(_pendulum())
    check_env_specs(env)
    assert env.group_map == {"agent": ["agent"]} and group_map_of(env) == {"agent": ["agent"]}
    assert env.full_action_spec["agent", "action"].shape == (1, 1)
    td = env.rollout(5)  # unbatched env: *B = ()
    assert td["agent", "observation"].shape == (5, 1, 2)
    assert td["agent", "action"].shape == (5, 1, 1)
    assert td["next", "agent", "reward"].shape == (5, 1, 1)
    assert td["next", "agent", "episode_reward"].shape == (5, 1, 1)
    assert td["next", "done"].shape == (5, 1) and "observation" not in td.keys()
    assert torch.allclose(td["next", "agent", "episode_reward"][-1], td["next", "agent", "reward"].sum(0))

    batched = as_agent_group(SerialEnv(2, _pendulum), group="pendulum")
    check_env_specs(batched)
    td = batched.rollout(5)  # *B = (2,)
    assert td["pendulum", "observation"].shape == (2, 5, 1, 2)
    assert td["pendulum", "action"].shape == (2, 5, 1, 1)
    assert td["next", "pendulum", "reward"].shape == (2, 5, 1, 1)
    assert td["next", "done"].shape == (2, 5, 1)


def test_the_group_action_is_the_action_the_env_takes():
    wrapped, plain = as_agent_group(_pendulum()), _pendulum()
    td = wrapped.reset()
    td["agent", "action"] = torch.full((1, 1), 1.5)
    state = td.select("th", "thdot", "params").clone()
    state["action"] = torch.full((1,), 1.5)
    ours, theirs = wrapped.step(td)["next"], plain.step(state)["next"]
    assert torch.equal(ours["agent", "observation"][0], theirs["observation"])
    assert torch.equal(ours["agent", "reward"][0], theirs["reward"])
    assert torch.equal(td["agent", "action"], torch.full((1, 1), 1.5))  # the caller's data is untouched


def test_a_bare_transform_still_reports_its_group_map():
    for unwrap in (False, True):  # our transform in an outer layer, or in the env's Compose
        env = TransformedEnv(_pendulum(), AsAgentGroup("solo"), auto_unwrap=unwrap)
        assert group_map_of(env) == {"solo": ["solo"]}
    assert env.rollout(2)["solo", "observation"].shape == (2, 1, 2)  # the Compose one
    assert group_map_of(_pendulum()) == {}


@pytest.mark.parametrize("categorical", [False, True])
def test_cartpole_as_a_group_of_one_keeps_its_discrete_action_kind(categorical):
    pytest.importorskip("gym")  # a vmas dependency; torchrl also takes gymnasium
    from torchrl.envs import GymEnv

    make = functools.partial(GymEnv, "CartPole-v1", categorical_action_encoding=categorical)
    env = as_agent_group(SerialEnv(2, make))
    check_env_specs(env)
    action = env.full_action_spec["agent", "action"]
    assert type(action).__name__ == ("Categorical" if categorical else "OneHot")
    assert action.shape == ((2, 1) if categorical else (2, 1, 2))
    td = env.rollout(60, break_when_any_done=False)  # random episodes are ~20 steps: resets happen
    assert td["agent", "observation"].shape == (2, 60, 1, 4)
    assert td["agent", "action"].shape == ((2, 60, 1) if categorical else (2, 60, 1, 2))
    assert td["next", "agent", "reward"].shape == (2, 60, 1, 1)
    done = td["next", "done"].squeeze(-1)  # [2, 60]
    assert done.any()
    # The per-agent return restarts after each reset: it equals the step count of the episode.
    ret = td["next", "agent", "episode_reward"].squeeze(-1).squeeze(-1)  # [2, 60]
    after = torch.cat([torch.ones(2, 1, dtype=torch.bool), done[:, :-1]], dim=1)
    assert torch.equal(ret[after], torch.ones(int(after.sum())))
    td = env.rand_step(env.reset())
    assert td["next", "agent", "reward"].shape == (2, 1, 1)
    frames = Collector(env, RandomPolicy(env.full_action_spec), frames_per_batch=20, total_frames=20)
    batch = next(iter(frames))
    frames.shutdown()
    assert batch["next", "agent", "episode_reward"].shape[-2:] == (1, 1)
