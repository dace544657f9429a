"""IPPO (de Witt et al. 2020, "Is Independent Learning All You Need in the StarCraft
Multi-Agent Challenge?").

MAPPO with decentralised critics: every agent's value sees only its own observation, so
nothing but the critic's input differs. The loss is TorchRL's `IPPOLoss`.
"""

from __future__ import annotations

from torchrl.objectives.multiagent import IPPOLoss

from ca12.algos.mappo import MAPPO


class IPPO(MAPPO):
    """IPPO as a LightningModule: MAPPO's update with per-agent critics."""

    loss_class = IPPOLoss
    centralised_critic = False


ALGORITHM = IPPO
