"""benchmarks/applications.py: one real job (the market at a tiny budget, two seeds), its report
and plots, and the interval it reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def applications(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import applications

    return applications


def test_the_interval_is_students_t_over_seeds(applications):
    mean, half = applications.interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.302653 / 3**0.5, rel=1e-6)  # t(0.975, 2) s / sqrt(3), s = 1
    mean, half = applications.interval([0.5])
    assert mean == 0.5 and half != half  # nan: one seed has no interval


def test_a_job_evaluates_every_policy_and_the_report_compares_them_with_the_baseline(applications, tmp_path):
    for seed in (0, 1):
        applications.run_job("market", seed, tmp_path, frames=2000)
    runs = applications.load(tmp_path, "market")
    assert [run["seed"] for run in runs] == [0, 1]
    policies = runs[0]["policies"]
    assert list(policies) == ["greedy", "quote_rule", "optimal", "independent (IPPO, no quotes)", "coordinated (MAPPO, market quotes)"]
    assert policies["optimal"]["metrics"]["return"] == pytest.approx(1.0)  # efficiencies: the optimum is 1 on every market
    assert 0.55 < policies["greedy"]["metrics"]["return"] < 0.7
    learner = policies["coordinated (MAPPO, market quotes)"]
    assert learner["frames"] == 2000 and learner["curve"]["frames"][-1] == 2000 and len(learner["curve"]["return"]) == 2
    assert len(learner["trace"]["reward"]) == 1  # a one-round market: one step
    json.dumps(runs)  # what was written reads back as plain JSON

    text = applications.report("market", runs)
    greedy_row = next(line for line in text.splitlines() if line.startswith("greedy"))
    assert "+0.0%" in greedy_row
    optimal_row = next(line for line in text.splitlines() if line.startswith("optimal"))
    greedy = (runs[0]["policies"]["greedy"]["metrics"]["return"] + runs[1]["policies"]["greedy"]["metrics"]["return"]) / 2
    assert f"{100 * (1 - greedy) / greedy:+.1f}% better" in optimal_row
    assert optimal_row.rstrip().endswith("1 1")  # the per-seed values
    written = applications.plot("market", runs, tmp_path / "plots")
    assert [p.name for p in written] == ["market_curves.png", "market_episode.png"] and all(p.stat().st_size > 0 for p in written)
