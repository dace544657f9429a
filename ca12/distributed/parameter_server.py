"""A parameter server for asynchronous (A3C) and synchronous gradient workers.

The server holds the parameters and their optimiser; workers pull a copy of the parameters,
compute a gradient on their own data and push it back, tagged with the version they pulled
(Mnih et al. 2016, "Asynchronous Methods for Deep Reinforcement Learning", Algorithm S3: each
actor-learner accumulates an n-step gradient against its thread-specific copy theta' and
applies it to the shared theta; Dean et al. 2012, "Large Scale Distributed Deep Networks", for
the parameter-server split). The version counts the server's optimiser steps, so a gradient
pushed at version v reaches a server at version V with staleness V - v.

* `mode="async"`: each gradient is applied when it arrives (A3C); with one worker this is
  synchronous A2C, step for step.
* `mode="sync"`: a round gathers one gradient from every live worker against the same version,
  averages them and steps once (A2C across processes).
* `max_staleness`: a gradient older than that many versions is dropped and counted, not applied.

Workers are Ray actors (`ca12.distributed.pool`): Ray restarts a dead one and reruns its call
(`max_restarts`), or the pool drops it when its restarts are used up and training goes on with
the others. The server lives in the process that trains (the driver), so a dying worker takes
nothing learned with it. The same code runs on a local Ray instance and on a cluster
(`ray.init(address=...)` first: Ray places the workers on the nodes).

Written by hand on Ray's actors: no maintained library offers a torch parameter server with
staleness bounds (Ray's own parameter-server example is a tutorial, not an API).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Iterator, Sequence

import torch
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from ca12.distributed.pool import WorkerPool, remote_class
from ca12.errors import UsageError

MODES = ("async", "sync")
# The A3C paper's optimiser is RMSProp without momentum (its "shared RMSProp"; alpha 0.99, and eps 1e-5 as
# Stable-Baselines3's A2C). Asynchronous updates add momentum of their own (Mitliagkas et al. 2016,
# "Asynchrony begets momentum"), which Adam's first moment compounds.
OPTIMISERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "rmsprop": partial(torch.optim.RMSprop, alpha=0.99, eps=1e-5)}


def make_optimiser(kind: str, parameters: Sequence[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Adam, SGD or RMSProp over `parameters` (the server's, and `--algo a3c`'s `algo.optimizer`)."""
    if kind not in OPTIMISERS:
        raise UsageError(f"unknown optimiser '{kind}'; choose one of: {', '.join(OPTIMISERS)}")
    return OPTIMISERS[kind](parameters, lr=lr)


def set_gradients(params: Sequence[nn.Parameter], gradient: torch.Tensor) -> None:
    """Each parameter's `.grad` from its slice of a flat gradient [D] in `params`' order (the
    inverse of `parameters_to_vector` for gradients)."""
    offset = 0
    for p in params:
        p.grad = gradient[offset : offset + p.numel()].view_as(p).to(device=p.device, dtype=p.dtype)
        offset += p.numel()


@dataclass
class GradientMessage:
    """What a worker pushes: its gradient of the loss [D] (flat, in the server's parameter
    order), the version of the parameters it used, and what its batch held."""

    gradient: torch.Tensor
    version: int
    frames: int = 0
    episode_returns: torch.Tensor = field(default_factory=lambda: torch.zeros(0))  # returns of the episodes that ended
    terms: dict = field(default_factory=dict)  # loss terms (floats)
    worker: int = 0  # the worker's index
    pid: int = 0  # its process (a restarted worker has a new one)
    node: str = ""  # its Ray node ("" outside Ray)


@dataclass
class Round:
    """The gradients the server takes in one go: one (async) or one per live worker (sync)."""

    messages: list[GradientMessage]
    workers_alive: int


