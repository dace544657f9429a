"""Value normalisation (`algo.value_norm`), an optional part of the PPO family's update that
MAPPO, IPPO and PPO hold rather than inherit.

The critic learns value targets standardised by running statistics of the targets seen so far,
and its outputs are turned back into returns wherever returns are needed: MAPPO's `ValueNorm`
(Yu et al. 2022, "The Surprising Effectiveness of PPO in Cooperative Multi-Agent Games", and its
official code, on by default there and in HARL). Per batch:

    v_t = critic(o_t), v_{t+1} = critic(o_{t+1})           (normalised outputs)
    V = v * sigma + mu                                      (the current statistics)
    advantages, G = GAE(V, rewards)                         (on the returns' scale)
    mu, sigma <- update(G)                                  (the batch's targets)
    the critic regresses v on (G - mu) / sigma; `clip_value` clips around the collected v

The statistics are TorchRL's normalisers (`popart`: `PopArtValueNorm`, exponential averages
with MAPPO's beta 0.99999 and debiasing, as in MAPPO's code; `running`: `RunningValueNorm`,
exact running mean and variance), their state in the module's state_dict (`value_norms.<group>.*`),
so checkpoints carry them and resume is exact. They are kept apart from the advantages, whose
standardisation is `algo.normalize_advantage`.

Differences, chosen: the statistics are updated once per batch with all its targets, where
MAPPO's code updates them before each minibatch's value loss with that minibatch's targets
(with beta 0.99999 and debiasing both are close to the mean over all targets seen: each batch
weighs the same); the variance's floor is TorchRL's 1e-5 (MAPPO's code clamps it at 1e-2).
TorchRL's own `MAPPOLoss(value_norm=...)` is another form: the critic keeps predicting returns
and only its loss is divided by sigma^2, so its outputs still have to reach the returns' scale,
which is what the normalisation is there to spare it.
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torch import nn
from torchrl.modules import PopArtValueNorm, RunningValueNorm

NORMALISERS = {"popart": PopArtValueNorm, "running": RunningValueNorm}
SAVED = "state_value_normalised"  # the critic's own outputs, kept while GAE reads the rescaled ones


class ValueNorms(nn.ModuleDict):
    """One normaliser of value targets per trained group (empty when `algo.value_norm=none`)."""

    @classmethod
    def build(cls, kind: str, groups: list[str], device: torch.device | str | None = None) -> "ValueNorms":
        norms = cls()
        if kind != "none":
            for g in groups:
                norms[g] = NORMALISERS[kind](shape=1, device=device)
        return norms

    def to_returns(self, g: str, batch: TensorDictBase, value: tuple[str, str]) -> None:
        """Rescales group `g`'s values V(o_t) and V(o_{t+1}) in `batch` (under `value` and
        ("next", *value)) from the critic's normalised outputs to returns, keeping the outputs
        of step t to put back (`to_targets`)."""
        norm, normalised = self[g], batch.get(value)
        batch.set((g, SAVED), normalised)
        batch.set(value, norm.denormalize(normalised))
        batch.set(("next", *value), norm.denormalize(batch.get(("next", *value))))

    def to_targets(self, g: str, batch: TensorDictBase, value: tuple[str, str], target: tuple[str, str]) -> None:
        """Folds group `g`'s value targets (returns) into its statistics, then writes them
        standardised, and the critic's collected outputs back under `value` (`clip_value`
        clips around them)."""
        norm, returns = self[g], batch.get(target)
        norm.update(returns)
        batch.set(target, norm.normalize(returns))
        batch.set(value, batch.pop((g, SAVED)))
