"""A3C (Mnih et al. 2016, "Asynchronous Methods for Deep Reinforcement Learning", Algorithm S3).

`algo.workers` actor-learners each hold a copy of the actors and critics and their own env
(`env.num_envs` worlds). A worker pulls the server's parameters theta, steps its env n times
(n = frames per gradient / env.num_envs) and computes the gradient of the n-step actor-critic
loss on those frames against its copy:

    - A_t log pi(a_t|x_t)  +  baseline_coeff * 1/2 (R_t - V(x_t))^2  -  entropy_coeff * H(pi(.|x_t)),
    R_t = sum_{k<n-t} gamma^k r_{t+k} + gamma^{n-t} V(x_n),   A_t = R_t - V(x_t)

which is IMPALA's loss on the actors' own fresh data (V-trace with rho = c = 1 is the n-step
return, truncated episodes bootstrapped): `ca12.algos.impala` computes it, nothing is written
twice. The worker pushes the gradient, tagged with the version it pulled, to the parameter
server (`ca12.distributed.ParameterServer`), which applies gradients in arrival order
(`algo.mode=async`; the version may have moved on meanwhile: `train/staleness`) or averages
one per worker and steps once (`sync`); gradients older than `algo.max_staleness` versions are
dropped (`train/dropped_gradients`).

The LightningModule is the server's state: its parameters and its Lightning optimiser are the
server's, so checkpoints hold them, and the server's counters go into `on_save_checkpoint`. The
data module owns the workers (Ray actors that Ray restarts when they die, or that are dropped,
`train/workers_alive`; `algo.workers=0` runs one worker in the training process, no Ray, which
is synchronous A2C) and yields one `Round` of gradients per iteration.
`collector.frames_per_batch` is the frames of one iteration: one worker's batch (async) or the
round's, split among the workers (sync).
"""

from __future__ import annotations

import os
import sys
from functools import partial
from typing import Callable

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from torch.nn.utils import vector_to_parameters
from torchrl.envs import EnvBase

from ca12.algos.impala import IMPALA
from ca12.data.collectors import make_collector, seeded_worker_env, worker_seed
from ca12.data.rollout import RolloutDataModule, one_batch_loader
from ca12.distributed.parameter_server import GradientMessage, ParameterServer, RemoteWorker, Round
from ca12.distributed.pool import WorkerPool
from ca12.envs import make_spec_env
from ca12.errors import NonFiniteError, UsageError

# On a worker's own fresh data the importance weights are 1: IMPALA's clips never bind.
ON_POLICY_VTRACE = {"clip_rho": 1.0, "clip_pg_rho": 1.0, "clip_c": 1.0, "lmbda": 1.0}  # lmbda 1: the n-step return


def worker_frames(cfg: DictConfig) -> int:
    """Frames per gradient of one worker: the iteration's (async), or its share of a round (sync)."""
    share = max(cfg.algo.workers, 1) if cfg.algo.mode == "sync" else 1
    return cfg.collector.frames_per_batch // share


class GradientWorker:
    """An actor-learner: its own env and copy of the networks; runs in a Ray worker process (or in
    the training process with `algo.workers=0`). Built from the run config alone."""

    def __init__(self, run_config: dict, env_creator: Callable[[], EnvBase], index: int = 0, seed: int = 0, frames_per_batch: int | None = None):
        cfg = OmegaConf.create(run_config)
        self.index = index
        self.module = A3C(cfg, make_spec_env(cfg.env, seed))
        self.params = self.module.server_parameters()
        env = seeded_worker_env(lambda *_: env_creator(), seed, None)
        frames = frames_per_batch or worker_frames(cfg)
        aligned = (frames // env.batch_size.numel()) % cfg.env.max_steps == 0  # whole episodes: reset at each batch (exact resume)
        self.collector = make_collector("sync", 1, None, env, self.module.policy, frames, seed, env.device, aligned)
        self._batches = iter(self.collector)

    def gradient(self, theta: torch.Tensor, version: int) -> GradientMessage:
        """The n-step actor-critic gradient [D] on the next batch, acting with parameters `theta`."""
        with torch.no_grad():
            vector_to_parameters(theta, self.params)
            self.module.version.version.fill_(version)
        batch = next(self._batches)  # [num_envs, n]
        self.module.compute_targets(batch)
        loss, terms = self.module.loss(batch.reshape(-1))
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        gradient = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, self.params)])
        done = batch["next", "done"].squeeze(-1)  # [B, T]
        returns = self.module.team_returns(batch).squeeze(-1)  # [B, T]
        return GradientMessage(
            gradient.detach().cpu(),
            version,
            batch.numel(),
            returns[done].detach().cpu(),
            {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()}},
            self.index,
            os.getpid(),
            _node(),
        )


