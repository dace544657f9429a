"""PPO (Schulman et al. 2017, "Proximal Policy Optimization Algorithms").

The clipped surrogate min(r A, clip(r, 1 - eps, 1 + eps) A) with r = pi(a|o) / pi_old(a|o),
an entropy bonus, a value loss (optionally clipped around the collected values, `clip_value`),
GAE advantages standardised per minibatch, and `num_epochs` passes of minibatches per batch that
stop early once an epoch's approximate KL exceeds `target_kl`; the clip fraction and approximate
KL are logged as `train/clip_fraction` and `train/kl_approx`.

It is MAPPO's module (mappo.py): MAPPO is the multi-agent face of the same code. On a
single-agent env (`gym/...`, a group of one agent) this is PPO itself; on a team every agent's
policy and value see only its own observation, which is IPPO. The defaults are Stable-Baselines3's
(Schulman et al.'s MuJoCo settings): 10 epochs of 64-frame minibatches, gamma 0.99, lambda 0.95.
"""

from __future__ import annotations

from torchrl.objectives.multiagent import IPPOLoss

from ca12.algos.mappo import MAPPO


class PPO(MAPPO):
    """PPO as a LightningModule: MAPPO's update with per-agent values (a team of one: PPO), as IPPO's."""

    loss_class = IPPOLoss
    centralised_critic = False


ALGORITHM = PPO
