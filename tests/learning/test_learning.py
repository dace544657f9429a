"""Learning on a real task: MAPPO and IPPO on vmas/navigation (BenchMARL's task settings).

A random policy scores about -0.6 there; the default MAPPO run (72k frames, its tuned settings
for this task: conf/tuned/mappo/vmas/navigation.yaml) ends near 0.94. These run the default
hyperparameters (the tuned ones, decayed over each test's own budget), ~45 s each on 2 CPU cores.
"""

from __future__ import annotations

import csv

import pytest

from ca12.fit import main


def _train(algo: str, frames: int, tmp_path) -> list[float]:
    """Train with the default config for `frames` frames; the return of every iteration."""
    run_dir = tmp_path / algo
    assert main(["--algo", algo, "--run-dir", str(run_dir), "logger=none", f"collector.total_frames={frames}"]) == 0
    with open(run_dir / "metrics.csv") as f:
        return [float(row["rollout/episode_reward_mean"]) for row in csv.DictReader(f)]


@pytest.mark.slow
def test_mappo_learns_navigation(tmp_path):
    returns = _train("mappo", 120_000, tmp_path)
    assert len(returns) == 20
    assert sum(returns[-3:]) / 3 >= 0.75, returns


@pytest.mark.slow
def test_ippo_learns_navigation(tmp_path):
    returns = _train("ippo", 96_000, tmp_path)
    assert len(returns) == 16
    assert sum(returns[-2:]) / 2 - returns[0] >= 0.8, returns
