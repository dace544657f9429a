"""SAC (Haarnoja et al. 2018, "Soft Actor-Critic: Off-Policy Maximum Entropy Deep Reinforcement
Learning with a Stochastic Actor"; "Soft Actor-Critic Algorithms and Applications" for the
automatic temperature; Christodoulou 2019 for discrete actions).

Twin soft Q critics with soft-updated targets (clipped double Q), a stochastic actor that
maximises Q plus alpha times its entropy, and alpha tuned so the entropy tracks a target
(-|A| for continuous actions, 0.98 log |A| for discrete ones), learnt from replay. It is MASAC's
module (masac.py): MASAC and ISAC are the multi-agent faces of the same code. On a single-agent
env (`gym/...`, a group of one agent) this is SAC itself; on a team each agent's critics see
only its own observation and action, which is ISAC. The defaults are the paper's: 256-wide
networks, Adam 3e-4, minibatches of 256, one update per collected frame, gamma 0.99, tau 0.005.
"""

from __future__ import annotations

from ca12.algos.masac import MASAC


class SAC(MASAC):
    """SAC as a LightningModule: MASAC's update with per-agent critics (a team of one: SAC), as ISAC's."""

    centralised_critic = False


ALGORITHM = SAC
