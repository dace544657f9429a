"""The gym/<id> (Gymnasium) and pettingzoo/<env> (MPE2) families: key layout and specs, seeding,
terminated vs truncated, MAPPO fits that checkpoint and resume, one-group algorithms refusing
two groups, and the one-line messages for unknown ids and missing packages."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torchrl.data import Bounded, Categorical
from torchrl.envs.utils import check_env_specs

pytest.importorskip("gymnasium")
pytest.importorskip("pettingzoo")
pytest.importorskip("mpe2")

from conftest import TINY  # noqa: E402

import ca12.envs.gym as gym_family  # noqa: E402
import ca12.envs.pettingzoo as pettingzoo_family  # noqa: E402
from ca12.algos import algo_class  # noqa: E402
from ca12.envs import (  # noqa: E402
    AgentLayout,
    catalog,  # noqa: E402
    make_env,
    make_spec_env,
)
from ca12.errors import UsageError  # noqa: E402
from ca12.fit import list_choices, main  # noqa: E402
from ca12.run.config import load_config  # noqa: E402
from ca12.seeding import capture_rng_state  # noqa: E402

B = 3  # worlds per env in the spec tests


def _cfg(env: str, *overrides: str, algo: str = "mappo"):
    return load_config(algo, env, [f"env.num_envs={B}", *overrides]).env


def _env(env: str, *overrides: str, seed: int = 0):
    return make_env(_cfg(env, *overrides), seed)


def _returns(run_dir: Path) -> list[float]:
    with open(run_dir / "metrics.csv") as f:
        return [float(row["rollout/episode_reward_mean"]) for row in csv.DictReader(f) if row.get("rollout/episode_reward_mean")]


def _ckpt(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)


# --- key layout and specs ------------------------------------------------------------------------
@pytest.mark.parametrize("vectorization", ["gymnasium", "serial"])
def test_cartpole_is_a_discrete_group_of_one(vectorization):
    env = _env("gym/CartPole-v1", f"env.vectorization={vectorization}")
    check_env_specs(env)
    assert env.group_map == {"agent": ["agent"]}
    group = AgentLayout.from_env(env).groups["agent"]
    assert (group.n_agents, group.obs_dim, group.discrete, group.n_actions) == (1, 4, True, 2)
    assert isinstance(env.full_action_spec["agent", "action"], Categorical)
    td = env.rollout(5, break_when_any_done=False)
    assert td["agent", "observation"].shape == (B, 5, 1, 4)
    assert td["agent", "action"].shape == (B, 5, 1)
    assert td["next", "agent", "reward"].shape == (B, 5, 1, 1)
    assert td["next", "agent", "episode_reward"].shape == (B, 5, 1, 1)
    for flag in ("done", "terminated", "truncated"):
        assert td["next", flag].shape == (B, 5, 1)


def test_pendulum_is_a_continuous_group_of_one_with_its_bounds_and_time_limit():
    cfg = _cfg("gym/Pendulum-v1")
    assert cfg.max_steps == 200 and cfg.continuous_actions  # conf/env/gym/Pendulum-v1.yaml
    env = make_env(cfg, 0)
    check_env_specs(env)
    spec = env.full_action_spec_unbatched["agent", "action"]
    assert isinstance(spec, Bounded) and spec.shape == (1, 1)
    assert spec.space.low.item() == -2.0 and spec.space.high.item() == 2.0
    group = AgentLayout.from_env(env).groups["agent"]
    assert (group.n_agents, group.obs_dim, group.discrete, group.action_dim) == (1, 3, False, 1)
    td = env.rollout(200, break_when_any_done=False)
    assert td["agent", "action"].shape == (B, 200, 1, 1)
    assert td["next", "truncated"][:, -1].all() and not td["next", "truncated"][:, :-1].any()
    assert not td["next", "terminated"].any()


@pytest.mark.parametrize(
    "task, overrides, groups",
    [
        ("simple_spread", [], {"agent": (3, 18, 5)}),
        ("simple_spread", ["env.N=5"], {"agent": (5, 30, 5)}),
        ("simple_speaker_listener", [], {"speaker": (1, 3, 3), "listener": (1, 11, 5)}),
        ("simple_reference", [], {"agent": (2, 21, 50)}),
    ],
)
def test_mpe_groups_specs_and_episode_end(task, overrides, groups):
    env = _env(f"pettingzoo/{task}", "env.max_steps=5", *overrides)
    check_env_specs(env)
    layout = AgentLayout.from_env(env)
    assert {g.name: (g.n_agents, g.obs_dim, g.n_actions) for g in layout.groups.values()} == groups
    td = env.rollout(7, break_when_any_done=False)
    for name, (n, obs, _) in groups.items():
        assert td["next", name, "observation"].shape == (B, 7, n, obs)
        assert td["next", name, "reward"].shape == (B, 7, n, 1)
        assert td["next", name, "episode_reward"].shape == (B, 7, n, 1)
    for flag in ("done", "terminated", "truncated"):
        assert td["next", flag].shape == (B, 7, 1)
    # max_steps is MPE's max_cycles: every world is cut (truncated, not terminated) at step 5.
    assert td["next", "truncated"].squeeze(-1)[:, 4].all() and not td["next", "truncated"].squeeze(-1)[:, :4].any()
    assert not td["next", "terminated"].any()


def test_mpe_continuous_actions_are_bounded_in_zero_one():
    env = _env("pettingzoo/simple_spread", "env.continuous_actions=true")
    spec = env.full_action_spec_unbatched["agent", "action"]
    assert isinstance(spec, Bounded) and spec.shape == (3, 5)
    assert spec.space.low.min().item() == 0.0 and spec.space.high.max().item() == 1.0
    env.rollout(3)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, vectorization", [("gym/CartPole-v1", "gymnasium_async"), ("gym/CartPole-v1", "parallel"), ("pettingzoo/simple_spread", "parallel")]
)
def test_process_based_vectorisations_step_and_checkpoint(name, vectorization):
    """One process per world (13-37 s to start on 2 cores): same layout; their worlds' generators
    live in the workers, so checkpoints hold none of them, and capturing does not query the workers."""
    env = _env(name, "env.num_envs=2", f"env.vectorization={vectorization}")
    td = env.rollout(30, break_when_any_done=False)
    assert td["next", "agent", "reward"].shape[:2] == (2, 30) and td["next", "done"].shape == (2, 30, 1)
    assert capture_rng_state()["extra"][f"{name}/cpu/0"] == []
    env.close()


# --- seeding and episode ends --------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gym/CartPole-v1", "gym/Pendulum-v1", "pettingzoo/simple_spread"])
def test_same_seed_same_rollout_different_seed_different(name):
    def rollout(seed: int) -> torch.Tensor:
        torch.manual_seed(0)  # the random actions
        return _env(name, seed=seed).rollout(30, break_when_any_done=False)["next", "agent", "observation"]

    assert torch.equal(rollout(3), rollout(3))
    assert not torch.equal(rollout(3), rollout(4))


def _step_cartpole(env, td, action: int):
    td["agent", "action"] = torch.full((B, 1), action)
    return env.step_and_maybe_reset(td)


def test_cartpole_time_limit_truncates_and_a_fallen_pole_terminates():
    # Alternating pushes keep the pole up: the 5-step time limit cuts every episode.
    env = _env("gym/CartPole-v1", "env.max_steps=5")
    td = env.reset()
    for t in range(5):
        out, td = _step_cartpole(env, td, t % 2)
    assert out["next", "truncated"].all() and not out["next", "terminated"].any()
    assert (out["next", "agent", "observation"].abs() > 0.05).any(), "the last observation, not a reset one"
    assert (td["agent", "observation"].abs() <= 0.05).all(), "worlds restart after the cut"
    # Pushing one way only drops the pole within 20 steps, long before the 500-step limit.
    env = _env("gym/CartPole-v1")
    td, terminated = env.reset(), torch.zeros(B, 1, dtype=torch.bool)
    for _ in range(20):
        out, td = _step_cartpole(env, td, 1)
        assert not out["next", "truncated"].any()
        terminated |= out["next", "terminated"]
    assert terminated.all()


# --- training, checkpoints, resume ---------------------------------------------------------------
@pytest.mark.parametrize("env", ["gym/CartPole-v1", "gym/Pendulum-v1", "pettingzoo/simple_spread"])
def test_mappo_trains_and_resumes_bit_for_bit(env, tmp_path):
    """Half a run plus a resume is the whole run: the worlds' NumPy generators are checkpointed."""
    args = ["--algo", "mappo", "--env", env, "logger=none", "eval.every_n_iters=0", *TINY]
    one_go, split = tmp_path / "one_go", tmp_path / "split"
    assert main([*args, "--run-dir", str(one_go), "collector.total_frames=300"]) == 0
    assert main([*args, "--run-dir", str(split), "collector.total_frames=200"]) == 0
    assert main(["--resume", str(split), "collector.total_frames=300"]) == 0
    a, b = _ckpt(one_go), _ckpt(split)
    assert a["ca12"]["frames"] == b["ca12"]["frames"] == 300
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert _returns(one_go) == _returns(split) and len(_returns(one_go)) == 3


