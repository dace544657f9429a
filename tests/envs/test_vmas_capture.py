"""The pieces of `collector.kind=cudagraph`, checked on the CPU (the capture itself needs a GPU:
benchmarks/gpu_session.sh runs it there).

* `NoHostReads` (ca12/envs/vmas/host_reads.py) answers VMAS's host reads so that its step can be
  captured: stepped under it, VMAS must give the same worlds as without it, and read nothing.
* `CapturedCollector` (ca12/data/cuda_graph_collector.py) runs the rollout step the graph captures: its batch
  must be the one TorchRL's collector gives from the same random state.
"""

from __future__ import annotations

import collections
import contextlib

import pytest
import torch
import vmas
from conftest import tiny_config, tiny_env
from torch.utils._python_dispatch import TorchDispatchMode

from ca12.algos import algo_class
from ca12.data.collectors import make_collector
from ca12.data.cuda_graph_collector import CapturedCollector
from ca12.envs.vmas import VMAS_SOURCES, CapturedState
from ca12.envs.vmas.host_reads import HostReadError, NoHostReads
from ca12.errors import UsageError
from ca12.seeding import capture_rng_state, restore_rng_state

NAVIGATION = dict(n_agents=3, collisions=True, agents_with_same_goal=1, lidar_range=0.35, agent_radius=0.1)


class CountHostReads(TorchDispatchMode):
    """Counts the ops that make the host wait for a device value."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        boolean_index = name in ("index", "index_put_", "_index_put_impl_") and any(
            isinstance(t, torch.Tensor) and t.dtype == torch.bool for t in (args[1] if isinstance(args[1], (list, tuple)) else [args[1]])
        )
        if name in ("_local_scalar_dense", "nonzero", "is_nonzero", "masked_select") or boolean_index:
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))


def _steps(task: str, kwargs: dict, no_host_reads: bool, steps: int = 60, worlds: int = 48, continuous: bool = True):
    env = vmas.make_env(task, num_envs=worlds, device="cpu", continuous_actions=continuous, seed=0, **kwargs)
    env.reset()
    state = CapturedState(env) if no_host_reads else None
    actions = torch.Generator().manual_seed(1)
    counter, out = CountHostReads(), []
    for step in range(steps):
        act = [
            torch.rand(worlds, env.get_agent_action_size(a), generator=actions) * 2 - 1
            if continuous
            else torch.randint(0, 5, (worlds, 1), generator=actions)
            for a in env.agents
        ]
        if no_host_reads:  # the first step reads the fixed settings (STATIC answers), as a warm-up before capture does
            with state.mode, counter if step > 0 else contextlib.nullcontext():
                obs, rew, done, _ = env.step(act)
                state.anchor()
        else:
            obs, rew, done, _ = env.step(act)
        out.append((torch.stack(obs), torch.stack(rew), done.clone()))
    return out, counter.counts


@pytest.mark.parametrize("task, kwargs, continuous", [("balance", {}, True), ("navigation", NAVIGATION, True), ("balance", {}, False)])
def test_vmas_steps_the_same_worlds_with_no_host_read(task, kwargs, continuous):
    plain, _ = _steps(task, kwargs, no_host_reads=False, continuous=continuous)
    answered, reads = _steps(task, kwargs, no_host_reads=True, continuous=continuous)
    assert sum(reads.values()) == 0, reads
    penalties = 0
    for (obs, rew, done), (obs2, rew2, done2) in zip(plain, answered):
        # the same physics; more collision pairs batched together can round differently (1 ulp)
        torch.testing.assert_close(obs2, obs, rtol=1e-6, atol=1e-6)
        assert torch.equal(done2, done)
        if task == "balance":
            torch.testing.assert_close(rew2, rew, rtol=1e-6, atol=1e-6)
        else:  # VMAS skips navigation's contact penalty when no pair overlaps in any world (see VMAS_HOST_READS)
            differs = rew2 != rew
            penalties += int(differs.sum())
            torch.testing.assert_close((rew2 - rew)[differs].abs(), torch.ones_like(rew[differs]), rtol=0, atol=1e-5)
    assert penalties <= 0.01 * sum(rew.numel() for _, rew, _ in plain)


def test_an_unanswered_host_read_is_named():
    mode = NoHostReads({}, package=VMAS_SOURCES)
    env = vmas.make_env("balance", num_envs=2, device="cpu", continuous_actions=True, seed=0)
    env.reset()
    with pytest.raises(HostReadError, match=r"_set_action \(environment.py:\d+\) reads a device value"), mode:
        env.step([torch.zeros(2, env.get_agent_action_size(a)) for a in env.agents])


@pytest.mark.parametrize("env_name", ["vmas/navigation", "vmas/balance"])
def test_the_captured_rollout_step_gives_torchrl_collectors_batch(env_name):
    cfg = tiny_config("mappo", "env.num_envs=4", "collector.frames_per_batch=200", "env.max_steps=25", env=env_name)
    module = algo_class("mappo")(cfg, tiny_env(cfg))
    reference = make_collector("sync", 1, None, tiny_env(cfg), module.policy, 200, 0, torch.device("cpu"), reset_at_each_iter=True)
    captured = CapturedCollector(tiny_env(cfg), module.policy, 200, reset_at_each_iter=True, capture=False)
    captured.collect()  # builds its buffers (and would capture, on a GPU)
    start = capture_rng_state()
    expected = next(iter(reference))
    restore_rng_state(start)
    got = captured.collect()
    assert got.batch_size == expected.batch_size == torch.Size([4, 50])
    assert set(got.keys(True, True)) == set(expected.exclude("collector").keys(True, True))
    assert got["next", "done"].any()  # episodes ended (and were reset) inside the batch
    for key in got.keys(True, True):
        # VMAS's infos right after a reset are whatever its scenario computed last, before the
        # reset: this env's history, which differs between the two envs (one was warmed up)
        start = 1 if key[0] != "next" and "info" in key else 0
        torch.testing.assert_close(got[key][:, start:], expected[key][:, start:], rtol=0, atol=1e-6, msg=lambda m: f"{key}: {m}")
    reference.shutdown()


@pytest.mark.parametrize("algo", ["mappo", "maddpg", "masac", "iql"])
def test_the_rollout_step_of_each_policy_makes_no_host_read_a_capture_would_refuse(algo):
    cfg = tiny_config(algo, "env.num_envs=4", "collector.frames_per_batch=200", env="vmas/balance")
    module = algo_class(algo)(cfg, tiny_env(cfg))
    collector = CapturedCollector(tiny_env(cfg), module.policy, 200, reset_at_each_iter=False, capture=False, rehearse=True)
    batch = collector.collect()
    assert batch.batch_size == torch.Size([4, 50])


def test_the_captured_collector_refuses_a_non_vmas_env_and_a_cpu_capture():
    cfg = tiny_config("ppo", env="gym/CartPole-v1")
    module = algo_class("ppo")(cfg, tiny_env(cfg))
    with pytest.raises(UsageError, match="VMAS envs only"):
        CapturedCollector(tiny_env(cfg), module.policy, 100, reset_at_each_iter=False)
    cfg = tiny_config("mappo")
    module = algo_class("mappo")(cfg, tiny_env(cfg))
    with pytest.raises(UsageError, match="env.device=cuda"):
        CapturedCollector(tiny_env(cfg), module.policy, 100, reset_at_each_iter=False)
