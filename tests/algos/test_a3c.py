"""A3C and its parameter server: gradients applied on arrival or averaged per round, staleness
bounded, state round trips; `--algo a3c` resumes bit for bit in process; on Ray, one worker equals
synchronous A2C step for step (standalone API and `ca12.fit`), a killed worker is restarted with
nothing learned lost, one out of restarts is dropped and training goes on. One local Ray
instance for the module (xdist group "ray"); the two-node cluster is tests/algos/test_ray_cluster.py."""

from __future__ import annotations

import csv
import os
import sys
import time
from functools import partial
from pathlib import Path

import pytest
import torch
from conftest import resume_pair
from torch import nn
from torch.nn.utils import parameters_to_vector

import ca12.algos.a3c as a3c
from ca12.algos.a3c import A3CWorker
from ca12.distributed import GradientMessage, ParameterServer, Round
from ca12.envs import make_env, make_spec_env
from ca12.errors import UsageError
from ca12.fit import main
from ca12.run.config import load_config

ray = pytest.importorskip("ray", reason="Ray is part of the test extra")
pytestmark = pytest.mark.xdist_group("ray")

# CartPole, 2 worlds x 20 steps a gradient (whole episodes of 20 steps: exact resume in process).
A3C_TINY = [
    "--env",
    "gym/CartPole-v1",
    "env.num_envs=2",
    "env.max_steps=20",
    "collector.frames_per_batch=40",
    "model.hidden_sizes=[8]",
    "critic_model.hidden_sizes=[8]",
    "logger=csv",
    "eval.every_n_iters=0",
]
A3C_CFG = [a for a in A3C_TINY if "=" in a]  # the overrides alone, for load_config


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    DyingGradientWorker.markers = tmp_path_factory.mktemp("markers")  # before Ray pickles the class
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # DyingGradientWorker, by value
    yield
    ray.shutdown()


def _rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _message(gradient: list[float], version: int) -> GradientMessage:
    return GradientMessage(torch.tensor(gradient), version)


# --- the server alone --------------------------------------------------------------------------------
def test_async_server_applies_each_gradient_on_arrival_and_drops_the_too_stale():
    server = ParameterServer(model_dim=3, optimizer="sgd", lr=0.5, max_staleness=1)
    theta, version = server.pull()
    assert torch.equal(theta, torch.zeros(3)) and version == 0
    assert server.push(torch.tensor([1.0, 2.0, 3.0]), 0)  # staleness 0: theta = -0.5 g
    assert server.push(torch.tensor([1.0, 0.0, 0.0]), 0)  # staleness 1 <= max_staleness: applied
    assert not server.push(torch.tensor([5.0, 5.0, 5.0]), 0)  # staleness 2: dropped, never applied
    assert not server.push(torch.tensor([float("nan"), 0.0, 0.0]), 2)  # not finite: never applied
    assert torch.equal(server.pull()[0], torch.tensor([-1.0, -1.0, -1.5])) and server.version == 2
    counters = server.counters()
    assert (counters["received"], counters["dropped_gradients"], counters["nonfinite_gradients"], counters["staleness_max"]) == (4, 1, 1, 2)
    assert counters["staleness_mean"] == (0 + 1 + 2 + 0) / 4


def test_sync_server_averages_one_gradient_per_worker_then_steps_once():
    server = ParameterServer(model_dim=2, optimizer="sgd", lr=1.0, mode="sync", max_grad_norm=100.0)
    stats = server.receive(Round([_message([1.0, 0.0], 0), _message([3.0, 2.0], 0)], workers_alive=2))
    assert torch.equal(server.pull()[0], torch.tensor([-2.0, -1.0])) and server.version == 1
    assert stats["steps"] == 1 and stats["staleness_max"] == 0 and stats["grad_norm"] == pytest.approx(5**0.5)


def test_the_applied_gradient_is_clipped_at_max_grad_norm():
    server = ParameterServer(model_dim=2, optimizer="sgd", lr=1.0, max_grad_norm=1.0)
    server.push(torch.tensor([30.0, 40.0]), 0)
    torch.testing.assert_close(server.pull()[0], torch.tensor([-0.6, -0.8]))


def test_rmsprop_is_the_papers_optimiser_without_momentum():
    """RMSProp (alpha 0.99, eps 1e-5): the first step is lr g / (sqrt(0.01 g^2) + eps)."""
    server = ParameterServer(model_dim=2, optimizer="rmsprop", lr=0.01)
    g = torch.tensor([2.0, -0.5])
    server.push(g, 0)
    torch.testing.assert_close(server.pull()[0], -0.01 * g / (0.1 * g.abs() + 1e-5))
    assert not any("momentum_buffer" in state for state in server.optimizer.state.values())