@pytest.mark.parametrize("algo", ["masac", "maddpg"])
def test_off_policy_actors_train_on_pendulum(algo, tmp_path):
    args = [
        "--algo",
        algo,
        "--env",
        "gym/Pendulum-v1",
        "--run-dir",
        str(tmp_path / algo),
        "logger=none",
        "eval.every_n_iters=0",
        "env.num_envs=4",
        "env.max_steps=25",
        "collector.frames_per_batch=100",
        "collector.total_frames=300",
        "algo.warmup_frames=100",
        "algo.minibatch_size=32",
        "model.hidden_sizes=[32,32]",
        "critic_model.hidden_sizes=[32,32]",
    ]
    assert main(args) == 0
    assert len(_returns(tmp_path / algo)) == 3


def test_speaker_listener_trains_both_groups_with_mappo_and_one_group_algorithms_refuse_it():
    cfg = load_config("mappo", "pettingzoo/simple_speaker_listener", ["env.num_envs=2", "collector.frames_per_batch=50", "algo.minibatch_size=50"])
    module = algo_class("mappo")(cfg, make_spec_env(cfg.env, 0))
    assert [g.name for g in module.groups] == ["speaker", "listener"]
    assert {k.split(".")[1] for k in module.state_dict() if k.startswith("actors.")} == {"speaker", "listener"}
    # MAPPO's centralised critics see every group's observations (the listener's value knows the goal).
    both = [("speaker", "observation"), ("listener", "observation")]
    assert all(list(module.critics[g].in_keys) == both for g in ("speaker", "listener"))
    td = make_spec_env(cfg.env, 0).reset()
    td["speaker", "observation"].requires_grad_(True)
    module.critics["listener"](td)["listener", "state_value"].sum().backward()
    assert td["speaker", "observation"].grad.abs().sum() > 0
    ippo = algo_class("ippo")(load_config("ippo", "pettingzoo/simple_speaker_listener"), make_spec_env(cfg.env, 0))
    assert list(ippo.critics["listener"].in_keys) == [("listener", "observation")]
    for algo in ("iql", "masac"):
        cfg = load_config(algo, "pettingzoo/simple_speaker_listener")
        with pytest.raises(
            UsageError, match=rf"^{algo} trains one agent group; the env has groups \['speaker', 'listener'\]: name one with algo.groups=\[NAME\]$"
        ):
            algo_class(algo)(cfg, make_spec_env(cfg.env, 0))


