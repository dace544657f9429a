"""`ca12.compare`: rliable's statistics over fake run directories with known returns, the files it
writes, its one-line errors, and the reader on one tiny real run."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import TINY
from rliable import library, metrics

from ca12.analysis.outputs import write_outputs
from ca12.analysis.report import compare
from ca12.analysis.runs import EVAL, ROLLOUT, find_runs, read_run
from ca12.compare import main
from ca12.errors import UsageError

REPS = 300


def fake_run(root, algo, seed, evals=None, rollouts=None, env=("matrix", "climbing"), frames_per_iter=100, lr=0.001, logger="{wandb: null}"):
    """A run directory: config.yaml naming algo/env/seed, metrics.csv with one row per iteration;
    `evals` are the eval returns at every other iteration (the others have none)."""
    run = root / f"{algo}_{env[1]}_{seed}_{lr}"
    run.mkdir(parents=True)
    run.joinpath("config.yaml").write_text(
        f"seed: {seed}\nalgo:\n  name: {algo}\n  lr: {lr}\nenv:\n  family: {env[0]}\n  task: {env[1]}\nlogger: {logger}\n"
    )
    n = max(len(rollouts or []), 2 * len(evals or []))
    lines = ["time/iteration,time/frames,rollout/episode_reward_mean,eval/episode_reward_mean"]
    for i in range(n):
        rollout = rollouts[i] if rollouts else 0.0
        evaluation = evals[i // 2] if evals and i % 2 == 1 else ""
        lines.append(f"{i + 1},{(i + 1) * frames_per_iter},{rollout},{evaluation}")
    run.joinpath("metrics.csv").write_text("\n".join(lines) + "\n")
    return run


def sweep(root, finals: dict[str, list[float]], **kwargs):
    """Runs whose last evaluation return is `finals[algo][seed]` (earlier ones lower)."""
    for algo, values in finals.items():
        for seed, value in enumerate(values):
            fake_run(root, algo, seed, evals=[value - 1.0, value - 0.5, value], **kwargs)
    return root


FINALS = {"good": [0.9, 0.8, 0.95, 0.85, 1.2], "bad": [0.1, 0.3, 0.2, 0.15, -0.4]}


def test_estimates_and_intervals_are_rliables_on_the_same_scores(tmp_path):
    comparison = compare([sweep(tmp_path, FINALS)], reps=REPS, seed=7, points=5)
    table = comparison.table("matrix/climbing")
    assert [g.algo for g in table.groups] == ["good", "bad"]  # best IQM first
    for group in table.groups:
        scores = np.array(FINALS[group.algo])[:, None]  # [runs, tasks]: each run's last eval return
        assert group.scores == scores.tolist() and group.seeds == [0, 1, 2, 3, 4]
        np.random.seed(7)
        points, intervals = library.get_interval_estimates(
            {"x": scores}, lambda s: np.array([metrics.aggregate_iqm(s), metrics.aggregate_median(s.T)]), reps=REPS
        )
        iqm, median = group.estimates["IQM"], group.estimates["median"]
        assert (iqm.value, iqm.low, iqm.high) == (points["x"][0], *intervals["x"][:, 0])
        assert (median.value, median.low, median.high) == (points["x"][1], *intervals["x"][:, 1])
        assert iqm.low < iqm.value < iqm.high
        assert group.estimates["mean"].value == pytest.approx(scores.mean()) and median.value == np.median(scores)
        assert "optimality gap" not in group.estimates  # raw scores, no --target
    again = compare([tmp_path], reps=REPS, seed=7, points=5).table("matrix/climbing").groups[0].estimates["IQM"]
    other = compare([tmp_path], reps=REPS, seed=8, points=5).table("matrix/climbing").groups[0].estimates["IQM"]
    assert again == table.groups[0].estimates["IQM"] and (other.low, other.high) != (again.low, again.high)


def test_clearly_better_algorithm_has_probability_of_improvement_above_09(tmp_path):
    improvement = compare([sweep(tmp_path, FINALS)], reps=REPS).table("matrix/climbing").improvements
    assert [(i.x, i.y) for i in improvement] == [("good", "bad")]
    assert improvement[0].probability.value == 1.0 and improvement[0].probability.low > 0.9
    np.random.seed(0)
    scores = [np.array(FINALS["good"])[:, None], np.array(FINALS["bad"])[:, None]]
    _, interval = library.get_interval_estimates({"p": scores}, lambda x, y: np.array([metrics.probability_of_improvement(x, y)]), reps=REPS)
    assert [improvement[0].probability.low, improvement[0].probability.high] == interval["p"][:, 0].tolist()


def test_rollout_score_is_the_last_tenth_and_normalisation_sets_the_gap_target(tmp_path):
    for seed in range(3):  # no evaluation logged: scored by rollout returns, the last 10 % = 2 of 20 iterations
        fake_run(tmp_path, "a", seed, rollouts=[float(i + seed) for i in range(20)])
    table = compare([tmp_path], normalise=(0, 40), reps=REPS).table("matrix/climbing")
    assert ROLLOUT in table.scoring and "logged no evaluation" in table.scoring
    expected = np.array([(18 + s + 19 + s) / 2 / 40 for s in range(3)])
    assert np.allclose(np.ravel(table.groups[0].scores), expected)
    assert table.target == 1.0 and table.groups[0].estimates["optimality gap"].value == pytest.approx(1 - expected.mean())
    last = compare([tmp_path], last=5, target={"matrix/climbing": 10.0}, reps=REPS).table("matrix/climbing")
    assert np.allclose(np.ravel(last.groups[0].scores), [17 + s for s in range(3)])
    assert last.groups[0].estimates["optimality gap"].value == pytest.approx(10 - np.mean(np.minimum([17, 18, 19], 10)))


def test_curves_are_iqm_over_seeds_on_a_common_frame_grid(tmp_path):
    # different batch sizes: frames 100..1000 and 150..1500; the common range is [150, 1000]
    for seed, (step, slope) in enumerate([(100, 1.0), (150, 2.0), (100, 3.0)]):
        fake_run(tmp_path, "a", seed, rollouts=[slope * i for i in range(10)], frames_per_iter=step)
    table = compare([tmp_path], metric="final", points=5, reps=REPS).table("matrix/climbing")
    assert table.frames == np.linspace(150, 1000, 5).tolist()
    runs = sorted(find_runs([tmp_path]), key=lambda r: r.seed)
    curves = np.stack([np.interp(table.frames, r.series[ROLLOUT][:, 0], r.series[ROLLOUT][:, 1]) for r in runs])[:, None, :]
    np.random.seed(0)

    def per_point(s):
        return np.array([metrics.aggregate_iqm(s[..., i]) for i in range(s.shape[-1])])  # rliable's own loop

    points, intervals = library.get_interval_estimates({"c": curves}, per_point, reps=REPS)
    curve = table.curves[0]
    assert curve.iqm == points["c"].tolist() and [curve.low, curve.high] == intervals["c"].tolist()


def test_report_pngs_and_summary_are_written(tmp_path, capsys):
    sweep(tmp_path / "sweep", FINALS)
    sweep(tmp_path / "sweep", FINALS, env=("matrix", "stag_hunt"))
    assert main([str(tmp_path / "sweep"), "--normalise=-1,2", "--reps", "100"]) == 0
    out = tmp_path / "sweep" / "compare"
    report = (out / "report.md").read_text()
    for heading in ("## matrix/climbing", "## matrix/stag_hunt", "## all envs", "| X | Y | P(X > Y) |"):
        assert heading in report
    assert "| good | 5 |" in report and "optimality gap (target 1)" in report
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted(
        [f"{t}_{kind}.png" for t in ("matrix-climbing", "matrix-stag_hunt") for kind in ("curves", "intervals", "profile")]
        + ["all-envs_intervals.png", "all-envs_profile.png"]
    )
    assert all((out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in pngs)
    assert all(f"({name})" in report for name in pngs)
    summary = json.loads((out / "summary.json").read_text())
    assert [t["name"] for t in summary["tables"]] == ["matrix/climbing", "matrix/stag_hunt", "all envs"]
    assert summary["tables"][2]["groups"][0]["scores"][0] == [(0.9 + 1) / 3, (0.9 + 1) / 3]  # [runs][envs]
    assert "| good | bad |" in capsys.readouterr().out
    assert main([str(tmp_path / "sweep"), "--reps", "10"]) == 0  # the compare/ folder is not a run


def test_configs_that_differ_beyond_the_seed_are_separate_groups(tmp_path):
    for lr in (0.001, 0.01):
        for seed in range(2):
            fake_run(tmp_path, "a", seed, evals=[lr * 100 + seed], lr=lr)
    assert [g.algo for g in compare([tmp_path], reps=REPS).tables[0].groups] == ["a algo.lr=0.01", "a algo.lr=0.001"]
    shutil.copytree(tmp_path / "a_climbing_0_0.01", tmp_path / "copy")
    with pytest.raises(UsageError, match="seeds of a group must differ"):
        compare([tmp_path])


def test_one_seed_gets_point_estimates_a_note_and_a_written_report(tmp_path, capsys):
    sweep(tmp_path, {"good": [0.9, 0.8], "lonely": [0.5]})
    comparison = compare([tmp_path], reps=REPS)
    lonely = comparison.table("matrix/climbing").groups[1]
    assert lonely.estimates["IQM"].value == 0.5 and lonely.estimates["IQM"].low is None
    assert comparison.table("matrix/climbing").groups[0].estimates["IQM"].low is not None  # the 2-seed group keeps its interval
    assert comparison.notes == [
        "lonely on matrix/climbing has a single run: point estimates only; intervals need at least 2 seeds per algorithm and env"
    ]
    assert main([str(tmp_path), "--reps", "10"]) == 0
    captured = capsys.readouterr()
    assert "| lonely | 1 | 0.500 |" in captured.out and "**Note:** lonely on matrix/climbing has a single run" in captured.out
    assert captured.err == f"ca12.compare: note: {comparison.notes[0]}\n"
    report = (tmp_path / "compare" / "report.md").read_text()
    assert "| lonely | 1 | 0.500 |" in report and "intervals need at least 2 seeds" in report
    assert json.loads((tmp_path / "compare" / "summary.json").read_text())["notes"] == comparison.notes
    assert len(list((tmp_path / "compare").glob("*.png"))) == 3


def test_single_seed_envs_still_get_the_all_envs_table(tmp_path, capsys):
    for env in (("matrix", "climbing"), ("matrix", "stag_hunt")):
        sweep(tmp_path, {"solo": [0.5]}, env=env)
    assert main([str(tmp_path), "--normalise=-1,2", "--reps", "10"]) == 0
    assert "## all envs" in (tmp_path / "compare" / "report.md").read_text()
    assert "solo on matrix/climbing has a single run (and 1 more group(s))" in capsys.readouterr().err


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda root: None, "no runs found"),
        (lambda root: (root / "run").mkdir() or (root / "run" / "config.yaml").write_text("seed: 0\n"), "has no metrics.csv"),
        (lambda root: fake_run(root, "a", 0, evals=[1.0]).joinpath("config.yaml").write_text("seed: 0\n"), "has no algo.name"),
    ],
)
def test_no_runs_and_missing_metrics_are_one_line_errors(tmp_path, capsys, setup, message):
    setup(tmp_path)
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ca12.compare: error: ") and message in err and err.count("\n") == 1


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    sweep(tmp_path, FINALS)
    for args, message in (
        (["--normalise", "0"], "--normalise takes [ENV=]MIN,MAX"),
        (["--normalise", "vmas/nowhere=0,1"], "no run trained on"),
        (["--normalise", "1,0"], "MIN must be below MAX"),
        (["--metric", "best"], "invalid choice"),
        (["--reps", "0"], "--reps"),
    ):
        assert main([str(tmp_path), *args]) == 2
        assert message in capsys.readouterr().err


def test_runs_that_logged_to_wandb_get_an_offline_wandb_comparison(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    sweep(tmp_path, FINALS, logger="{wandb: {project: ca12-compare-test, entity: null, mode: offline, tags: []}}")
    assert main([str(tmp_path), "--reps", "10", "--no-wandb"]) == 0
    assert not (tmp_path / "compare" / "wandb").exists()
    assert compare([tmp_path], reps=10).wandb == {"project": "ca12-compare-test", "entity": None, "mode": "offline", "tags": []}
    assert main([str(tmp_path), "--reps", "10"]) == 0  # the runs logged to W&B: so does the comparison
    offline = list((tmp_path / "compare" / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("*.wandb"))
    assert "logged to W&B" in capsys.readouterr().out


def test_reads_real_runs(tmp_path):
    from ca12.fit import main as fit

    for seed in (0, 1):  # two tiny real runs of 2 iterations, evaluated after each
        assert (
            fit(
                [
                    "--algo",
                    "mappo",
                    "--seed",
                    str(seed),
                    "--run-dir",
                    str(tmp_path / f"seed{seed}"),
                    *TINY,
                    "logger=csv",
                    "eval.every_n_iters=1",
                    "eval.episodes=2",
                ]
            )
            == 0
        )
    data = read_run(tmp_path / "seed1")
    assert (data.algo, data.env, data.seed) == ("mappo", "vmas/navigation", 1)
    assert data.series[ROLLOUT][:, 0].tolist() == [100.0, 200.0] and data.series[EVAL][:, 0].tolist() == [100.0, 200.0]
    comparison = compare([tmp_path], reps=50)
    table = comparison.table("vmas/navigation")
    group = table.groups[0]  # real configs of two seeds differ in nothing else: one group named by the algorithm
    assert len(table.groups) == 1 and group.algo == "mappo" and group.seeds == [0, 1]
    assert group.scores[1] == [data.series[EVAL][-1, 1]] and table.frames[0] == 100.0 and table.frames[-1] == 200.0
    assert len(write_outputs(comparison, tmp_path / "out")) == 5
