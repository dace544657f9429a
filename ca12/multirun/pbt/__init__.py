"""Population-based training (Jaderberg et al. 2017): `python -m ca12.pbt`.

- `core`: exploit (truncation selection) and explore (perturb or resample) as plain functions,
  for any kind of member;
- `toy`: the paper's toy problem (section 4.1) on that core;
- `members`: members as ordinary ca12 runs (train a round, score, copy a checkpoint, tables);
- `local`: the local backend (rounds in this process, resumable);
- `ray_tune`: the Ray backend (Ray Tune's PBT scheduler over the same member runs).
"""

from __future__ import annotations

from ca12.multirun.pbt.core import Decision, Hyperparameter, SearchSpace, pbt_step, truncation_selection
from ca12.multirun.pbt.members import PopulationSpec

__all__ = ["Decision", "Hyperparameter", "PopulationSpec", "SearchSpace", "pbt_step", "truncation_selection"]
