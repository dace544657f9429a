"""Distributed RL on Ray: a worker pool with restarts, evolution strategies, a parameter server.

Ray is an extra (`pip install -e ".[distributed]"`); nothing else in ca12 imports this package,
and Ray itself is imported only when a pool starts, with a one-line error when it is missing.
The same code runs on a local Ray instance (started here, sized to this machine) and on a
cluster: `ray.init(address=...)` before using it, or `RAY_ADDRESS` in the environment, and
the workers are placed on the cluster's nodes by Ray.
"""

from __future__ import annotations

from ca12.distributed.es import centred_ranks, es_gradient, perturbation  # noqa: F401
from ca12.distributed.pool import WorkerPool, require_ray  # noqa: F401
