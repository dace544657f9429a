"""Run directories are data from strangers (ca12/untrusted.py, docs/ARCHITECTURE.md "Run
directories are data"): a run config that names code (a `_target_` nested in a callback's
arguments, a callback class nobody vouched for, an instantiation key anywhere else) or holds an
interpolation (`${oc.env:...}`) is refused in one line by every path that reads a run: `fit
--resume`, sweeps, `evaluate`, `ca12.load`, `compare`, PBT and a league run; nothing it names runs,
nothing of the environment reaches a file, and nothing already saved changes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import TINY

import ca12
from ca12.compare import main as compare_main
from ca12.errors import UsageError
from ca12.evaluate import main as evaluate_main
from ca12.fit import main as fit_main
from ca12.pbt import main as pbt_main

SECRET = "s3cret-wandb-key-0123456789"
MAPPO = ["--algo", "mappo", *TINY, "logger=none"]
LEAGUE = [
    "--algo",
    "ppo",
    "--env",
    "matrix/rock_paper_scissors",
    "env.group_per_player=true",
    "algo.groups=[player_0]",
    "algo.league.opponents=uniform",
    "env.num_envs=4",
    "collector.frames_per_batch=8",
    "collector.total_frames=16",
    "algo.minibatch_size=8",
    "algo.num_epochs=1",
    "model.hidden_sizes=[8]",
    "critic_model.hidden_sizes=[8]",
    "logger=none",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """Tiny finished runs to copy and craft: MAPPO, and PPO in a league."""
    root = tmp_path_factory.mktemp("trained")
    assert fit_main([*MAPPO, "--run-dir", str(root / "mappo")]) == 0
    assert fit_main([*LEAGUE, "--run-dir", str(root / "league")]) == 0
    return {"mappo": root / "mappo", "league": root / "league"}


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the run index (runs/index.txt) and default run directories stay here
    monkeypatch.setenv("CA12_SECRET", SECRET)


def _snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def craft(source: Path, target: Path, change) -> Path:
    """A copy of run `source` whose checkpoints' (and config.yaml's) run config `change` edited."""
    shutil.copytree(source, target)
    for path in (target / "checkpoints").glob("*.ckpt"):
        checkpoint = torch.load(path, weights_only=True)
        change(checkpoint["ca12"]["run_config"])
        torch.save(checkpoint, path)
    import yaml

    config = yaml.safe_load((target / "config.yaml").read_text())
    change(config)
    (target / "config.yaml").write_text(yaml.safe_dump(config))
    return target


def touch_in_callback(marker: Path):
    def change(config: dict) -> None:
        config["callbacks"]["progress"]["total_frames"] = {"_target_": "pathlib.Path.touch", "_args_": [str(marker)]}

    return change


def env_in_tags(config: dict) -> None:
    config["logger"] = {"wandb": {"project": "ca12", "entity": None, "mode": "disabled", "tags": ["${oc.env:CA12_SECRET}"]}}


def _one_line_error(capsys, *expected: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for text in expected:
        assert text in err, err
    return err


# --- fit --resume ---------------------------------------------------------------------------------
def test_a_target_nested_in_a_callback_argument_never_runs_on_resume(trained, tmp_path, capsys):
    marker = tmp_path / "pwned"
    run = craft(trained["mappo"], tmp_path / "run", touch_in_callback(marker))
    before = _snapshot(run)
    assert fit_main(["--resume", str(run), "collector.total_frames=300"]) == 2
    assert not marker.exists(), "the checkpoint's code ran"
    _one_line_error(capsys, "callbacks.progress.total_frames._target_")
    assert _snapshot(run) == before, "a refused resume changed the run"


def test_an_interpolation_in_a_checkpoint_is_refused_and_never_resolved(trained, tmp_path, capsys):
    run = craft(trained["mappo"], tmp_path / "run", env_in_tags)
    assert fit_main(["--resume", str(run), "collector.total_frames=300"]) == 2
    _one_line_error(capsys, "logger.wandb.tags[0]", "interpolation")
    assert not any(SECRET.encode() in data for data in _snapshot(run).values())


def test_a_callback_class_no_one_vouched_for_is_not_even_imported(trained, tmp_path, capsys, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "stranger_callbacks.py").write_text(
        f"from pathlib import Path\nfrom lightning.pytorch import Callback\nPath({str(marker)!r}).touch()\nclass Stranger(Callback):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    run = craft(trained["mappo"], tmp_path / "run", lambda c: c["callbacks"].update(stranger={"_target_": "stranger_callbacks.Stranger"}))
    assert fit_main(["--resume", str(run), "collector.total_frames=300"]) == 2
    assert not marker.exists(), "importing the module the checkpoint named ran its code"
    _one_line_error(capsys, "callbacks.stranger", "+callbacks.stranger._target_=stranger_callbacks.Stranger")
    # The user's own command vouches for it (their code, their choice): then the run resumes with it.
    assert fit_main(["--resume", str(run), "collector.total_frames=300", "+callbacks.stranger._target_=stranger_callbacks.Stranger"]) == 0
    assert marker.exists()


@pytest.mark.parametrize("where", ["env", "algo", "trainer"])
def test_an_instantiation_key_anywhere_else_is_refused(trained, tmp_path, capsys, where):
    run = craft(trained["mappo"], tmp_path / "run", lambda c: c[where].update(_target_="os.getcwd"))
    assert fit_main(["--resume", str(run), "collector.total_frames=300"]) == 2
    _one_line_error(capsys, f"'{where}._target_' would make ca12 build an object")


def test_a_target_nested_in_a_callback_argument_is_refused_from_the_command_line_too(tmp_path, capsys):
    marker = tmp_path / "pwned"
    assert (
        fit_main(
            [
                *MAPPO,
                "--run-dir",
                str(tmp_path / "run"),
                "+callbacks.lr._target_=lightning.pytorch.callbacks.LearningRateMonitor",
                "+callbacks.lr.logging_interval._target_=pathlib.Path.touch",
                f"+callbacks.lr.logging_interval._args_=[{marker}]",
            ]
        )
        == 2
    )
    assert not marker.exists() and not (tmp_path / "run").exists()
    _one_line_error(capsys, "plain-valued arguments")


def test_a_league_run_is_read_as_data_too(trained, tmp_path, capsys):
    marker = tmp_path / "pwned"
    run = craft(trained["league"], tmp_path / "run", touch_in_callback(marker))
    assert fit_main(["--resume", str(run), "collector.total_frames=24"]) == 2
    assert not marker.exists()
    _one_line_error(capsys, "_target_")


# --- evaluate, ca12.load, compare -----------------------------------------------------------------
@pytest.mark.parametrize("change", ["interpolation", "nested target"])
def test_evaluate_and_load_refuse_a_crafted_run_config(trained, tmp_path, capsys, change):
    marker = tmp_path / "pwned"
    edit = (
        env_in_tags if change == "interpolation" else lambda c: c["env"].update(n_agents={"_target_": "pathlib.Path.touch", "_args_": [str(marker)]})
    )
    run = craft(trained["mappo"], tmp_path / "run", edit)
    assert evaluate_main([str(run), "--episodes", "1"]) == 2
    _one_line_error(capsys, str(run / "checkpoints" / "last.ckpt"))
    with pytest.raises(UsageError, match="interpolation|build an object"):
        ca12.load(run)
    assert not marker.exists()


def test_evaluate_does_not_read_the_runs_callbacks(trained, tmp_path, capsys):
    """Evaluation builds no callback: a class the run named (its owner's own) does not stop it."""
    run = craft(trained["mappo"], tmp_path / "run", lambda c: c["callbacks"].update(mine={"_target_": "my_project.MyCallback"}))
    assert evaluate_main([str(run), "--episodes", "1", "--json"]) == 0
    assert "episode_reward_mean" in capsys.readouterr().out
    assert ca12.load(run).config.callbacks.mine._target_ == "my_project.MyCallback"  # as data, never imported


def test_compare_reads_config_yaml_as_data(trained, tmp_path, capsys):
    run = craft(trained["mappo"], tmp_path / "runs" / "a", env_in_tags)
    assert compare_main([str(run.parent)]) == 2
    assert SECRET not in _one_line_error(capsys, "logger.wandb.tags[0]", "interpolation")


def test_resume_last_skips_a_run_whose_config_yaml_is_not_data(trained, tmp_path, capsys):
    good = tmp_path / "good"
    shutil.copytree(trained["mappo"], good)
    bad = craft(trained["mappo"], tmp_path / "bad", env_in_tags)
    Path("runs").mkdir()
    Path("runs/index.txt").write_text(f"{good.resolve()}\n{bad.resolve()}\n")
    from ca12.run.rundir import find_resume_checkpoint

    assert find_resume_checkpoint("last", "mappo", "vmas/navigation") == good.resolve() / "checkpoints" / "last.ckpt"


# --- sweeps and PBT -------------------------------------------------------------------------------
def test_a_sweep_does_not_resume_a_crafted_member(trained, tmp_path, capsys):
    marker = tmp_path / "pwned"
    sweep = tmp_path / "sweep"
    args = ["-m", "--algo", "mappo", "--seed", "0", "--run-dir", str(sweep), *TINY, "logger=none", "collector.total_frames=300"]
    assert fit_main(args[:-1] + ["collector.total_frames=200"]) == 0
    (member,) = [p.parent.parent for p in sweep.rglob("last.ckpt")]
    shutil.rmtree(member)
    craft(trained["mappo"], member, touch_in_callback(marker))
    capsys.readouterr()
    before = _snapshot(sweep)
    assert fit_main(args) == 2  # the sweep checks every member before it trains any
    assert not marker.exists()
    _one_line_error(capsys, "callbacks.progress.total_frames._target_")
    assert _snapshot(sweep) == before


def _population(tmp_path: Path) -> Path:
    """A saved population spec that never trained (its members start fresh on --resume)."""
    pbt_dir = tmp_path / "pop"
    pbt_dir.mkdir()
    spec = {
        "algo": "mappo",
        "env": "vmas/navigation",
        "search": ["algo.lr=loguniform:1e-4:1e-3"],
        "population": 2,
        "ready": 100,
        "frames": 200,
        "overrides": [*(text for text in TINY if not text.startswith("collector.total_frames")), "logger=none"],
    }
    (pbt_dir / "pbt.json").write_text(json.dumps(spec))
    return pbt_dir


@pytest.mark.parametrize(
    "override",
    [
        "logger.wandb.tags=[${oc.env:CA12_SECRET}]",
        "+callbacks.x._target_=pathlib.Path",
        "+callbacks.progress.total_frames._target_=pathlib.Path.touch",
    ],
)
def test_a_population_spec_is_data(tmp_path, capsys, override):
    pbt_dir = _population(tmp_path)
    spec = json.loads((pbt_dir / "pbt.json").read_text())
    (pbt_dir / "pbt.json").write_text(json.dumps({**spec, "overrides": spec["overrides"] + [override]}))
    assert pbt_main(["--resume", str(pbt_dir)]) == 2
    _one_line_error(capsys, "pbt.json")
    assert not (pbt_dir / "member_0").exists()


def test_a_population_state_file_is_data(tmp_path, capsys):
    pbt_dir = _population(tmp_path)
    (pbt_dir / "state.json").write_text(
        json.dumps(
            {
                "round": 0,
                "decided": 0,
                "pending": [],
                "rows": [],
                "started_from": [0, 1],
                "operations": [{}, {}],
                "rng": {},
                "hparams": [{"algo.lr": 1e-4, "callbacks.x._target_": "pathlib.Path"}, {"algo.lr": 1e-4}],
            }
        )
    )
    assert pbt_main(["--resume", str(pbt_dir)]) == 2
    _one_line_error(capsys, "state.json", "hparams")


def test_a_ray_backed_population_is_resumed_only_when_trusted(tmp_path, capsys):
    pbt_dir = _population(tmp_path)
    spec = json.loads((pbt_dir / "pbt.json").read_text())
    (pbt_dir / "pbt.json").write_text(json.dumps({**spec, "backend": "ray"}))
    assert pbt_main(["--resume", str(pbt_dir)]) == 2
    _one_line_error(capsys, "--trust-tune-state", "pickles")


# --- what a checkpoint may point at ---------------------------------------------------------------
def test_a_replay_segment_outside_the_checkpoint_folder_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("ca12.data.replay.SEGMENT_TRANSITIONS", 64)  # the buffer in segment files from 64 transitions on
    run = tmp_path / "qmix"
    assert (
        fit_main(
            [
                "--algo",
                "qmix",
                "--run-dir",
                str(run),
                *TINY,
                "env.continuous_actions=false",
                "logger=none",
            ]
        )
        == 0
    )
    outside = tmp_path / "outside.pt"
    shutil.copy(next((run / "checkpoints" / "buffer").iterdir()), outside)
    last = run / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    from ca12.data.buffer_store import manifests

    for manifest in manifests(checkpoint):
        manifest[0] = "buffer/../../../outside.pt"
    torch.save(checkpoint, last)
    capsys.readouterr()
    assert fit_main(["--resume", str(run), "collector.total_frames=300"]) == 2
    _one_line_error(capsys, "outside.pt", "buffer/ folder")


def test_a_truncated_last_checkpoint_points_at_the_intact_one_beside_it(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained["mappo"], run)
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    assert fit_main(["--resume", str(run)]) == 2
    _one_line_error(capsys, "not a readable checkpoint", str(run / "checkpoints" / "iter_00002.ckpt"))


def test_weights_that_do_not_fit_the_config_are_one_line_and_write_nothing(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained["mappo"], run)
    for path in (run / "checkpoints").glob("*.ckpt"):
        checkpoint = torch.load(path, weights_only=True)
        checkpoint["ca12"]["run_config"]["model"]["hidden_sizes"] = [16, 16]
        torch.save(checkpoint, path)
    before = _snapshot(run)
    assert fit_main(["--resume", str(run), "collector.total_frames=300"]) == 2
    _one_line_error(capsys, "weights do not fit")
    assert _snapshot(run) == before and not (run / "wandb").exists()
    assert evaluate_main([str(run), "--episodes", "1"]) == 2
    _one_line_error(capsys, "weights do not fit")
    with pytest.raises(UsageError, match="weights do not fit"):
        ca12.load(run).module


@pytest.mark.parametrize("entry, value", [("wandb_id", "../../../elsewhere"), ("frames", -5), ("iterations", "2")])
def test_the_run_state_a_checkpoint_holds_is_checked_too(trained, tmp_path, capsys, entry, value):
    """W&B names folders after the run id; the counters size the run."""
    run = tmp_path / "run"
    shutil.copytree(trained["mappo"], run)
    last = run / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    checkpoint["ca12"][entry] = value
    torch.save(checkpoint, last)
    assert fit_main(["--resume", str(run), "collector.total_frames=300"]) == 2
    _one_line_error(capsys, str(last))
