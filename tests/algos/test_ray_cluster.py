"""The parameter server on a Ray cluster: a two-node cluster on this machine
(`ray.cluster_utils.Cluster`, a head with no CPUs and two one-CPU nodes), joined with
`ray.init(address=...)` as on a real cluster; the A3C workers land on both nodes and train."""

from __future__ import annotations

import os
from functools import partial

import pytest
import torch

from ca12.algos.a3c import A3C, A3CWorker
from ca12.distributed import ParameterServer
from ca12.envs import make_env, make_spec_env
from ca12.run.config import load_config

ray = pytest.importorskip("ray", reason="Ray is part of the test extra")
pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture
def two_node_cluster():
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_the_parameter_server_trains_with_workers_on_both_nodes(two_node_cluster):
    cfg = load_config(
        "a3c", "gym/CartPole-v1", ["env.num_envs=2", "collector.frames_per_batch=40", "model.hidden_sizes=[8]", "critic_model.hidden_sizes=[8]"]
    )
    server = ParameterServer(A3C(cfg, make_spec_env(cfg.env, 0)), lr=1e-2)
    start = server.pull()[0]
    # One CPU each: Ray can only place them on different nodes.
    workers = [A3CWorker(server, partial(make_env, cfg.env, i), index=i, seed=i, num_cpus=1) for i in range(2)]
    try:
        stats = server.start_training(workers, max_updates=6)
        nodes = set(stats["nodes"])
        while len(nodes) < 2:  # the slower node's worker may still be starting
            stats = server.start_training(workers, max_updates=2)
            nodes.update(stats["nodes"])
    finally:
        for worker in workers:
            worker.shutdown()
    worker_nodes = {node["NodeID"] for node in ray.nodes() if node["Alive"] and node["Resources"].get("CPU", 0) == 1}
    assert len(worker_nodes) == 2 and nodes == worker_nodes, "gradients came from both worker nodes"
    assert server.version >= 6 and not torch.equal(server.pull()[0], start)
    assert stats["workers_alive"] == 2
