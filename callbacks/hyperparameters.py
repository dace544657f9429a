"""A resumed run trains with its config's hyperparameters, not the checkpoint's.

Lightning restores the module's state dict and each optimiser's state dict, and both carry
hyperparameters: the optimisers' parameter groups their `lr` (and betas, eps, weight decay),
TorchRL's losses and value estimators their coefficients as buffers (`entropy_coeff`,
`clip_epsilon`, `gamma`, `lmbda`...). So `--resume RUN algo.lr=...` (PBT's explore step) would
silently keep the old values. `ConfigHyperparameters` notes what the config built, before the
restore (`setup`: the module's buffers; `on_fit_start`: the optimisers' groups), and puts it back
after (`on_train_start`), keeping the learnt state (weights, Adam's moments and step counts). A
group with `initial_lr` (an annealed or scheduled lr) gets the config's lr as its schedule's
base. On a run resumed with its own config this changes nothing. Every run has it
(ca12/run/pipeline.py); it is not a `callbacks` entry.
"""

from __future__ import annotations

import torch
from lightning.pytorch import Callback
from torchrl.objectives import LossModule
from torchrl.objectives.value import ValueEstimatorBase


def config_buffers(module) -> dict:
    """The buffers of `module` that hold a config value rather than learnt state: those TorchRL's
    losses declare schedulable (`entropy_coeff`, `critic_coeff`, `clip_epsilon`, `clip_value`,
    SAC's alpha bounds, DQN's `gamma`...) and every buffer of a value estimator (`gamma`,
    `lmbda`, V-trace's clips). Name -> a copy."""
    found = {}
    for prefix, sub in module.named_modules():
        if isinstance(sub, LossModule):
            names = type(sub)._all_schedulable_buffers
        elif isinstance(sub, ValueEstimatorBase):
            names = set(sub._buffers)
        else:
            continue
        for name in names:
            if sub._buffers.get(name) is not None:
                found[f"{prefix}.{name}" if prefix else name] = sub._buffers[name].detach().clone()
    return found


class ConfigHyperparameters(Callback):
    """Puts the config's hyperparameters back after Lightning restored a checkpoint's (module docstring)."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.buffers = config_buffers(pl_module)

    def on_fit_start(self, trainer, pl_module) -> None:
        self.groups = [[{k: v for k, v in group.items() if k != "params"} for group in opt.param_groups] for opt in trainer.optimizers]

    @torch.no_grad()
    def on_train_start(self, trainer, pl_module) -> None:
        for name, value in self.buffers.items():
            pl_module.get_buffer(name).copy_(value)
        for opt, groups in zip(trainer.optimizers, self.groups):
            for group, fresh in zip(opt.param_groups, groups):
                if "initial_lr" in group:
                    group["initial_lr"] = fresh["lr"]
                group.update(fresh)