class A3CWorker(RemoteWorker):
    """An A3C actor-learner (Mnih et al. 2016) as a Ray actor: it rebuilds the server's A3C module
    from `server.model.run_config`, steps its own env (`env_creator()`, a batched TorchRL env of
    ca12's, e.g. `functools.partial(ca12.envs.make_env, cfg.env, seed)`) for n steps with the
    parameters it pulled, and pushes the n-step actor-critic gradient (`ca12.algos.a3c`).

    Args:
        server: a `ParameterServer` built on a ca12 `A3C` module.
        env_creator: a picklable zero-argument callable returning the worker's env.
        index: the worker's number (in its messages; with `seed`, its torch/NumPy seed).
        seed: seeds the worker's global generators (actions are sampled from torch's).
        frames_per_batch: frames per gradient (env.num_envs x n steps; default: the run
            config's, divided among the workers in sync mode).
    """

    def __init__(
        self,
        server: ParameterServer,
        env_creator: Callable,
        index: int = 0,
        seed: int = 0,
        frames_per_batch: int | None = None,
        max_restarts: int = 3,
        num_cpus: float = 0.5,
    ):
        run_config = getattr(server.model, "run_config", None)
        if run_config is None or run_config.get("algo", {}).get("name") != "a3c":
            raise UsageError("A3CWorker needs a server built on a ca12 A3C module: ParameterServer(A3C(cfg, env))")
        super().__init__(GradientWorker, run_config, env_creator, index, seed, frames_per_batch, max_restarts=max_restarts, num_cpus=num_cpus)


def _node() -> str:
    """This process's Ray node ("" outside Ray)."""
    ray = sys.modules.get("ray")
    return ray.get_runtime_context().get_node_id() if ray is not None and ray.is_initialized() else ""


class GradientDataModule(RolloutDataModule):
    """Owns the workers (a Ray pool, or one in-process worker) and yields one `Round` of gradients
    per iteration. The in-process worker's collector and the generators are checkpointed as
    `RolloutDataModule`'s (exact resume when its batches hold whole episodes); Ray workers keep
    their env state to themselves, and a resumed run seeds them afresh (`worker_seed`)."""

    def __init__(self, cfg: DictConfig, make_env):
        super().__init__(make_env, worker_frames(cfg), cfg.seed)
        self.cfg = cfg
        self.pool: WorkerPool | None = None
        self.local: GradientWorker | None = None
        self._rounds = None

    def setup(self, stage: str) -> None:
        pass  # workers are built in `train_dataloader`, once a resumed run's frame count is known

    def train_dataloader(self):
        module, seed, workers = self.trainer.lightning_module, self.seed + self.trainer.global_rank, self.cfg.algo.workers
        if workers == 0 and self.local is None:
            self.local = GradientWorker(module.run_config, partial(self.make_env, seed), 0, seed, self.frames_per_batch)
            self.collector = self.local.collector
        elif workers and self.pool is None:
            seeds = [worker_seed(seed, i, module.frames) for i in range(workers)]
            self.pool = WorkerPool(
                GradientWorker,
                workers,
                lambda i: ((module.run_config, partial(self.make_env, seeds[i]), i, seeds[i], self.frames_per_batch), {}),
                max_restarts=self.cfg.algo.max_restarts,
            )
        return one_batch_loader(self)

    def next_batch(self) -> Round:
        self.restore_pending_state()
        server = self.trainer.lightning_module.server
        if self.pool is None:
            return Round([self.local.gradient(*server.pull())], 1)
        if self._rounds is None:
            self._rounds = server.rounds(self.pool)
        return next(self._rounds)

    def teardown(self, stage: str) -> None:
        if self.pool is not None:
            self.pool.shutdown()
        self.pool, self.local, self.collector, self._rounds = None, None, None, None


