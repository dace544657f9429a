"""Self-play with a league (ca12/selfplay/league.py, ca12/selfplay/callback.py): Elo and PFSP arithmetic, the
matrix seat swap, per-world snapshot opponents, one-line refusals, exact resume, fictitious
self-play on rock-paper-scissors, and the football benchmark's fast version."""

from __future__ import annotations

import csv
import importlib.util
import re
from pathlib import Path

import pytest
import torch
from conftest import resume_pair
from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type

from ca12.algos import algo_class
from ca12.envs import make_spec_env
from ca12.envs.matrix import MatrixGameEnv
from ca12.errors import UsageError
from ca12.fit import main
from ca12.nets.policies import FixedRandomPolicy
from ca12.run.config import load_config
from ca12.selfplay.league import (
    elo_deltas,
    elo_expected,
    episode_results,
    flat_parameters,
    matrix_seat_swap,
    pfsp_weights,
)

RPS = ["--env", "matrix/rock_paper_scissors", "env.group_per_player=true", "algo.groups=[player_0]"]


def _module(*overrides: str, env: str = "matrix/rock_paper_scissors", algo: str = "ppo"):
    cfg = load_config(algo, env, list(overrides))
    return algo_class(algo)(cfg, make_spec_env(cfg.env, 0))


def _column(run_dir: Path, key: str) -> list[float]:
    with open(run_dir / "metrics.csv") as f:
        return [float(row[key]) for row in csv.DictReader(f) if row.get(key)]


# --- pure functions ----------------------------------------------------------------------------------
def test_elo_expectation_and_update_match_the_formula():
    assert float(elo_expected(1000.0, 1000.0)) == pytest.approx(0.5)
    assert float(elo_expected(1400.0, 1000.0)) == pytest.approx(1 / (1 + 10 ** (-1)))
    # Two games at once, from the ratings before them: a win against an equal (+K w / 2) and a
    # loss against someone 400 points weaker (-K w E, E = 10/11).
    deltas = elo_deltas(
        1000.0,
        torch.tensor([1000.0, 600.0], dtype=torch.float64),
        torch.tensor([1.0, 0.0], dtype=torch.float64),
        torch.tensor([0.25, 0.75], dtype=torch.float64),
        32.0,
    )
    assert deltas.tolist() == pytest.approx([32 * 0.25 * 0.5, -32 * 0.75 * 10 / 11])


def test_pfsp_prefers_the_snapshots_the_learner_beats_least():
    p = pfsp_weights(torch.tensor([0.9, 0.5, 0.0], dtype=torch.float64), power=2.0)
    assert p.tolist() == pytest.approx([0.01 / 1.26, 0.25 / 1.26, 1.0 / 1.26])
    assert pfsp_weights(torch.tensor([0.2, 0.7]), power=0.0).tolist() == pytest.approx([0.5, 0.5])  # p = 0: uniform
    assert pfsp_weights(torch.ones(4), power=2.0).tolist() == pytest.approx([0.25] * 4)  # beats them all: uniform


def test_episode_results_score_ended_episodes_by_team_return():
    done = torch.tensor([[False, True, False, True], [False, False, False, True]]).unsqueeze(-1)  # [B=2, T=4, 1]
    mine = torch.tensor([[0.0, 2.0, 0.0, -1.0], [0.0, 0.0, 0.0, 3.0]])
    theirs = torch.tensor([[0.0, 1.0, 0.0, -1.0], [0.0, 0.0, 0.0, 4.0]])
    batch = TensorDict(
        {"next": {"done": done, "a": {"episode_reward": mine[..., None, None].expand(2, 4, 2, 1)}, "b": {"episode_reward": theirs[..., None, None]}}},
        batch_size=[2, 4],
    )
    results, worlds = episode_results(batch, "a", "b")
    assert results.tolist() == [1.0, 0.5, 0.0] and worlds.tolist() == [0, 0, 1]


def test_the_seat_swap_shows_player_1_what_player_0_sees_in_the_mirrored_game():
    env = MatrixGameEnv([[[0, 1], [2, 3]], [[0, 2], [1, 3]]], num_envs=4, max_steps=3, group_per_player=True)
    swap = matrix_seat_swap(2, 2, seat=0, other=1)
    joint = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]])
    td = env.reset()
    td["player_0", "action"], td["player_1", "action"] = joint[:, :1], joint[:, 1:]
    played = env.step(td)["next"]
    mirrored = env.reset()
    mirrored["player_0", "action"], mirrored["player_1", "action"] = joint[:, 1:], joint[:, :1]  # seats exchanged
    assert torch.equal(played["player_1", "observation"][..., swap], env.step(mirrored)["next"]["player_0", "observation"])
    assert not torch.equal(played["player_1", "observation"], env.step(mirrored)["next"]["player_0", "observation"])


