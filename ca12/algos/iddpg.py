"""IDDPG: independent DDPG (Lillicrap et al. 2016), the per-agent-critic baseline of Lowe et al.
2017 ("Multi-Agent Actor-Critic for Mixed Cooperative-Competitive Environments").

MADDPG with decentralised critics: every agent's Q(o_a, a_a) sees only its own observation and
action, so the other learners are part of a non-stationary environment. Nothing but the
critic's input differs.
"""

from __future__ import annotations

from ca12.algos.maddpg import MADDPG


class IDDPG(MADDPG):
    """IDDPG as a LightningModule: MADDPG's update with per-agent critics."""

    centralised_critic = False


ALGORITHM = IDDPG
