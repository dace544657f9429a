"""The thin base every ca12 algorithm shares: config, frame counting, timing and metrics.

Subclasses build their networks from the env's specs in `__init__`, expose the acting policy
as `policy`, and do their whole update in `training_step` (manual optimisation).
"""

from __future__ import annotations

import math
import time
from typing import Callable

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDict, TensorDictBase
from torchrl.envs import EnvBase, InitTracker
from torchrl.modules import set_recurrent_mode

import ca12
from ca12.algos.fast import bounds_on_device, capture_update, make_capturable
from ca12.data import RolloutDataModule
from ca12.data.collectors import episode_aligned
from ca12.envs.common import mean_at_episode_ends
from ca12.envs.layout import AgentLayout
from ca12.errors import NonFiniteError, UsageError
from ca12.nets.builder import is_recurrent
from ca12.nets.communication import message_stats


def fused_adam(params, lr: float = 1e-3) -> torch.optim.Adam:
    """Adam with its fused kernel (CPU and CUDA): one launch per step for all parameters, and it
    honours `found_inf`, which `RLModule.optimiser_step` uses to skip a non-finite update on the
    device. `lr` is the default of parameter groups that set none (torch's 1e-3)."""
    return torch.optim.Adam(params, lr=lr, fused=True)


class NonFiniteGuard:
    """Counts non-finite optimiser updates on the device and sums each loss term, so that one
    host read per iteration (`check`) can refuse or count them and name the term that broke."""

    def __init__(self):
        self.bad: torch.Tensor | None = None
        self.term_sums: dict[tuple[str, ...], torch.Tensor] = {}

    def record(self, finite: torch.Tensor, terms) -> None:
        """`finite`: one flag per update (a scalar, or a vector for an epoch of updates)."""
        bad = (~finite).to(torch.int64).sum()
        self.bad = bad if self.bad is None else self.bad + bad
        names = tuple(k for k in terms.keys() if k.startswith("loss"))
        if names:
            values = torch.stack([terms[k].detach().sum().float() for k in names])
            self.term_sums[names] = self.term_sums[names] + values if names in self.term_sums else values

    def check(self, iteration: int, stop: bool) -> int:
        """The number of skipped (non-finite) updates since the last check; with `stop`, a
        `NonFiniteError` instead when there were any."""
        bad = 0 if self.bad is None else int(self.bad)  # the one host sync of the iteration
        sums, self.bad, self.term_sums = self.term_sums, None, {}
        if bad and stop:
            named = [(name, float(value)) for names, values in sums.items() for name, value in zip(names, values.tolist()) if not math.isfinite(value)]
            what = f"loss term '{named[0][0]}' is {named[0][1]}" if named else "the gradient is not finite"
            raise NonFiniteError(f"iteration {iteration}: {what} ({bad} update(s) skipped); stopped (set algo.skip_nonfinite=true to skip such updates)")
        return bad