def test_hiding_the_listeners_message_features_cuts_the_channel_and_nothing_else():
    """env.hide_observation zeroes exactly the named features, at reset and after every step."""

    def rollout(*extra):
        env = _env("pettingzoo/simple_speaker_listener", *extra)
        torch.manual_seed(0)  # the same random actions
        return env.rollout(6, break_when_any_done=False)

    plain, hidden = rollout(), rollout("env.hide_observation={listener:[-3,-2,-1]}")
    for key in (("listener", "observation"), ("next", "listener", "observation")):
        assert plain[key][..., -3:].abs().sum() > 0, "the speaker's messages reach the listener"
        assert (hidden[key][..., -3:] == 0).all()
        torch.testing.assert_close(hidden[key][..., :-3], plain[key][..., :-3])
    torch.testing.assert_close(hidden["speaker", "observation"], plain["speaker", "observation"])
    for bad, message in (
        ("{foo:[1]}", r" names group 'foo'; the env's groups are: speaker, listener$"),
        ("{listener:[11]}", r".listener must list feature indices in \[-11, 11\) of its observation, got \[11\]$"),
    ):
        with pytest.raises(UsageError, match=r"^env.hide_observation" + message):
            _env("pettingzoo/simple_speaker_listener", f"env.hide_observation={bad}")


# --- listing, unknown ids and kwargs, missing packages ---------------------------------------------
def test_both_families_are_listed_with_their_tasks():
    lines = list_choices()
    for name in (
        "gym/CartPole-v1",
        "gym/Pendulum-v1",
        "pettingzoo/simple_spread",
        "pettingzoo/simple_speaker_listener",
        "pettingzoo/simple_reference",
    ):
        assert f"env {name}" in lines
    assert not any(line.startswith("env pettingzoo/") and "_v" in line for line in lines), "no version suffixes"