class ParameterServer:
    """Parameters, their optimiser, a version counter and staleness bookkeeping.

    Args:
        model: the module whose parameters the server holds. For A3C it is a ca12 `A3C` module
            (`ca12.algos.a3c.A3C(cfg, env)`): the server holds its actors' and critics'
            parameters (`model.server_parameters()`), and `A3CWorker`s rebuild the same module
            in their own processes from `model.run_config`. Any other module: all its parameters.
        model_dim: instead of `model`, a flat parameter vector of this size (zeros), for workers
            of your own that compute gradients of a flat vector.
        optimizer: "adam", "sgd", or an optimiser object over the same parameters.
        lr: learning rate of a named optimiser.
        mode: "async" (apply each gradient on arrival) or "sync" (average one per worker, step).
        max_staleness: drop gradients computed more than this many versions ago (None: keep all).
        max_grad_norm: clip of each applied gradient's norm (None: no clip).
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        model_dim: int | None = None,
        optimizer: Any = "adam",
        lr: float = 1e-3,
        mode: str = "async",
        max_staleness: int | None = None,
        max_grad_norm: float | None = None,
    ):
        if (model is None) == (model_dim is None):
            raise UsageError("ParameterServer takes a model or a model_dim, exactly one of them")
        if mode not in MODES:
            raise UsageError(f"unknown parameter-server mode '{mode}'; choose one of: {', '.join(MODES)}")
        if max_staleness is not None and max_staleness < 0:
            raise UsageError(f"max_staleness must be >= 0 (or None: no bound), got {max_staleness}")
        if model_dim is not None and model_dim < 1:
            raise UsageError(f"model_dim must be >= 1, got {model_dim}")
        self.model = model
        if model is None:
            self.params = [nn.Parameter(torch.zeros(model_dim))]
        else:
            self.params = list(model.server_parameters() if hasattr(model, "server_parameters") else model.parameters())
        self.optimizer = make_optimiser(optimizer, self.params, lr) if isinstance(optimizer, str) else optimizer
        self.mode, self.max_staleness, self.max_grad_norm = mode, max_staleness, max_grad_norm
        self._held: list[torch.Tensor] = []  # a sync round's accepted gradients
        self.version = 0  # optimiser steps taken
        self.received = 0  # gradients pushed
        self.dropped = 0  # of which too stale
        self.nonfinite = 0  # of which NaN/inf (never applied)
        self.staleness_sum = 0
        self.staleness_max = 0

    @property
    def dim(self) -> int:
        return sum(p.numel() for p in self.params)

    # --- the server's protocol -----------------------------------------------------------------
    def pull(self) -> tuple[torch.Tensor, int]:
        """A copy of the parameters (flat [D], CPU) and their version."""
        return parameters_to_vector(self.params).detach().cpu().clone(), self.version

    def push(self, gradient: torch.Tensor, version: int) -> bool:
        """Take a worker's gradient [D] computed at `version`: async applies it now, sync holds it
        for `commit`. False when it was dropped (older than `max_staleness`, or not finite)."""
        if gradient.numel() != self.dim:
            raise UsageError(f"a pushed gradient has {gradient.numel()} entries, the server's parameters {self.dim}")
        staleness = self.version - version
        self.received += 1
        self.staleness_sum += staleness
        self.staleness_max = max(self.staleness_max, staleness)
        if self.max_staleness is not None and staleness > self.max_staleness:
            self.dropped += 1
            return False
        if not bool(torch.isfinite(gradient).all()):
            self.nonfinite += 1
            return False
        if self.mode == "sync":
            self._held.append(gradient)
        else:
            self.apply(gradient)
        return True

    def commit(self) -> bool:
        """End a sync round: one step on the mean of the held gradients (False: none held)."""
        if not self._held:
            return False
        gradient = torch.stack(self._held).mean(0)
        self._held = []
        self.apply(gradient)
        return True

    def apply(self, gradient: torch.Tensor) -> torch.Tensor:
        """One optimiser step on `gradient` [D] (its norm clipped at `max_grad_norm`); returns the
        norm before clipping."""
        set_gradients(self.params, gradient)
        if self.max_grad_norm is not None:
            self.grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        else:
            self.grad_norm = torch.nn.utils.get_total_norm([p.grad for p in self.params])
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.version += 1
        return self.grad_norm

    def receive(self, batch: Round) -> dict:
        """Push a round's gradients in arrival order (and commit it in sync mode); returns the
        round's staleness (mean, max), the steps taken and their mean gradient norm (NaN: none)."""
        version, staleness, norms = self.version, [], []
        for message in batch.messages:
            staleness.append(self.version - message.version)
            if self.push(message.gradient, message.version) and self.mode == "async":
                norms.append(float(self.grad_norm))
        if self.mode == "sync" and self.commit():
            norms.append(float(self.grad_norm))
        return {
            "staleness": sum(staleness) / len(staleness),
            "staleness_max": max(staleness),
            "steps": self.version - version,
            "grad_norm": sum(norms) / len(norms) if norms else float("nan"),
        }

    # --- workers -------------------------------------------------------------------------------
    def rounds(self, pool: WorkerPool) -> Iterator[Round]:
        """The pool's gradients, forever: async, each as it arrives (its worker's next call gets
        the parameters after the server took it); sync, one per live worker, all against the
        current parameters. Workers answer `gradient(theta, version) -> GradientMessage`."""
        if self.mode == "sync":
            while True:
                call = (self.pull(), {})
                yield Round(pool.map("gradient", [call] * len(pool)), len(pool))
        newest = lambda *_: (self.pull(), {})  # noqa: E731
        for message in pool.as_completed("gradient", newest, newest):
            yield Round([message], len(pool))

    def start_training(self, workers: Sequence["RemoteWorker"], num_episodes: int | None = None, max_updates: int | None = None) -> dict:
        """Train with `workers` until they have finished `num_episodes` episodes or the server
        took `max_updates` steps in this call, whichever comes first.

        Returns the run's statistics: `updates` (steps in this call), `version`, `received`,
        `dropped_gradients`, `nonfinite_gradients`, `staleness_mean`/`staleness_max` (over the
        server's life), `episodes`, `frames`, `episode_returns` (in order), `workers_alive`,
        `workers_dropped`, `processes` (worker index -> the process ids its gradients came from,
        in order: a restarted worker has more than one), `nodes` (the Ray nodes gradients came
        from), `seconds`.
        """
        if num_episodes is None and max_updates is None:
            raise UsageError("start_training needs num_episodes or max_updates (or both) to know when to stop")
        if not workers:
            raise UsageError("start_training needs at least one worker")
        pool, start, first_version = WorkerPool.of([w.actor for w in workers]), time.perf_counter(), self.version
        episodes, frames, returns, processes, nodes = 0, 0, [], {}, set()
        for batch in self.rounds(pool):
            self.receive(batch)
            for message in batch.messages:
                episodes, frames = episodes + message.episode_returns.numel(), frames + message.frames
                returns.extend(message.episode_returns.tolist())
                nodes.add(message.node)
                pids = processes.setdefault(message.worker, [])
                if message.pid not in pids:
                    pids.append(message.pid)
            if (num_episodes is not None and episodes >= num_episodes) or (max_updates is not None and self.version - first_version >= max_updates):
                break
        return {
            "updates": self.version - first_version,
            **self.counters(),
            "episodes": episodes,
            "frames": frames,
            "episode_returns": returns,
            "workers_alive": len(pool),
            "workers_dropped": pool.dropped,
            "processes": processes,
            "nodes": sorted(nodes),
            "seconds": time.perf_counter() - start,
        }

    # --- checkpoints ---------------------------------------------------------------------------
    def counters(self) -> dict:
        """The version and staleness counters (plain values; `state_dict` adds parameters and optimiser)."""
        mean = self.staleness_sum / self.received if self.received else 0.0
        return {
            "version": self.version,
            "received": self.received,
            "dropped_gradients": self.dropped,
            "nonfinite_gradients": self.nonfinite,
            "staleness_sum": self.staleness_sum,
            "staleness_mean": mean,
            "staleness_max": self.staleness_max,
        }

    def load_counters(self, counters: dict) -> None:
        self.version, self.received = counters["version"], counters["received"]
        self.dropped, self.nonfinite = counters["dropped_gradients"], counters["nonfinite_gradients"]
        self.staleness_sum, self.staleness_max = counters["staleness_sum"], counters["staleness_max"]

    def state_dict(self) -> dict:
        """Parameters (flat), optimiser state and counters: all a resumed server needs (a copy:
        torch's optimiser state dict shares its tensors with the live optimiser)."""
        return {"parameters": self.pull()[0], "optimizer": copy.deepcopy(self.optimizer.state_dict()), "counters": self.counters()}

    def load_state_dict(self, state: dict) -> None:
        if state["parameters"].numel() != self.dim:
            raise UsageError(f"a server state of {state['parameters'].numel()} parameters cannot load into a server of {self.dim}")
        with torch.no_grad():
            vector_to_parameters(state["parameters"].to(self.params[0].device), self.params)
        self.optimizer.load_state_dict(state["optimizer"])
        self.load_counters(state["counters"])


class RemoteWorker:
    """A gradient worker in a Ray actor: `body_class(*args, **kwargs)` built in its own process
    (anywhere on the cluster), answering `gradient(theta, version) -> GradientMessage`.

    Args:
        max_restarts: times Ray restarts the process when it dies, rerunning its call.
        num_cpus: CPUs Ray reserves for it (fractions share a core).
    """

    def __init__(self, body_class: type, *args, max_restarts: int = 3, num_cpus: float = 0.5, **kwargs):
        self.actor = remote_class(body_class, max_restarts, num_cpus).remote(*args, **kwargs)

    def shutdown(self) -> None:
        WorkerPool.of([self.actor]).shutdown()
