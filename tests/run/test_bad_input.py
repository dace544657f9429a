"""Bad input gets one line and exit code 2, before anything is built or written (issue #29): seeds
out of range, agent counts, unusable run directories, metrics files, episode counts and videos,
unbuildable Gymnasium ids, discounts, minibatches, sweeps, and the flags a resumed run would ignore."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import TINY

import ca12
from ca12.algos import algo_schema
from ca12.envs import check_task, family_tasks
from ca12.errors import UsageError
from ca12.evaluate import main as evaluate_main
from ca12.fit import list_choices, main
from ca12.run.config import algo_names, load_config
from ca12.sections import MAX_SEED

MARKET_BASELINE = ["--baseline", "greedy", "--env", "market/allocation", "--episodes", "2"]


def _one_line(capsys, fragment: str, command: str = "ca12.fit") -> str:
    """The captured stderr, checked to be one error line holding `fragment`."""
    err = capsys.readouterr().err
    assert err.startswith(f"{command}: error: ") and err.count("\n") == 1 and fragment in err, err
    return err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A complete tiny MAPPO run (200 of 200 frames): resuming it trains nothing."""
    run_dir = tmp_path_factory.mktemp("bad_input") / "run"
    assert main(["--algo", "mappo", "--run-dir", str(run_dir), *TINY, "logger=none"]) == 0
    return run_dir


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    """A copy of the finished run that a test may change."""
    return Path(shutil.copytree(finished_run, tmp_path / "copy"))


# --- 1. seeds ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", ["-1", "99999999999999999999", str(MAX_SEED + 1)])
def test_seeds_numpy_torch_and_lightning_refuse_are_refused_on_every_path(seed, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    fragment = f"must be in 0..{MAX_SEED} (what NumPy, torch and Lightning seed with), got {int(seed)}"
    assert main(["--algo", "mappo", "--seed", seed, "--run-dir", "run", *TINY]) == 2
    _one_line(capsys, fragment)
    assert main(["--algo", "mappo", f"seed={seed}", "--run-dir", "run", *TINY]) == 2
    _one_line(capsys, fragment)
    assert main(["-m", "--algo", "mappo", "--seed", f"0,{seed}", "--run-dir", "sweep", *TINY]) == 2  # the second seed too
    _one_line(capsys, fragment)
    with pytest.raises(UsageError, match=re.escape(fragment)):
        ca12.train("mappo", seed=int(seed), run_dir="api")
    assert evaluate_main([*MARKET_BASELINE, "--seed", seed]) == 2
    _one_line(capsys, fragment, "ca12.evaluate")
    assert not list(tmp_path.iterdir()), "nothing written"


def test_the_largest_seed_still_evaluates():
    """Evaluation seeds sit EVAL_SEED_OFFSET above the run's: they wrap instead of leaving NumPy's range."""
    from ca12.data.evaluator import Evaluator

    cfg = load_config("mappo", "vmas/navigation", TINY, seed=MAX_SEED)
    assert Evaluator(cfg.env, 2, cfg.seed, True).env.batch_size == torch.Size([2])


# --- 2. agent counts -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "env, value, shown",
    [
        ("vmas/navigation", "0", "0"),
        ("vmas/navigation", "abc", "'abc'"),
        ("vmas/balance", "-2", "-2"),
        ("generic/coop", "0", "0"),
        ("memory/cue", "1.5", "1.5"),
    ],
)
def test_agent_counts_must_be_positive_integers_wherever_a_task_takes_one(env, value, shown):
    with pytest.raises(UsageError, match=f"^{re.escape(f'env.n_agents must be a positive integer, got {shown}')}$"):
        load_config("mappo", env, ["env.n_agents=" + value])


def test_a_zero_agent_count_is_one_line_on_the_command_line(tmp_path, capsys):
    assert main(["--algo", "mappo", "--run-dir", str(tmp_path / "run"), "env.n_agents=0"]) == 2
    _one_line(capsys, "env.n_agents must be a positive integer, got 0")
    assert not (tmp_path / "run").exists()


# --- 3. run directories ----------------------------------------------------------------------------------
def test_a_run_directory_under_a_file_or_an_unwritable_place_is_refused_before_anything_is_built(tmp_path, capsys):
    (tmp_path / "file").write_text("not a directory")
    assert main(["--algo", "mappo", "--run-dir", str(tmp_path / "file" / "run"), *TINY]) == 2
    _one_line(capsys, f"--run-dir '{tmp_path / 'file' / 'run'}' cannot be created: '{tmp_path / 'file'}' is a file, not a directory")
    assert main(["--algo", "mappo", "--run-dir", str(tmp_path / "file"), *TINY]) == 2
    _one_line(capsys, f"--run-dir '{tmp_path / 'file'}' is not a directory")
    # /proc/self is read-only for every user, root included (os.access says so): no chmod needed
    assert not os.access("/proc/self", os.W_OK)
    assert main(["--algo", "mappo", "--run-dir", "/proc/self/ca12/run", *TINY]) == 2
    _one_line(capsys, "--run-dir '/proc/self/ca12/run' cannot be written: '/proc/self' is not writable here")
    assert main(["-m", "--algo", "mappo", "--run-dir", str(tmp_path / "file" / "sweep"), *TINY]) == 2
    _one_line(capsys, "is a file, not a directory")
    assert [p.name for p in tmp_path.iterdir()] == ["file"] and (tmp_path / "file").read_text() == "not a directory"