def test_unknown_ids_are_refused_in_one_line_with_a_close_match(capsys):
    with pytest.raises(UsageError, match=r"^unknown gym task 'CartPol-v1'; did you mean 'CartPole-v1'\?$"):
        gym_family.check_task("CartPol-v1")
    with pytest.raises(UsageError, match=r"^unknown pettingzoo task 'simple_sprad'; did you mean 'simple_spread'\?$"):
        pettingzoo_family.check_task("simple_sprad")
    assert main(["--algo", "mappo", "--env", "gym/Foo-v0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ca12.fit: error: unknown gym task 'Foo-v0'") and err.count("\n") == 1


def test_unknown_kwargs_and_vectorizations_are_refused_in_one_line():
    with pytest.raises(UsageError, match=r"^gym/CartPole-v1 does not take foo; it takes sutton_barto_reward$"):
        _env("gym/CartPole-v1", "env.foo=1")
    with pytest.raises(UsageError, match=r"^pettingzoo/simple_spread does not take foo; it takes N, local_ratio, "):
        _env("pettingzoo/simple_spread", "env.foo=1")
    with pytest.raises(UsageError, match=r"^env.vectorization must be one of batched, serial, parallel, got 'gymnasium'$"):
        _env("pettingzoo/simple_spread", "env.vectorization=gymnasium")
    assert _env("gym/Pendulum-v1", "env.g=9.81").base_env._env.envs[0].unwrapped.g == 9.81


def _without(monkeypatch, module, *names: str) -> None:
    """Make `module`'s `importlib.util.find_spec` say `names` are not installed."""
    real = module.importlib.util.find_spec
    monkeypatch.setattr(module.importlib.util, "find_spec", lambda name, *args, **kwargs: None if name in names else real(name, *args, **kwargs))


def test_a_missing_pettingzoo_or_mpe2_is_named_in_one_line(monkeypatch, capsys):
    _without(monkeypatch, catalog, "mpe2")
    assert "simple_spread" in catalog.pettingzoo_tasks(), "still listed, so --env reaches the message"
    assert main(["--algo", "mappo", "--env", "pettingzoo/simple_spread"]) == 2
    assert capsys.readouterr().err == 'ca12.fit: error: pettingzoo/simple_spread needs pettingzoo and mpe2: pip install -e ".[pettingzoo]"\n'


def test_a_missing_plugin_or_env_dependency_is_named_in_one_line(monkeypatch, capsys):
    _without(monkeypatch, catalog, "ale_py")
    cfg = OmegaConf.merge(_cfg("gym/CartPole-v1"), {"task": "ALE/Pong-v5"})
    with pytest.raises(UsageError, match=r"^gym/ALE/Pong-v5 needs the ale-py package: pip install ale-py$"):
        make_env(cfg, 0)
    # Box2D fails to import (whether or not it is installed): LunarLander names it.
    monkeypatch.setitem(sys.modules, "Box2D", None)
    for name in [m for m in sys.modules if m.startswith("gymnasium.envs.box2d")]:
        monkeypatch.delitem(sys.modules, name)
    assert main(["--algo", "mappo", "--env", "gym/LunarLander-v3"]) == 2
    assert capsys.readouterr().err == 'ca12.fit: error: gym/LunarLander-v3 needs the box2d package: pip install "gymnasium[box2d]"\n'


def test_a_missing_gymnasium_is_named_in_one_line(monkeypatch):
    _without(monkeypatch, catalog, "gymnasium")
    assert catalog.gym_tasks() == []
    with pytest.raises(UsageError, match=r"^gym/\.\.\. envs need the gymnasium package: pip install gymnasium$"):
        gym_family.check_task("CartPole-v1")


# --- learning ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_mappo_balances_cartpole_well_above_random(tmp_path):
    run_dir = tmp_path / "cartpole"
    assert (
        main(
            [
                "--algo",
                "mappo",
                "--env",
                "gym/CartPole-v1",
                "--run-dir",
                str(run_dir),
                "logger=none",
                "eval.every_n_iters=0",
                "env.num_envs=16",
                "collector.frames_per_batch=2000",
                "collector.total_frames=30000",
                "algo.minibatch_size=500",
                "model.hidden_sizes=[64,64]",
                "critic_model.hidden_sizes=[64,64]",
            ]
        )
        == 0
    )
    returns = _returns(run_dir)
    assert returns[0] < 30 and max(returns[-3:]) > 150, returns  # random play lasts ~22 steps; ~15 s here


@pytest.mark.parametrize("task, continuous", [("simple_speaker_listener", False), ("simple_spread", True)])
def test_batched_worlds_step_as_torchrls_serial_env_does(task, continuous):
    """The default `batched` vectorisation is TorchRL's `SerialEnv` of wrappers, faster: same
    keys, specs and values for the same seed and actions, across episode ends (7-step episodes)."""
    envs = [pettingzoo_family.batched_env(task, 3, v, max_cycles=7, continuous_actions=continuous) for v in ("batched", "serial")]
    assert envs[0].full_observation_spec == envs[1].full_observation_spec and envs[0].full_action_spec == envs[1].full_action_spec
    check_env_specs(envs[0])
    rollouts = []
    for env in envs:
        env.set_seed(5)
        torch.manual_seed(0)
        rollouts.append(env.rollout(20, break_when_any_done=False))
    batched, serial = rollouts
    assert set(batched.keys(True, True)) == set(serial.keys(True, True))
    assert batched["next", "done"].any(), "episodes ended inside the rollout"
    for k in serial.keys(True, True):
        assert torch.equal(batched[k], serial[k]), k
