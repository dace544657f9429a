"""A pool of Ray actors that survives dying workers (Ray's actor restarts and task retries).

Written on Ray's own primitives (remote actors, `ray.wait`, `max_restarts`,
`max_task_retries`): no sockets or process pools of ca12's own. A worker that dies is restarted
by Ray and its unfinished call is run again on the new process (calls must therefore be
repeatable: ES evaluations and gradient computations are, given their arguments); a worker
whose restarts are used up is dropped and the pool goes on with the others.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator, Sequence

from ca12.errors import UsageError


def require_ray():
    """The `ray` module, or a one-line `UsageError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError('this needs Ray, an extra: pip install -e ".[distributed]"') from None
    return ray


def remote_class(worker_class: type, max_restarts: int = 3, num_cpus: float = 0.5):
    """`worker_class` as a Ray actor class that Ray restarts `max_restarts` times when its process
    dies, retrying the call it was running as often."""
    ray = init_ray()
    return ray.remote(max_restarts=max_restarts, max_task_retries=max_restarts, num_cpus=num_cpus)(worker_class)


def init_ray(num_cpus: int | None = None):
    """Connect to the Ray instance of `RAY_ADDRESS` or one started earlier (`ray.init(...)`), else
    start a local one (`num_cpus`, default this machine's); returns the `ray` module."""
    ray = require_ray()
    if not ray.is_initialized():
        kwargs = {} if os.environ.get("RAY_ADDRESS") else {"num_cpus": num_cpus}
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False, **kwargs)
    return ray


class WorkerPool:
    """`n` Ray actors of `worker_class`, worker i built with `make_args(i)` (args, kwargs).

    Args:
        worker_class: a plain class; Ray runs each instance in its own process (anywhere on
            the cluster).
        n: number of workers.
        make_args: i -> (args, kwargs) of worker i's constructor.
        max_restarts: times Ray restarts a dead worker (0: a dead worker is dropped at once).
        num_cpus: CPUs Ray reserves per worker (fractions share a core).
    """

    def __init__(self, worker_class: type, n: int, make_args: Callable[[int], tuple[Sequence, dict]], max_restarts: int = 3, num_cpus: float = 0.5):
        if n < 1:
            raise UsageError(f"a worker pool needs at least one worker, got {n}")
        remote = remote_class(worker_class, max_restarts, num_cpus)
        self.ray = init_ray()
        self.workers: list = []
        for i in range(n):
            args, kwargs = make_args(i)
            self.workers.append(remote.remote(*args, **kwargs))
        self.dropped = 0

    @classmethod
    def of(cls, actors: Sequence) -> "WorkerPool":
        """A pool of Ray actors started elsewhere (e.g. `remote_class(...).remote(...)`); its
        `shutdown` kills them."""
        if not actors:
            raise UsageError("a worker pool needs at least one worker, got none")
        pool = cls.__new__(cls)
        pool.ray, pool.workers, pool.dropped = init_ray(), list(actors), 0
        return pool

    def __len__(self) -> int:
        return len(self.workers)

    def _drop(self, worker) -> None:
        self.workers.remove(worker)
        self.dropped += 1
        if not self.workers:
            raise RuntimeError("every worker of the pool died and none could be restarted")

    def map(self, method: str, calls: Sequence[tuple[Sequence, dict]]) -> list[Any]:
        """Run `calls` (args, kwargs) of `method` spread over the live workers; results in call
        order. A call whose worker is dropped runs again on another worker."""
        results: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))
        running: dict = {}  # object ref -> (call index, worker)
        while pending or running:
            idle = [w for w in self.workers if w not in {v[1] for v in running.values()}]
            while pending and idle:
                i, worker = pending.pop(0), idle.pop(0)
                args, kwargs = calls[i]
                running[getattr(worker, method).remote(*args, **kwargs)] = (i, worker)
            done, _ = self.ray.wait(list(running), num_returns=1)
            i, worker = running.pop(done[0])
            try:
                results[i] = self.ray.get(done[0])
            except self.ray.exceptions.RayActorError:  # restarts used up: drop it, rerun the call
                self._drop(worker)
                pending.insert(0, i)
        return results

    def as_completed(
        self, method: str, first_call: Callable[[int], tuple[Sequence, dict]], next_call: Callable[[Any], tuple[Sequence, dict]]
    ) -> Iterator[Any]:
        """Every worker runs `method` over and over: first with `first_call(i)`, then, each time
        a result arrives, again with `next_call(result)` (e.g. with the newest weights). Yields
        results in arrival order (asynchronous workers: A3C, a parameter server). A worker's
        next call is made when the consumer asks for the next result, so it sees what the
        consumer did with this one (a parameter server's step on its gradient); a consumer that
        stops leaves the other workers' calls running, their results unread."""
        running = {}
        for i, worker in enumerate(self.workers):
            args, kwargs = first_call(i)
            running[getattr(worker, method).remote(*args, **kwargs)] = worker
        while running:
            done, _ = self.ray.wait(list(running), num_returns=1)
            worker = running.pop(done[0])
            try:
                result = self.ray.get(done[0])
            except self.ray.exceptions.RayActorError:
                self._drop(worker)
                continue
            yield result
            args, kwargs = next_call(result)
            running[getattr(worker, method).remote(*args, **kwargs)] = worker

    def call_all(self, method: str, *args, **kwargs) -> list[Any]:
        """`method(*args, **kwargs)` on every live worker (e.g. to seed or configure them)."""
        return self.ray.get([getattr(w, method).remote(*args, **kwargs) for w in self.workers])

    def shutdown(self) -> None:
        for worker in self.workers:
            self.ray.kill(worker, no_restart=True)
        self.workers = []