# --- the league inside PPO -----------------------------------------------------------------------------
def test_without_a_league_the_other_group_still_acts_at_random():
    module = _module(*RPS[2:])
    assert module.league is None and module.configure_callbacks() == []
    assert any(isinstance(m, FixedRandomPolicy) for m in module.policy.module)


def test_snapshots_join_leave_and_are_drawn_as_the_setting_says():
    module = _module(*RPS[2:], "algo.league.opponents=uniform", "algo.league.max_size=3")
    league, actor = module.league, module.actor
    assert module.configure_callbacks()[0].__class__.__name__ == "LeagueCallback"
    for iteration in (5, 10, 15):
        with torch.no_grad():
            actor.module[0].module.params["4"]["bias"].add_(1.0)  # a different learner each time
        league.add_snapshot(actor, iteration)
    assert league.size == 3 and league.born == [5, 10, 15], "the oldest left"
    assert torch.equal(league.opponent.bank[2], flat_parameters(actor)) and not torch.equal(league.opponent.bank[0], league.opponent.bank[2])
    assert league.sampling_probabilities().tolist() == pytest.approx([1 / 3] * 3)
    league.cfg.opponents = "latest"
    assert league.pick_opponents().tolist() == [2] * league.opponent.assignment.numel()
    league.cfg.opponents = "pfsp"
    league.record(
        wins=torch.tensor([10.0, 0.0, 5.0], dtype=torch.float64),
        draws=torch.tensor([0.0, 0.0, 0.0], dtype=torch.float64),
        games=torch.tensor([10.0, 0.0, 10.0], dtype=torch.float64),
    )
    assert league.win_rates().tolist() == pytest.approx([1.0, 0.5, 0.5])
    assert league.sampling_probabilities().tolist() == pytest.approx([0.0, 0.5, 0.5])
    # Rating points are only exchanged: what the learner won, the snapshots lost.
    assert league.learner_elo - 1000.0 == pytest.approx(3000.0 - sum(league.elo))
    assert league.learner_elo > 1000.0 and league.elo[1] == 1000.0, "snapshot 1 did not play"


