"""ISAC: independent soft actor-critic (Haarnoja et al. 2018, "Soft Actor-Critic: Off-Policy
Maximum Entropy Deep Reinforcement Learning with a Stochastic Actor"), BenchMARL's per-agent
baseline for MASAC.

MASAC with decentralised critics: every agent's twin soft Q critics see only its own observation
(and action), so the other learners are part of a non-stationary environment. Nothing but the
critics' input differs.
"""

from __future__ import annotations

from ca12.algos.masac import MASAC


class ISAC(MASAC):
    """ISAC as a LightningModule: MASAC's update with per-agent critics."""

    centralised_critic = False


ALGORITHM = ISAC
