"""Distributed RL on Ray: a worker pool with restarts, evolution strategies, a parameter server.

Ray is an extra (`pip install -e ".[distributed]"`); nothing else in ca12 imports this package,
and Ray itself is imported only when a pool starts, with a one-line error when it is missing.
The same code runs on a local Ray instance (started here, sized to this machine) and on a
cluster: `ray.init(address=...)` before using it, or `RAY_ADDRESS` in the environment, and
the workers are placed on the cluster's nodes by Ray.

The course's API (A3C; `--algo a3c` runs the same server and worker code under Lightning; the
A3C worker lives with its algorithm, `ca12.algos.a3c.A3CWorker`, as it rebuilds that module):

    module = ca12.algos.a3c.A3C(cfg, ca12.envs.make_spec_env(cfg.env, 0))
    server = ParameterServer(module, optimizer="adam", lr=7e-4, mode="async", max_staleness=4)
    workers = [A3CWorker(server, functools.partial(ca12.envs.make_env, cfg.env, seed), index=i, seed=seed) for i, seed in ...]
    stats = server.start_training(workers, num_episodes=500)
"""

from __future__ import annotations

from ca12.distributed.es_gradient import centred_ranks, es_gradient, perturbation
from ca12.distributed.parameter_server import GradientMessage, ParameterServer, RemoteWorker, Round
from ca12.distributed.pool import WorkerPool, require_ray

__all__ = ["GradientMessage", "ParameterServer", "RemoteWorker", "Round", "WorkerPool", "centred_ranks", "es_gradient", "perturbation", "require_ray"]
