"""Optimiser steps for ca12's LightningModules, composed into each one as its `stepper`
(`RLModule.__init__`): fused Adam, the guard that keeps a NaN/inf update off the weights
without a host sync per step, and the CUDA-graph fast path of whole updates and epochs
(ca12/algos/cuda_graphs.py). An algorithm steps with `self.stepper.step(optimiser, loss, terms)`.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from tensordict import TensorDict, TensorDictBase

from ca12.algos.cuda_graphs import capture_update, make_capturable
from ca12.errors import NonFiniteError
from ca12.nets.policies import bounds_on_device


def fused_adam(params, lr: float = 1e-3) -> torch.optim.Adam:
    """Adam with its fused kernel (CPU and CUDA): one launch per step for all parameters, and it
    honours `found_inf`, which `Stepper.step` uses to skip a non-finite update on the
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
            named = [
                (name, float(value)) for names, values in sums.items() for name, value in zip(names, values.tolist()) if not math.isfinite(value)
            ]
            what = f"loss term '{named[0][0]}' is {named[0][1]}" if named else "the gradient is not finite"
            raise NonFiniteError(
                f"iteration {iteration}: {what} ({bad} update(s) skipped); stopped (set algo.skip_nonfinite=true to skip such updates)"
            )
        return bad


class Stepper:
    """The guarded optimiser steps of one module (manual optimisation), and their fast path.

    `direct`: inside a captured update (steps call `backward()`/`step()` themselves); `lean`: one
    process without a grad scaler, where Lightning's manual-optimisation wrappers only dispatch
    hooks (set by `RLModule.on_train_start`). `fast` holds the captured updates by name.
    """

    def __init__(self, module):
        self.module = module
        self.guard = NonFiniteGuard()
        self.fast: dict = {}  # fast-path updates by name (ca12/algos/cuda_graphs.py)
        self.direct = False
        self.lean = False

    def step(self, optimiser, loss: torch.Tensor, terms) -> torch.Tensor:
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
        `on_before_optimizer_step`: not called for these steps) and cost a noticeable share of a
        small replay update on CPU (docs/benchmarks.md); under DDP `manual_backward` is what averages the gradients.
        Returns the gradient norm before clipping.
        """
        inner = getattr(optimiser, "optimizer", optimiser)  # under Lightning's LightningOptimizer
        captured = self.direct  # inside a captured update (ca12/algos/cuda_graphs.py)
        direct = captured or self.lean
        inner.zero_grad(set_to_none=True)
        loss.backward() if direct else self.module.manual_backward(loss)
        params = [p for group in inner.param_groups for p in group["params"] if p.grad is not None]
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        finite = torch.isfinite(loss) & torch.isfinite(grad_norm)
        if captured:  # recorded by the caller, outside the captured function
            terms["finite"] = finite & terms["finite"] if "finite" in terms.keys() else finite
        else:
            self.guard.record(finite, terms)
        torch.nn.utils.clip_grads_with_norm_(params, self.module.cfg.max_grad_norm, grad_norm)
        step = inner.step if direct else optimiser.step
        if inner.defaults.get("fused"):
            inner.found_inf = (~finite).float()
            step()
        elif bool(finite):
            step()
        return grad_norm.detach()

    def _make_capturable(self) -> None:
        optimisers = self.module.optimizers()
        for optimiser in optimisers if isinstance(optimisers, list) else [optimisers]:
            make_capturable(getattr(optimiser, "optimizer", optimiser))
        bounds_on_device(self.module, self.module.device)

    def _run_captured(self, fn: Callable, *args) -> TensorDictBase:
        """Call a (captured) update function with optimiser steps direct, and record its
        non-finite flag in the guard."""
        self.direct = True
        try:
            terms = fn(*args)
        finally:
            self.direct = False
        self.guard.record(terms.pop("finite"), terms)
        return terms

    def fast_update(self, name: str, fn: Callable):
        """`fn` (minibatch -> detached terms, stepping optimisers with `step`)
        captured as a CUDA graph (ca12/algos/cuda_graphs.py) when `algo.cudagraphs` is on, else None.

        Returns `run(minibatch, captured=True) -> terms`; `captured=False` runs `fn` uncaptured
        (a minibatch of another shape). Either way the non-finite flags are recorded in the
        guard. Built once per `name`.
        """
        if not self.module.cfg.get("cudagraphs"):
            return None
        if name not in self.fast:
            self._make_capturable()
            captured_fn = capture_update(fn)
            self.fast[name] = lambda minibatch, captured=True: self._run_captured(captured_fn if captured else fn, minibatch)
        return self.fast[name]

    def fast_epoch(self, name: str, step: Callable, frames: TensorDictBase, size: int):
        """A whole pass over `frames` in minibatches of `size` (`step`: minibatch -> detached
        terms, as for `fast_update`) captured as one CUDA graph when `algo.cudagraphs` is on,
        else None: one replay per epoch instead of one per minibatch, the minibatches gathered
        on the device by the epoch's permutation (the graph's one input).

        Returns `run(perm) -> (summed terms, minibatches)`. The batch is copied here into a
        buffer the graph reads (`run` then replays for every epoch of this batch); a batch of
        another layout gets a capture of its own.
        """
        if not self.module.cfg.get("cudagraphs"):
            return None
        layout = (name, tuple(frames.shape), tuple(sorted(map(str, frames.keys(True, True)))))
        if layout in self.fast:
            self.fast[layout][0].update_(frames)
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

            self.fast[layout] = (batch, capture_update(epoch), -(-frames.shape[0] // size))
        _, captured_fn, n_minibatches = self.fast[layout]
        return lambda perm: (self._run_captured(captured_fn, TensorDict(perm=perm)), n_minibatches)
