"""The `algo.league` section's schema (conf/algo/mappo.yaml), declared apart from the league
itself so that a config is checked without importing torch (docs/ARCHITECTURE.md, "What may be
imported at start-up"); MAPPO's schema (ca12/algos/schemas.py) includes it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ca12.schema import key


@dataclass
class LeagueConfig:
    """The `algo.league` section (conf/algo/mappo.yaml)."""

    opponents: Optional[str] = key(
        "how each env world draws its opponent from the league before a batch (null: no league, untrained groups act at random)",
        choices=("uniform", "latest", "pfsp"),
    )
    pfsp_power: float = key("pfsp weight (1 - P[learner beats snapshot])^p; larger p picks the hardest snapshots", minimum=0.0)
    snapshot_every: int = key("iterations between snapshots of the learner joining the league", positive=True)
    max_size: int = key("snapshots kept; the oldest leaves when a new one joins a full league", positive=True)
    elo_k: float = key("Elo K-factor of a batch (split over its episodes): the most the learner's rating moves per batch", positive=True)
    elo_initial: float = key("the learner's rating at the start (its first snapshot's too)")
    stats_decay: float = key(
        "a snapshot's win statistics are multiplied by this before a batch's results against it are added (AlphaStar: 0.99)", minimum=0.0
    )
