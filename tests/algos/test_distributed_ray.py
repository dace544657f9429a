"""Ray: noise regenerated identically in every worker, a pool that restarts dead workers and
reruns their calls (or drops them and goes on), and ES on Ray workers equal to in-process ES,
also when a worker dies mid-run. One local Ray instance for the module (xdist group "ray")."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from test_es import ES_TINY

import ca12.algos.es as es_algo
from ca12.distributed.es_gradient import perturbation
from ca12.distributed.pool import WorkerPool
from ca12.fit import main

ray = pytest.importorskip("ray", reason="Ray is part of the test extra")  # present in CI: pip install -e .[test]
pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the classes below, by value
    yield
    ray.shutdown()


class Echo:
    def __init__(self, marker: str | None = None):
        self.marker = marker

    def work(self, i: int) -> tuple[int, int]:
        if self.marker and not os.path.exists(self.marker):  # the first call anywhere kills its worker
            Path(self.marker).touch()
            os._exit(1)
        return i * i, os.getpid()

    def noise(self, seed: int) -> bytes:
        return perturbation(seed, 1000).numpy().tobytes()


def test_noise_regenerated_from_a_seed_is_bit_identical_in_every_worker():
    pool = WorkerPool(Echo, 2, lambda i: ((), {}))
    try:
        remote = pool.map("noise", [((seed,), {}) for seed in (5, 5, 9)])
    finally:
        pool.shutdown()
    assert remote[0] == remote[1] == perturbation(5, 1000).numpy().tobytes()
    assert remote[2] == perturbation(9, 1000).numpy().tobytes()


def test_a_killed_worker_is_restarted_and_its_call_runs_again(tmp_path):
    pool = WorkerPool(Echo, 2, lambda i: ((str(tmp_path / "died"),), {}), max_restarts=2)
    try:
        results = pool.map("work", [((i,), {}) for i in range(6)])
    finally:
        pool.shutdown()
    assert (tmp_path / "died").exists(), "a worker died"
    assert [r[0] for r in results] == [i * i for i in range(6)] and pool.dropped == 0


def test_a_worker_out_of_restarts_is_dropped_and_the_others_finish_its_calls(tmp_path):
    pool = WorkerPool(Echo, 2, lambda i: ((str(tmp_path / "died"),), {}), max_restarts=0)
    try:
        results = pool.map("work", [((i,), {}) for i in range(6)])
        assert pool.dropped == 1 and len(pool) == 1
    finally:
        pool.shutdown()
    assert [r[0] for r in results] == [i * i for i in range(6)]
    assert len({pid for _, pid in results}) == 1, "the survivor ran every call"


class DyingFitnessWorker(es_algo.FitnessWorker):
    """Dies (the whole process) at its first evaluation after MARKER's directory says so."""

    marker = None

    def evaluate(self, *args, **kwargs):
        if self.marker and not os.path.exists(self.marker) and os.path.exists(os.path.dirname(self.marker) + "/armed"):
            Path(self.marker).touch()
            os._exit(1)
        return super().evaluate(*args, **kwargs)


def test_es_on_ray_workers_equals_in_process_es_even_when_a_worker_dies(tmp_path, monkeypatch):
    local, remote = tmp_path / "local", tmp_path / "remote"
    args = ["--algo", "es", *ES_TINY, "collector.total_frames=480"]
    assert main([*args, "--run-dir", str(local)]) == 0
    DyingFitnessWorker.marker = str(tmp_path / "died")
    (tmp_path / "armed").touch()
    monkeypatch.setattr(es_algo, "FitnessWorker", DyingFitnessWorker)
    assert main([*args, "--run-dir", str(remote), "algo.workers=2"]) == 0
    assert (tmp_path / "died").exists(), "a worker died mid-run"
    a, b = (torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for run in (local, remote))
    for key in a:
        assert torch.equal(a[key], b[key]), key