def test_every_world_acts_with_its_own_snapshot():
    module = _module(*RPS[2:], "algo.league.opponents=uniform")
    league, actor = module.league, module.actor
    last_bias = actor.module[0].module.params["4"]["bias"]
    with torch.no_grad():
        for favourite in (0, 1, 2):  # snapshots that always play rock, paper, scissors
            last_bias.copy_(torch.nn.functional.one_hot(torch.tensor(favourite), 3) * 100.0)
            league.add_snapshot(actor, favourite + 1)
    league.opponent.assignment.copy_(torch.arange(league.opponent.assignment.numel()) % 3 + 1)  # snapshots 1, 2, 3, 1, ...
    td = MatrixGameEnv(
        [[[0, -1, 1], [1, 0, -1], [-1, 1, 0]], [[0, 1, -1], [-1, 0, 1], [1, -1, 0]]], num_envs=7, max_steps=1, group_per_player=True
    ).reset()
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        played = league.opponent(td)["player_1", "action"].flatten()
    assert played.tolist() == [w % 3 for w in range(7)]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--env", "vmas/navigation"], r"needs an env with two agent groups \(the learner's and its opponent's\); vmas/navigation has 1: agents"),
        (["--env", "matrix/rock_paper_scissors", "env.group_per_player=true"], r"train one group .* set algo.groups=\[NAME\]"),
        (
            ["--env", "matrix/matching_pennies", "env.group_per_player=true", "algo.groups=[player_0]"],
            r"needs a symmetric game; matrix/matching_pennies",
        ),
        ([*RPS, "model=gru"], r"recurrent actors \(model=gru\) is not supported"),
        ([*RPS, "algo.league.snapshot_every=0"], r"algo.league.snapshot_every must be positive, got 0"),
    ],
)
def test_settings_a_league_cannot_play_are_refused_in_one_line(capsys, tmp_path, args, message):
    assert main(["--algo", "ppo", "--run-dir", str(tmp_path / "run"), *args, "algo.league.opponents=pfsp", "logger=none"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ca12.fit: error: ") and len(err.splitlines()) == 1
    assert re.search(message, err), err
    assert not (tmp_path / "run").exists()


def test_asymmetric_groups_are_refused_by_their_specs():
    pytest.importorskip("mpe2")
    with pytest.raises(
        UsageError, match=r"snapshots of agent as adversary, which needs a symmetric game: their observation sizes differ \(19 vs 8\)"
    ):
        _module("algo.groups=[agent]", "algo.league.opponents=uniform", env="pettingzoo/simple_push")


# --- runs ------------------------------------------------------------------------------------------
LEAGUE_RUN = [
    *RPS,
    "env.max_steps=2",
    "env.num_envs=16",
    "collector.frames_per_batch=32",
    "algo.minibatch_size=16",
    "algo.num_epochs=2",
    "model.hidden_sizes=[16]",
    "critic_model.hidden_sizes=[16]",
    "algo.league.opponents=pfsp",
    "algo.league.snapshot_every=1",
    "algo.league.max_size=3",
    "checkpoint.every_n_iters=1",
    "eval.every_n_iters=0",
    "logger=none",
]


def _same(a, b, where: str = "") -> None:
    if torch.is_tensor(a):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_a_resumed_league_run_continues_bit_for_bit(tmp_path):
    """Six iterations in one go and as 3 + 3 with --resume: the snapshots (three, the oldest
    evicted), ratings, statistics and sampling generator, the weights and the logged league
    metrics all agree."""
    a, b, one_go, split = resume_pair(tmp_path, "ppo", LEAGUE_RUN, 192)
    _same(a, b)
    extra = a["league._extra_state"]
    assert extra["size"] == 3 and extra["born"] == [4, 5, 6] and sum(extra["games"]) > 0
    for key in ("league/elo_learner", "league/size", "league/win_rate", "league/exploitability", "league/exploitability_latest"):
        assert _column(one_go, key) == _column(split, key) and len(_column(one_go, key)) == 6, key
    assert _column(one_go, "league/size") == [2.0, 3.0, 3.0, 3.0, 3.0, 3.0]


def test_fictitious_self_play_drives_the_league_mixture_of_rock_paper_scissors_to_equilibrium(tmp_path):
    """One-shot RPS, a snapshot every iteration, opponents drawn uniformly per world (fictitious
    self-play); the learner is an entropy-regularised (soft) best response. The league's mixture
    ends within 0.05 of the equilibrium's exploitability (0), while the learner itself was well
    off it on the way (it plays best responses to the league, not the equilibrium)."""
    run_dir = tmp_path / "rps"
    assert (
        main(
            [
                "--algo",
                "ppo",
                "--run-dir",
                str(run_dir),
                *RPS,
                "env.max_steps=1",
                "env.num_envs=128",
                "collector.frames_per_batch=128",
                "collector.total_frames=25600",
                "algo.minibatch_size=128",
                "algo.num_epochs=1",
                "algo.lr=1e-2",
                "algo.entropy_coeff=0.3",
                "algo.normalize_advantage=false",
                "algo.league.opponents=uniform",
                "algo.league.snapshot_every=1",
                "algo.league.max_size=200",
                "eval.every_n_iters=0",
                "logger=none",
                "~callbacks.checkpoint",
                "~callbacks.progress",
            ]
        )
        == 0
    )
    mixture, latest = _column(run_dir, "league/exploitability"), _column(run_dir, "league/exploitability_latest")
    assert len(mixture) == 200
    assert mixture[-1] < 0.05, mixture[-10:]
    assert max(latest) > 0.3, "the learner left the equilibrium on the way"
    assert max(mixture[:20]) > 0.1, "the league started exploitable"


def _benchmark():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "league.py"
    spec = importlib.util.spec_from_file_location("league_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_football_league_fast_version_the_latest_snapshot_beats_the_first(tmp_path):
    """benchmarks/league.py at a quarter of its budget (16 000 frames, 5 iterations): the latest
    snapshot already beats the first from both sides. (Measured at this budget: win rates 0.69,
    0.52, 0.72 for seeds 0, 1, 2; at the benchmark's 64 000 frames 0.67, 0.69, 0.78.)"""
    bench = _benchmark()
    run_dir = tmp_path / "football"
    bench.train(run_dir, frames=16000, seed=0, opponents="pfsp", extra=["logger=none", "~callbacks.progress"])
    result = bench.latest_against_first(run_dir, episodes=32)
    assert result["size"] == 2 and result["born_latest"] == 5 and result["episodes"] >= 64
    assert result["win_rate"] > 0.6, result
    assert result["elo_latest"] > result["elo_first"], result
    curve = bench.elo_curve(run_dir)
    assert [i for i, _ in curve] == [1, 2, 3, 4, 5]


def test_a_league_of_another_size_cannot_resume_a_run(capsys, tmp_path):
    run_dir = tmp_path / "run"
    assert main(["--algo", "ppo", "--run-dir", str(run_dir), *LEAGUE_RUN, "collector.total_frames=64"]) == 0
    capsys.readouterr()
    assert main(["--resume", str(run_dir), "collector.total_frames=128", "algo.league.max_size=5"]) == 2
    assert capsys.readouterr().err.strip() == (
        "ca12.fit: error: 'algo.league.max_size' cannot change when resuming a run (it fixes the run's shapes or data): saved 3, given 5"
    )
    # Switching the league off (or the opponent model on) would change the module's state: refused the same way.
    assert main(["--resume", str(run_dir), "collector.total_frames=128", "algo.league.opponents=null"]) == 2
    assert "'algo.league.opponents' cannot change when resuming a run" in capsys.readouterr().err
    assert main(["--resume", str(run_dir), "collector.total_frames=128", "algo.opponent_model=true"]) == 2
    assert "'algo.opponent_model' cannot change when resuming a run" in capsys.readouterr().err