# --- 4. metrics.csv on resume -----------------------------------------------------------------------------
@pytest.mark.parametrize("garbage", [b"\xff\xfe binary", b"step,loss\n1,0.5\n", b"time/iteration,loss\nfirst,0.5\n"])
def test_a_garbage_metrics_file_refuses_the_resume_and_keeps_the_run_intact(garbage, run_copy, capsys):
    (run_copy / "metrics.csv").write_bytes(garbage)
    before = {p: p.read_bytes() for p in run_copy.rglob("*") if p.is_file()}
    assert main(["--resume", str(run_copy), "collector.total_frames=300"]) == 2
    _one_line(capsys, f"{run_copy / 'metrics.csv'} is not a metrics file this run wrote")
    assert {p: p.read_bytes() for p in run_copy.rglob("*") if p.is_file()} == before, "checkpoint, config and metrics untouched"


def test_a_deleted_metrics_file_is_recreated_with_a_note_that_its_rows_are_lost(run_copy, capsys):
    (run_copy / "metrics.csv").unlink()
    assert main(["--resume", str(run_copy), "collector.total_frames=300"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "metrics.csv is missing" in line]
    assert notes == [
        (
            f"ca12.fit: note: {run_copy / 'metrics.csv'} is missing; it starts again after iteration 2, "
            "the rows of iterations 1-2 are lost (a checkpoint holds no metrics)"
        )
    ]
    assert (run_copy / "metrics.csv").read_text().splitlines()[1].startswith("3,")


# --- 5. episode counts --------------------------------------------------------------------------------
def test_an_absurd_episode_count_is_refused_before_its_worlds_are_built(finished_run, capsys):
    assert evaluate_main([str(finished_run), "--episodes", "1000000000000"]) == 2
    _one_line(capsys, "1000000000000 episodes need at least", "ca12.evaluate")


def test_running_out_of_memory_in_evaluation_is_one_line(finished_run, monkeypatch, capsys):
    from ca12.data.evaluator import Evaluator

    def out_of_memory(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    monkeypatch.setattr(Evaluator, "run", out_of_memory)
    assert evaluate_main([str(finished_run), "--episodes", "3"]) == 2
    _one_line(capsys, "out of memory (OutOfMemoryError) with --episodes 3, one env world each: lower --episodes", "ca12.evaluate")


# --- 6. videos ------------------------------------------------------------------------------------------
def test_a_video_of_an_env_that_cannot_render_or_to_an_unusable_path_is_refused_before_any_episode(tmp_path, monkeypatch, capsys):
    from ca12.data.evaluator import Evaluator

    ran = []
    monkeypatch.setattr(Evaluator, "run", lambda self, *args, **kwargs: ran.append(1))
    assert evaluate_main([*MARKET_BASELINE, "--video", str(tmp_path / "out.gif")]) == 2
    _one_line(capsys, "--video: market/allocation cannot render (the market family draws no frames); leave --video out", "ca12.evaluate")
    (tmp_path / "file").write_text("")
    assert evaluate_main([*MARKET_BASELINE, "--video", str(tmp_path / "file" / "out.gif")]) == 2
    _one_line(capsys, f"--video '{tmp_path / 'file' / 'out.gif'}' cannot be created: '{tmp_path / 'file'}' is a file", "ca12.evaluate")
    assert evaluate_main([*MARKET_BASELINE, "--video", str(tmp_path)]) == 2
    _one_line(capsys, f"--video '{tmp_path}' is not a file", "ca12.evaluate")
    assert not ran and sorted(p.name for p in tmp_path.iterdir()) == ["file"]


# --- 7. Gymnasium ids ------------------------------------------------------------------------------------
def _without(monkeypatch, *names: str) -> None:
    """`importlib.util.find_spec` says `names` are not installed (how ca12 looks for env packages)."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None if name in names else real(name, *a, **k))


def test_the_list_shows_only_gym_ids_that_build_and_a_removed_version_names_the_newest(monkeypatch, capsys):
    import gymnasium

    assert "Ant-v2" in gymnasium.registry and "env gym/Ant-v2" not in list_choices()
    assert "env gym/CartPole-v1" in list_choices()
    _without(monkeypatch, "mujoco")
    assert "Ant-v5" not in family_tasks("gym")
    with pytest.raises(UsageError, match=r'^gym/Ant-v5 needs the mujoco package: pip install "gymnasium\[mujoco\]"$'):
        check_task("gym", "Ant-v5")
    assert main(["--algo", "mappo", "--env", "gym/Ant-v2"]) == 2
    _one_line(capsys, "gym/Ant-v2 is a removed version this Gymnasium no longer builds; use gym/Ant-v5 (which needs the mujoco package")


# --- 8. discounts ------------------------------------------------------------------------------------------
def test_every_discount_factor_and_lambda_is_bounded_by_one():
    bounds = {
        (algo, f.name): (f.metadata.get("minimum"), f.metadata.get("positive"), f.metadata.get("maximum"))
        for algo in algo_names()
        for f in dataclasses.fields(algo_schema(algo))
        if f.name in ("gamma", "lmbda")
    }
    assert {algo for algo, key in bounds if key == "gamma"} == set(algo_names()) - {"es"}, "es alone has no discount"
    assert all(low in (0.0, None) and (low == 0.0 or positive) and high == 1.0 for low, positive, high in bounds.values()), bounds
    for key in ("gamma", "lmbda"):
        with pytest.raises(UsageError, match=rf"^algo.{key} must be <= 1.0, got 1.5$"):
            load_config("mappo", "vmas/navigation", [*TINY, f"algo.{key}=1.5"])


# --- 9. minibatches -----------------------------------------------------------------------------------------
def test_an_on_policy_minibatch_larger_than_the_batch_is_refused_with_both_values():
    for algo in ("mappo", "coma", "trpo"):
        env = "vmas/navigation" if algo != "coma" else "matrix/coordination"
        with pytest.raises(UsageError, match=rf"^algo.minibatch_size \(101\) is larger than collector.frames_per_batch \(100\): {algo} takes"):
            load_config(algo, env, [*TINY, "algo.minibatch_size=101"])
    assert load_config("mappo", "vmas/navigation", [*TINY, "algo.minibatch_size=100"]).algo.minibatch_size == 100
    # replay: minibatches come from the buffer of many batches
    assert load_config("qmix", "vmas/navigation", [*TINY, "env.continuous_actions=false", "algo.minibatch_size=256"]).algo.minibatch_size == 256


# --- 10. sweeps -------------------------------------------------------------------------------------------
def test_a_sweep_refuses_a_combination_that_cannot_build_before_training_any(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["-m", "--algo", "mappo,qmix", "--run-dir", "sweep", *TINY, "algo.minibatch_size=50", "logger=none"]) == 2
    _one_line(capsys, "qmix/vmas-navigation/seed0: qmix cannot train on this env: its actions are continuous")
    assert not list(tmp_path.iterdir()), "no run trained, no sweep directory"


# --- 11-13. resuming -----------------------------------------------------------------------------------------
def test_resume_refuses_an_env_or_run_directory_other_than_the_runs_own(run_copy, tmp_path, capsys):
    run_copy = run_copy.resolve()
    assert main(["--resume", str(run_copy), "--env", "vmas/balance"]) == 2
    _one_line(capsys, f"--resume: the run in {run_copy} trains on vmas/navigation, not --env vmas/balance")
    assert main(["--resume", str(run_copy), "--run-dir", str(tmp_path / "elsewhere")]) == 2
    _one_line(capsys, f"--resume: the run continues in its own directory {run_copy}, not --run-dir {tmp_path / 'elsewhere'}")
    # the run's own command repeated: accepted (the run is complete, so nothing trains)
    assert main(["--resume", str(run_copy), "--algo", "mappo", "--env", "vmas/navigation", "--run-dir", str(run_copy)]) == 0
    assert f"the run in {run_copy} is complete" in capsys.readouterr().out
    assert not (tmp_path / "elsewhere").exists()


def test_resume_accepts_the_group_options_the_run_was_composed_with_and_no_other(run_copy, capsys):
    assert main(["--resume", str(run_copy), "model=mlp", "critic_model=mlp", "collector=sync"]) == 0
    assert "is complete" in capsys.readouterr().out
    assert main(["--resume", str(run_copy), "model=gru"]) == 2
    _one_line(capsys, "'model' cannot change when resuming a run (it fixes the run's shapes or data): saved model=mlp, given model=gru")
    assert main(["--resume", str(run_copy), "collector=multisync"]) == 2
    _one_line(capsys, "saved collector=sync, given collector=multisync")


def test_resume_last_picks_the_newest_single_run_not_a_sweep_or_population_member(finished_run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    single = Path(shutil.copytree(finished_run, tmp_path / "runs" / "mappo" / "vmas-navigation" / "20250101-000000"))
    members = [tmp_path / "sweep" / "mappo" / "vmas-navigation" / "seed0", tmp_path / "pbt" / "member_0"]
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "sweep.json").write_text(json.dumps({"format": 1, "runs": []}))
    (tmp_path / "pbt").mkdir()
    (tmp_path / "pbt" / "pbt.json").write_text("{}")
    for age, member in enumerate(members):  # both newer than the single run, and in the run index
        shutil.copytree(finished_run, member)
        os.utime(member / "checkpoints" / "last.ckpt", (2e9 + age, 2e9 + age))
    (tmp_path / "runs" / "index.txt").write_text("".join(f"{m.resolve()}\n" for m in members))
    assert main(["--resume", "last", "--algo", "mappo"]) == 0
    assert f"the run in {single.resolve()} is complete" in capsys.readouterr().out
    shutil.rmtree(single)
    assert main(["--resume", "last", "--algo", "mappo"]) == 2
    _one_line(capsys, "(members of sweeps and populations are not counted: resume them with --resume DIR)")
