"""Evolution strategies: the estimate points along the true gradient, its noise comes back from
seeds, fitness shaping, and `--algo es` trains and resumes bit for bit (in-process evaluations;
Ray workers: tests/algos/test_distributed_ray.py)."""

from __future__ import annotations

import csv

import pytest
import torch
from conftest import resume_pair

from ca12.distributed.es_gradient import centred_ranks, es_estimate, es_gradient, pair_seeds, perturbation
from ca12.fit import main

# CartPole for 20 steps, 4 evaluations of 2 episodes: 160 env steps per generation.
ES_TINY = [
    "--env",
    "gym/CartPole-v1",
    "env.max_steps=20",
    "algo.population=4",
    "env.num_envs=2",
    "algo.workers=0",
    "collector.frames_per_batch=160",
    "model.hidden_sizes=[8]",
    "logger=csv",
    "eval.every_n_iters=0",
]


@pytest.mark.parametrize("seed", [0, 1])
def test_the_estimate_on_a_quadratic_points_along_the_true_gradient(seed):
    target = torch.randn(20, generator=torch.Generator().manual_seed(100 + seed))
    theta = torch.zeros(20)
    grad = es_gradient(theta, lambda p: -float(((p - target) ** 2).sum()), sigma=0.05, n=4000, seed=seed)
    assert torch.nn.functional.cosine_similarity(grad, 2 * (target - theta), dim=0) >= 0.99


def test_noise_comes_back_from_its_seed_and_pairs_are_antithetic():
    assert torch.equal(perturbation(123, 50), perturbation(123, 50))
    assert not torch.equal(perturbation(123, 50), perturbation(124, 50))
    assert pair_seeds(7, 5) == pair_seeds(7, 5) and len(set(pair_seeds(7, 5))) == 5
    # Only the fitness difference of a pair moves the estimate: equal fitnesses give nothing.
    assert torch.equal(es_estimate([1, 2], torch.tensor([[3.0, 3.0], [1.0, 1.0]]), 0.1, 10), torch.zeros(10))


def test_centred_ranks_are_scale_free_in_minus_half_to_half():
    x = torch.tensor([[10.0, -3.0], [1e6, 0.5]])
    ranks = centred_ranks(x)
    torch.testing.assert_close(ranks, torch.tensor([[1 / 6, -0.5], [0.5, -1 / 6]]))
    assert torch.equal(centred_ranks(x * 1000 + 5), ranks)
    with pytest.raises(ValueError, match="even number"):
        es_gradient(torch.zeros(3), lambda p: 0.0, 0.1, 3, 0)


def test_es_trains_and_resumes_bit_for_bit(tmp_path):
    a, b, one_go, _ = resume_pair(tmp_path, "es", ES_TINY, 640)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    with open(one_go / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["time/frames"]) for r in rows] == [160.0, 320.0, 480.0, 640.0]
    assert all(float(r["train/fitness_max"]) >= float(r["train/fitness_min"]) for r in rows)


@pytest.mark.parametrize(
    "override, message",
    [
        ("algo.population=3", "algo.population must be even (antithetic pairs), got 3"),
        ("collector.frames_per_batch=200", "set collector.frames_per_batch=160"),
    ],
)
def test_bad_es_settings_are_refused_in_one_line(override, message, capsys):
    assert main(["--algo", "es", *ES_TINY, override]) == 2
    assert message in capsys.readouterr().err