def test_server_state_round_trips_parameters_optimiser_and_counters():
    torch.manual_seed(0)
    servers = [ParameterServer(nn.Linear(3, 2), optimizer="adam", lr=0.1, max_staleness=5) for _ in range(2)]
    for version, g in enumerate(torch.randn(3, 8)):
        servers[0].push(g, max(version - 1, 0))
    servers[1].load_state_dict(servers[0].state_dict())
    assert servers[1].counters() == servers[0].counters() and servers[1].version == 3
    g = torch.randn(8)
    for server in servers:
        server.push(g, 3)  # Adam's moments came along: the same step on both
    assert torch.equal(servers[0].pull()[0], servers[1].pull()[0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "takes a model or a model_dim, exactly one of them"),
        ({"model_dim": 3, "model": nn.Linear(1, 1)}, "exactly one of them"),
        ({"model_dim": 3, "mode": "hogwild"}, "unknown parameter-server mode 'hogwild'; choose one of: async, sync"),
        ({"model_dim": 3, "optimizer": "lbfgs"}, "unknown optimiser 'lbfgs'; choose one of: adam, sgd, rmsprop"),
        ({"model_dim": 3, "max_staleness": -1}, "max_staleness must be >= 0"),
    ],
)
def test_bad_server_input_is_refused_in_one_line(kwargs, message):
    with pytest.raises(UsageError, match=message):
        ParameterServer(**kwargs)
    with pytest.raises(UsageError, match="has 2 entries, the server's parameters 3"):
        ParameterServer(model_dim=3).push(torch.zeros(2), 0)
    with pytest.raises(UsageError, match="needs num_episodes or max_updates"):
        ParameterServer(model_dim=3).start_training([object()])
    with pytest.raises(UsageError, match="A3CWorker needs a server built on a ca12 A3C module"):
        A3CWorker(ParameterServer(model_dim=3), lambda: None)