class A3C(IMPALA):
    """A3C's parameter server as a LightningModule; `training_step` applies one round of gradients."""

    @classmethod
    def make_datamodule(cls, cfg: DictConfig, make_env) -> L.LightningDataModule:
        return GradientDataModule(cfg, make_env)

    def __init__(self, cfg: DictConfig, env: EnvBase):
        frames, envs = worker_frames(cfg), cfg.env.num_envs
        if frames < envs or frames % envs:  # (async: the config already checks it)
            raise UsageError(
                f"a3c: each worker's batch of {frames} frames (collector.frames_per_batch"
                f"{' / algo.workers' if cfg.algo.mode == 'sync' else ''}) must be a multiple of env.num_envs={envs}"
            )
        super().__init__(cfg, env)
        # What IMPALA's targets read, fixed (a copy: the run config stays as composed).
        self.cfg = OmegaConf.create({**OmegaConf.to_container(self.cfg), **ON_POLICY_VTRACE})
        self.server = ParameterServer(
            self,
            optimizer=self.cfg.optimizer,
            lr=self.cfg.lr,
            mode=self.cfg.mode,
            max_staleness=self.cfg.max_staleness,
            max_grad_norm=self.cfg.max_grad_norm,
        )
        self._frames_in_batch = 0

    def server_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters the server holds and workers' gradients are over, in this order."""
        return [*self.actors.parameters(), *self.critics.parameters()]

    def configure_optimizers(self):
        return self.server.optimizer

    def frames_in(self, batch: Round) -> int:
        return sum(m.frames for m in batch.messages)

    def training_step(self, batch: Round, batch_idx: int) -> dict:
        self.server.optimizer = self.optimizers()  # Lightning's wrapper of the same optimiser: it counts the steps
        nonfinite = self.server.nonfinite
        stats = self.server.receive(batch)
        if self.server.nonfinite > nonfinite:
            if not self.cfg.skip_nonfinite:
                raise NonFiniteError(
                    f"iteration {self.iterations + 1}: a worker's gradient is not finite; stopped (set algo.skip_nonfinite=true to skip such updates)"
                )
            self.skipped_updates += self.server.nonfinite - nonfinite
        self.version.version.fill_(self.server.version)
        returns = torch.cat([m.episode_returns for m in batch.messages])
        if returns.numel():  # else the last known return (NaN until an episode ended)
            self._last_return = returns.mean().to(self._last_return.device)
        terms = {k: sum(m.terms[k] for m in batch.messages) / len(batch.messages) for k in batch.messages[0].terms}
        return {
            **{f"train/{k}": v for k, v in terms.items()},
            "train/grad_norm": stats["grad_norm"],
            "train/staleness": stats["staleness"],
            "train/staleness_max": float(stats["staleness_max"]),
            "train/dropped_gradients": float(self.server.dropped),
            "train/workers_alive": float(batch.workers_alive),
            "train/version": float(self.server.version),
            "rollout/episode_reward_mean": self._last_return,
        }

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["a3c"] = self.server.counters()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.server.load_counters(checkpoint["a3c"])


ALGORITHM = A3C