class RLModule(L.LightningModule):
    """Base LightningModule for ca12 algorithms.

    Keeps `frames` (env steps x envs over all ranks) and `iterations` as checkpointed counters,
    counted in Lightning's batch hooks, and logs the timing metrics of ../shared/ARCHITECTURE.md
    around each `training_step`. A subclass builds its networks from `self.groups` (the agent
    groups it trains, from the env's specs) with the network builder, defines `policy` (the
    module the collector acts with), overrides `make_datamodule` if it does not learn from
    on-policy rollouts, and returns its metrics from `training_step`. The keys of its `algo`
    section are a schema in ca12/algos/schemas.py, apart from it so that a config is checked
    without importing torch.
    """

    # Action spaces the algorithm can act in; others are refused before training starts.
    action_spaces: tuple[str, ...] = ("continuous", "discrete")
    # Trains several agent groups at once (each its own networks); else exactly one is named.
    multi_group = False
    # Can act with a recurrent actor (model=gru|lstm).
    recurrent = False
    # Can learn with a recurrent critic (critic_model=gru|lstm).
    recurrent_critic = False

    @classmethod
    def make_datamodule(cls, cfg: DictConfig, make_env) -> L.LightningDataModule:
        """The data module this algorithm trains from (on-policy rollouts by default)."""
        return RolloutDataModule(make_env, cfg.collector.frames_per_batch, cfg.seed, episode_aligned(cfg), collector=cfg.collector)

    def __init__(self, cfg: DictConfig, env: EnvBase):
        """
        Args:
            cfg: the whole (validated) run config; the algorithm's keys are `cfg.algo`.
            env: an env to read specs from (never stepped here).
        """
        super().__init__()
        self.automatic_optimization = False
        self.cfg = cfg.algo
        self.model_cfg, self.critic_model_cfg = cfg.model, cfg.critic_model
        self.layout = AgentLayout.from_env(env)
        self.groups = self.layout.select(cfg.algo.groups) if self.multi_group else [self.layout.only(cfg.algo.name, cfg.algo.groups)]
        self._check(cfg)
        self.frames = 0
        self.iterations = 0
        self.skipped_updates = 0
        self._guard = NonFiniteGuard()
        self._fast: dict = {}  # fast-path updates by name (ca12/algos/fast.py)
        self._direct_steps = False
        self._lean_steps = False  # set at the start of training (`optimiser_step`)
        # The whole resolved run config; saved so a checkpoint can resume alone.
        self.run_config: dict = OmegaConf.to_container(cfg, resolve=True)
        self._step_end_time: float | None = None
        # Last known episode return (NaN until an episode ends: no made-up 0); kept on device so
        # logging it needs no host sync.
        self.register_buffer("_last_return", torch.full((), float("nan")), persistent=False)

    def _check(self, cfg: DictConfig) -> None:
        """Refuse, in one line, an env or network this algorithm cannot act with."""
        name = cfg.algo.name
        for group in self.groups:
            if group.action_kind not in self.action_spaces:
                hint = " (VMAS envs switch with env.continuous_actions=false)" if self.action_spaces == ("discrete",) else ""
                raise UsageError(
                    f"{name} cannot train on this env: its actions are {group.action_kind}, {name} handles {' and '.join(self.action_spaces)} actions{hint}"
                )
        if is_recurrent(cfg.model) and not self.recurrent:
            raise UsageError(f"{name} has no recurrent version yet: model={cfg.model.kind} keeps a state between steps and is refused (use model=mlp)")
        if is_recurrent(cfg.critic_model) and not self.recurrent_critic:
            raise UsageError(f"critic_model={cfg.critic_model.kind}: {name}'s critics are feed-forward (critic_model=mlp); recurrent actors take model={cfg.critic_model.kind}")

    @property
    def group(self) -> str:
        """The name of the trained group, for algorithms that train one."""
        return self.groups[0].name

    def env_transforms(self) -> list:
        """Transforms the acting policy needs on every env it steps (collector, evaluation):
        recurrent networks need `InitTracker` and their hidden-state primers."""
        primers = [m.make_tensordict_primer() for m in self.modules() if hasattr(m, "make_tensordict_primer")]
        return [InitTracker(), *primers] if primers else []

    # --- counters and timing (Lightning's hooks: no algorithm can forget them) ---------------------
    def on_train_start(self) -> None:
        self._step_end_time = time.perf_counter()
        self._lean_steps = self.trainer.world_size == 1 and "16-mixed" not in str(self.trainer.precision)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        now = time.perf_counter()
        self._collect_s = now - (self._step_end_time or now)
        self._update_start = now
        if self.cfg.anneal_lr:
            self.anneal_learning_rates()

    def anneal_learning_rates(self) -> None:
        """lr = initial lr x (1 - frames trained / collector.total_frames), for every optimiser's
        parameter groups; the initial value is kept in the group (`initial_lr`), so it is saved
        with the optimiser and a resumed run continues the same line."""
        left = max(0.0, 1.0 - self.frames / self.run_config["collector"]["total_frames"])
        optimisers = self.optimizers()
        for optimiser in optimisers if isinstance(optimisers, list) else [optimisers]:
            for group in optimiser.param_groups:
                group.setdefault("initial_lr", float(group["lr"]))
                if isinstance(group["lr"], torch.Tensor):  # a captured step reads it from the device
                    group["lr"].fill_(group["initial_lr"] * left)
                else:
                    group["lr"] = group["initial_lr"] * left

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        """Count the batch's frames and log what `training_step` returned with the timings."""
        self.skipped_updates += self._guard.check(self.iterations + 1, stop=not self.cfg.get("skip_nonfinite", False))
        now = time.perf_counter()
        update_s = now - self._update_start
        new_frames = self.frames_in(batch) * self.trainer.world_size
        self.frames += new_frames
        self.iterations += 1
        self._step_end_time = now
        self.log_metrics(
            {
                **(outputs or {}),
                "time/collect_s": self._collect_s,
                "time/update_s": update_s,
                "time/frames_per_second": new_frames / max(self._collect_s + update_s, 1e-9),
                "time/since_start_s": time.time() - ca12.STARTED_AT,
                "time/frames": float(self.frames),
                "time/iteration": float(self.iterations),
                "train/skipped_updates": float(self.skipped_updates),
                **message_stats(self),  # talking networks (model=commnet|tarmac|dial|graph): comm/...
                **self.episode_stats(batch.fresh if hasattr(batch, "fresh") else batch),
            }
        )

    def frames_in(self, batch) -> int:
        """Env steps this process's batch cost (a replay batch: its fresh frames)."""
        return (batch.fresh if hasattr(batch, "fresh") else batch).numel()

    # --- one guarded optimiser step ---------------------------------------------------------------
    def optimiser_step(self, optimiser, loss: torch.Tensor, terms) -> torch.Tensor:
        """Backward, clip, step; a non-finite update never touches the weights.

        No host synchronisation: the gradient norm is computed once (it also clips), and a
        NaN/inf loss or gradient makes a fused optimiser (`fused_adam`) skip the step on the
        device (its `found_inf` input, as AMP's grad scaler uses it). The guard counts such
        updates on the device; `on_train_batch_end` reads it once per iteration and, unless
        `algo.skip_nonfinite`, raises `NonFiniteError` naming the iteration and the loss term
        before the iteration's checkpoint is written. An unfused optimiser falls back to one
        host sync per step.

        In one process (no DDP) without a grad scaler (`16-mixed`), the step calls `backward()`
        and the optimiser's `step()` itself rather than through Lightning's manual-optimisation
        wrappers, which there only dispatch hooks (`on_before_backward`, `on_after_backward`,
        `on_before_optimizer_step`: not called for these steps) and cost ~1 ms per step, 10 % of
        a replay iteration on CPU; under DDP `manual_backward` is what averages the gradients.
        Returns the gradient norm before clipping.
        """
        inner = getattr(optimiser, "optimizer", optimiser)  # under Lightning's LightningOptimizer
        captured = self._direct_steps  # inside a captured update (ca12/algos/fast.py)
        direct = captured or self._lean_steps
        inner.zero_grad(set_to_none=True)
        loss.backward() if direct else self.manual_backward(loss)
        params = [p for group in inner.param_groups for p in group["params"] if p.grad is not None]
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        finite = torch.isfinite(loss) & torch.isfinite(grad_norm)
        if captured:  # recorded by the caller, outside the captured function
            terms["finite"] = finite & terms["finite"] if "finite" in terms.keys() else finite
        else:
            self._guard.record(finite, terms)
        torch.nn.utils.clip_grads_with_norm_(params, self.cfg.max_grad_norm, grad_norm)
        step = inner.step if direct else optimiser.step
        if inner.defaults.get("fused"):
            inner.found_inf = (~finite).float()
            step()
        elif bool(finite):
            step()
        return grad_norm.detach()

    def _make_capturable(self) -> None:
        optimisers = self.optimizers()
        for optimiser in optimisers if isinstance(optimisers, list) else [optimisers]:
            make_capturable(getattr(optimiser, "optimizer", optimiser))
        bounds_on_device(self, self.device)

    def _run_captured(self, fn: Callable, *args) -> TensorDictBase:
        """Call a (captured) update function with optimiser steps direct, and record its
        non-finite flag in the guard."""
        self._direct_steps = True
        try:
            terms = fn(*args)
        finally:
            self._direct_steps = False
        self._guard.record(terms.pop("finite"), terms)
        return terms

    def fast_update(self, name: str, fn: Callable):
        """`fn` (minibatch -> detached terms, stepping optimisers with `optimiser_step`)
        captured as a CUDA graph (ca12/algos/fast.py) when `algo.cudagraphs` is on, else None.

        Returns `run(minibatch, captured=True) -> terms`; `captured=False` runs `fn` uncaptured
        (a minibatch of another shape). Either way the non-finite flags are recorded in the
        guard. Built once per `name`.
        """
        if not self.cfg.get("cudagraphs"):
            return None
        if name not in self._fast:
            self._make_capturable()
            captured_fn = capture_update(fn)
            self._fast[name] = lambda minibatch, captured=True: self._run_captured(captured_fn if captured else fn, minibatch)
        return self._fast[name]

    def fast_epoch(self, name: str, step: Callable, frames: TensorDictBase, size: int):
        """A whole pass over `frames` in minibatches of `size` (`step`: minibatch -> detached
        terms, as for `fast_update`) captured as one CUDA graph when `algo.cudagraphs` is on,
        else None: one replay per epoch instead of one per minibatch, the minibatches gathered
        on the device by the epoch's permutation (the graph's one input).

        Returns `run(perm) -> (summed terms, minibatches)`. The batch is copied here into a
        buffer the graph reads (`run` then replays for every epoch of this batch); a batch of
        another layout gets a capture of its own.
        """
        if not self.cfg.get("cudagraphs"):
            return None
        layout = (name, tuple(frames.shape), tuple(sorted(map(str, frames.keys(True, True)))))
        if layout in self._fast:
            self._fast[layout][0].update_(frames)
        else:
            self._make_capturable()
            batch = frames.clone()

            def epoch(inputs: TensorDictBase) -> TensorDictBase:
                sums, finite = None, []
                for index in inputs["perm"].split(size):
                    terms = step(batch[index])
                    finite.append(terms.pop("finite"))
                    sums = terms if sums is None else sums + terms
                sums["finite"] = torch.stack(finite)
                return sums

            self._fast[layout] = (batch, capture_update(epoch), -(-frames.shape[0] // size))
        _, captured_fn, n_minibatches = self._fast[layout]
        return lambda perm: (self._run_captured(captured_fn, TensorDict(perm=perm)), n_minibatches)

    def minibatch_epochs(self, batch: TensorDictBase, loss=None, num_epochs: int | None = None, suffix: str = "",
                         target_kl: float | None = None) -> dict:
        """`num_epochs` (default `algo.num_epochs`) passes over a collected batch [B, T] in
        shuffled minibatches of `algo.minibatch_size` frames, one guarded optimiser step on `loss`
        (default `self.loss`) each: the on-policy update of PPO and COMA. A recurrent actor or
        critic gets minibatches of whole trajectories ([b, T], b = minibatch_size // T)
        replayed in sequence mode; otherwise frames are shuffled singly. With `target_kl`, the
        epochs stop early once an epoch's mean `kl_approx` term exceeds it (one host sync per
        epoch). Returns the mean loss terms, the gradient norm and the epochs run
        (`train/epochs`) as `train/` metrics, each name followed by `suffix`.
        """
        optimiser, loss = self.optimizers(), loss or self.loss
        sequences = is_recurrent(self.model_cfg) or (self.recurrent_critic and is_recurrent(self.critic_model_cfg))
        frames = batch if sequences else batch.reshape(-1)
        size = max(1, self.cfg.minibatch_size // batch.shape[-1]) if sequences else self.cfg.minibatch_size
        terms_sum, n_updates, epochs = None, 0, 0

        def step(minibatch: TensorDictBase) -> TensorDictBase:
            total, terms = loss(minibatch)
            terms = terms.detach()
            terms["grad_norm"] = self.optimiser_step(optimiser, total, terms)
            return terms

        name = f"minibatch:{getattr(loss, '__name__', id(loss))}"
        # The fast path captures whole epochs of frames, minibatch by minibatch for sequences.
        fast_epoch = None if sequences else self.fast_epoch(name, step, frames, size)
        fast = self.fast_update(name, step) if sequences else None
        with set_recurrent_mode(sequences):
            for _ in range(self.cfg.num_epochs if num_epochs is None else num_epochs):
                epoch_kl, epoch_updates = 0.0, 0
                perm = torch.randperm(frames.shape[0], device=frames.device)
                if fast_epoch is not None:
                    terms, count = fast_epoch(perm)
                    terms_sum = terms if terms_sum is None else terms_sum + terms
                    n_updates += count
                    if target_kl is not None:
                        epoch_kl, epoch_updates = terms["kl_approx"], count
                else:
                    for index in perm.split(size):
                        # the fast path replays its capture for full-size minibatches only
                        terms = step(frames[index]) if fast is None else fast(frames[index], captured=len(index) == size)
                        terms_sum = terms if terms_sum is None else terms_sum + terms
                        n_updates += 1
                        if target_kl is not None:
                            epoch_kl, epoch_updates = epoch_kl + terms["kl_approx"], epoch_updates + 1
                epochs += 1
                if target_kl is not None and float(epoch_kl / epoch_updates) > target_kl:
                    break
        if terms_sum is None:
            return {}
        metrics = {f"train/{key}{suffix}": value.mean() / n_updates for key, value in terms_sum.items()}
        metrics[f"train/epochs{suffix}"] = float(epochs)
        return metrics

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        wandb_ids = [lg.version for lg in self.loggers if type(lg).__name__ == "WandbLogger"]
        checkpoint["ca12"] = {
            "frames": self.frames,
            "iterations": self.iterations,
            "skipped_updates": self.skipped_updates,
            "run_config": self.run_config,
            "wandb_id": wandb_ids[0] if wandb_ids else None,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("ca12", {})
        self.frames = state.get("frames", 0)
        self.iterations = state.get("iterations", 0)
        self.skipped_updates = state.get("skipped_updates", 0)

    # --- metrics ----------------------------------------------------------------------------------
    def log_metrics(self, metrics: dict) -> None:
        # Under DDP every rank has its own batch: log the mean over ranks.
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=1, sync_dist=self.trainer.world_size > 1)

    def episode_stats(self, batch) -> dict:
        """`rollout/<name>_mean` of each env-level entry under ("next", "stats") (the traffic
        junction's success and collisions) over the episodes that ended in `batch`, read at their
        last step (NaN when none ended); nothing when the env has none or the batch is no TensorDict."""
        if not isinstance(batch, TensorDictBase) or ("next", "stats") not in batch.keys(include_nested=True):
            return {}
        done = batch["next", "done"]  # [B, T, 1]
        return {f"rollout/{name}_mean": mean_at_episode_ends(value, done) for name, value in batch["next", "stats"].items()}

    def team_returns(self, batch: TensorDictBase) -> torch.Tensor:
        """The running episode return at every step [*B, T, 1], averaged over the trained groups'
        agents (from the `RewardSum` counter every ca12 env carries); at a done step it is the
        finished episode's return."""
        return torch.cat([batch["next", g.name, "episode_reward"] for g in self.groups], -2).mean(-2)

    def episode_reward_mean(self, batch: TensorDictBase) -> torch.Tensor:
        """Mean return of the episodes that ended in `batch` (over episodes and the trained
        groups' agents).

        Uses the `RewardSum` counter every ca12 env carries. A batch in which no episode ended
        reports the last known value (NaN before any episode of the run ended, also right after
        a resume); nothing here waits on the device.
        """
        done = batch["next", "done"]  # [B, T, 1]
        returns = self.team_returns(batch)  # [B, T, 1]
        n_done = done.sum()
        mean = (returns * done).sum() / n_done.clamp(min=1)
        self._last_return = torch.where(n_done > 0, mean, self._last_return.to(mean.device))
        return self._last_return