# --- --algo a3c in the training process ------------------------------------------------------------
def test_a3c_in_process_trains_and_resumes_bit_for_bit(tmp_path):
    a, b, one_go, split = resume_pair(tmp_path, "a3c", [*A3C_TINY, "algo.workers=0"], 160)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    rows = _rows(one_go)
    assert [float(r["time/frames"]) for r in rows] == [40.0, 80.0, 120.0, 160.0]
    assert [float(r["train/version"]) for r in rows] == [1.0, 2.0, 3.0, 4.0] and {r["train/staleness"] for r in rows} == {"0.0"}
    saved = torch.load(split / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["a3c"]["version"] == 4 and saved["a3c"]["received"] == 4, "the server's counters resume"


def test_a_sync_round_that_does_not_split_into_whole_steps_is_refused(capsys):
    assert main(["--algo", "a3c", *A3C_TINY, "algo.mode=sync", "algo.workers=3"]) == 2
    assert (
        "each worker's batch of 13 frames (collector.frames_per_batch / algo.workers) must be a multiple of env.num_envs=2" in capsys.readouterr().err
    )


# --- on Ray -----------------------------------------------------------------------------------------
def test_one_async_worker_equals_synchronous_a2c_step_for_step(local_ray):
    """The server with one Ray worker against a plain loop in this process: the same worker class
    and seed computes each gradient at the loop's current parameters, clipped, then one Adam step.
    After every call the server's parameters equal the loop's bit for bit, and no gradient was stale."""
    cfg = load_config("a3c", "gym/CartPole-v1", A3C_CFG)
    modules = []
    for _ in range(2):
        torch.manual_seed(0)
        modules.append(a3c.A3C(cfg, make_spec_env(cfg.env, 0)))
    server = ParameterServer(modules[0], optimizer="adam", lr=cfg.algo.lr, max_grad_norm=cfg.algo.max_grad_norm)
    env_creator = partial(make_env, cfg.env, 3)
    worker = A3CWorker(server, env_creator, index=0, seed=3)
    local = a3c.GradientWorker(modules[1].run_config, env_creator, 0, 3)
    params = modules[1].server_parameters()
    optimiser = torch.optim.Adam(params, lr=cfg.algo.lr)
    try:
        for updates in (1, 1, 3):
            stats = server.start_training([worker], max_updates=updates)
            for _ in range(updates):
                message = local.gradient(parameters_to_vector(params).detach(), 0)
                offset = 0
                for p in params:
                    p.grad = message.gradient[offset : offset + p.numel()].view_as(p)
                    offset += p.numel()
                torch.nn.utils.clip_grad_norm_(params, cfg.algo.max_grad_norm)
                optimiser.step()
            for p, q in zip(server.params, params):
                assert torch.equal(p, q)
            assert stats["updates"] == updates and stats["staleness_max"] == 0 and stats["frames"] == 40 * updates
    finally:
        worker.shutdown()
    assert server.version == 5


def test_a3c_fit_on_one_ray_worker_equals_the_in_process_worker(local_ray, tmp_path):
    local, remote = tmp_path / "local", tmp_path / "remote"
    args = ["--algo", "a3c", *A3C_TINY, "collector.total_frames=120"]
    assert main([*args, "--run-dir", str(local), "algo.workers=0"]) == 0
    assert main([*args, "--run-dir", str(remote), "algo.workers=1"]) == 0
    a, b = (torch.load(run / "checkpoints" / "last.ckpt", weights_only=True) for run in (local, remote))
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert a["a3c"] == b["a3c"]
    assert _rows(remote)[-1]["train/workers_alive"] == "1.0"


def _armed(worker_class: type) -> type:
    """Arm the dying worker for this test."""
    (worker_class.markers / "died").unlink(missing_ok=True)
    (worker_class.markers / "armed").touch()
    return worker_class


class DyingGradientWorker(a3c.GradientWorker):
    """Worker 0 kills its own process at its second gradient while `markers/armed` exists, once
    (`markers/died` says it did). Ray keeps the class as first pickled: the directory is set once.
    The other workers hold their gradients until then (at most a minute): otherwise, when worker 0
    is slow to start, they can deliver every gradient of a short run before its second call."""

    markers = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0

    def gradient(self, *args, **kwargs):
        self.calls += 1
        armed, died = (self.markers / "armed").exists(), self.markers / "died"
        if self.index == 0 and self.calls == 2 and armed and not died.exists():
            died.touch()
            os._exit(1)
        deadline = time.monotonic() + 60
        while self.index != 0 and armed and not died.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return super().gradient(*args, **kwargs)


def test_a_killed_worker_is_restarted_and_nothing_learned_is_lost(local_ray, tmp_path, monkeypatch):
    cfg = load_config("a3c", "gym/CartPole-v1", A3C_CFG)
    server = ParameterServer(a3c.A3C(cfg, make_spec_env(cfg.env, 0)), lr=1e-2)
    start = server.pull()[0]
    monkeypatch.setattr(a3c, "GradientWorker", _armed(DyingGradientWorker))
    workers = [A3CWorker(server, partial(make_env, cfg.env, i), index=i, seed=i, max_restarts=1) for i in range(2)]
    died, updates, deadline = DyingGradientWorker.markers / "died", 0, time.monotonic() + 120
    try:
        before = ray.get(workers[0].actor.gradient.remote(*server.pull()))  # worker 0's first gradient; its second kills it
        while not died.exists() and time.monotonic() < deadline:  # until worker 0 has died mid-run
            stats = server.start_training(workers, max_updates=4)
            updates += stats["updates"]
            assert stats["workers_alive"] == 2 and stats["workers_dropped"] == 0
        stats = server.start_training(workers, max_updates=4)  # training goes on
        updates += stats["updates"]
        theta, version = server.pull()
        after = ray.get(workers[0].actor.gradient.remote(theta, version))  # the restarted worker answers
    finally:
        for worker in workers:
            worker.shutdown()
    assert died.exists(), "worker 0 died mid-run"
    assert after.pid != before.pid, "worker 0 came back in a new process"
    assert after.gradient.shape == theta.shape and torch.isfinite(after.gradient).all()
    assert updates == server.version and server.dropped == 0 and stats["workers_alive"] == 2
    steps = [state["step"] for state in server.optimizer.state.values()]
    assert steps and all(int(s) == updates for s in steps), "every step, before and after the death, is in the optimiser"
    assert not torch.equal(server.pull()[0], start) and torch.isfinite(server.pull()[0]).all()


def test_a_worker_out_of_restarts_is_dropped_and_the_run_trains_on(local_ray, tmp_path, monkeypatch):
    monkeypatch.setattr(a3c, "GradientWorker", _armed(DyingGradientWorker))
    run_dir = tmp_path / "run"
    assert main(["--algo", "a3c", *A3C_TINY, "collector.total_frames=480", "algo.workers=2", "algo.max_restarts=0", "--run-dir", str(run_dir)]) == 0
    assert (DyingGradientWorker.markers / "died").exists(), "worker 0 died mid-run"
    rows = _rows(run_dir)
    alive = [float(r["train/workers_alive"]) for r in rows]
    assert alive[0] == 2.0 and alive[-1] == 1.0 and len(rows) == 12
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["ca12"]["frames"] == 480 and saved["a3c"]["version"] == 12, "every iteration's gradient was applied"
