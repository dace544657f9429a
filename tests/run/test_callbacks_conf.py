"""The Trainer's callbacks come from conf/callbacks/: ca12's own in order with GracefulStop last,
any Lightning callback added (or one removed) from the command line, fresh or on resume, and bad
entries refused in one line before anything is built or written."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from conftest import TINY, tiny_config
from omegaconf import OmegaConf

from ca12.callbacks import EvaluationCallback, FramesProgressBar, GracefulStop, IterationCheckpoint
from ca12.errors import UsageError
from ca12.fit import main
from ca12.run.config import apply_overrides, load_config
from ca12.run.pipeline import make_run_callbacks

LR_MONITOR = "lightning.pytorch.callbacks.LearningRateMonitor"
MODULE = "ca12_test_recorder"
# A user's callback, in a module of their own: one JSON line per iteration.
RECORDER_SOURCE = """
import json

import lightning as L


class Recorder(L.Callback):
    def __init__(self, path, tag="fresh"):
        self.path, self.tag = path, tag

    def on_train_epoch_end(self, trainer, pl_module):
        names = [type(c).__name__ for c in trainer.callbacks]
        with open(self.path, "a") as f:
            f.write(json.dumps({"iteration": trainer.current_epoch + 1, "tag": self.tag, "callbacks": names}) + "\\n")


class NotACallback:
    pass
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """`ca12_test_recorder` importable, as a user's own module on sys.path; cwd in tmp_path."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / f"{MODULE}.py").write_text(RECORDER_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    monkeypatch.chdir(tmp_path)  # runs/index.txt lands here, not in the repository
    return f"{MODULE}.Recorder"


def test_default_callbacks_are_ca12s_in_order_with_graceful_stop_last(tmp_path):
    cfg = tiny_config("mappo")
    assert list(cfg.callbacks) == ["progress", "evaluation", "checkpoint"]
    evaluator = object()
    built = make_run_callbacks(cfg, tmp_path, evaluator)
    assert [type(c) for c in built] == [FramesProgressBar, EvaluationCallback, IterationCheckpoint, GracefulStop]
    progress, evaluation, checkpoint, _ = built
    assert progress.total_frames == cfg.collector.total_frames == 200
    assert evaluation.evaluator is evaluator and evaluation.every_n_iters == cfg.eval.every_n_iters and evaluation.video_dir is None
    assert checkpoint.dirpath == tmp_path / "checkpoints" and checkpoint.every_n_iters == 1

    only_added = tiny_config("mappo", "callbacks=none", f"+callbacks.lr_monitor._target_={LR_MONITOR}")
    assert [type(c).__name__ for c in make_run_callbacks(only_added, tmp_path, evaluator)] == ["LearningRateMonitor", "GracefulStop"]


def test_removing_a_callback_leaves_the_others_in_order(tmp_path):
    cfg = tiny_config("mappo", "~callbacks.progress")
    assert list(cfg.callbacks) == ["evaluation", "checkpoint"]
    assert [type(c) for c in make_run_callbacks(cfg, tmp_path, object())] == [EvaluationCallback, IterationCheckpoint, GracefulStop]


def test_added_callbacks_run_in_a_real_fit_and_can_be_changed_on_resume(tmp_path, user_module):
    run_dir, log = tmp_path / "run", tmp_path / "calls.jsonl"
    added = [f"+callbacks.recorder._target_={user_module}", f"+callbacks.recorder.path={log}", f"+callbacks.lr_monitor._target_={LR_MONITOR}"]
    assert main(["--algo", "mappo", "--run-dir", str(run_dir), *TINY, "logger=csv", *added]) == 0

    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(c["iteration"], c["tag"]) for c in calls] == [(1, "fresh"), (2, "fresh")]
    ours = [
        name
        for name in calls[0]["callbacks"]
        if name in ("FramesProgressBar", "EvaluationCallback", "IterationCheckpoint", "Recorder", "LearningRateMonitor", "GracefulStop")
    ]
    assert ours == ["FramesProgressBar", "EvaluationCallback", "IterationCheckpoint", "Recorder", "LearningRateMonitor", "GracefulStop"]
    assert calls[0]["callbacks"][-1] == "GracefulStop"
    assert any(name.startswith("lr-") for name in (run_dir / "metrics.csv").read_text().splitlines()[0].split(","))
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["ca12"]["run_config"]["callbacks"]
    assert saved["progress"] == {"_target_": "ca12.callbacks.FramesProgressBar", "total_frames": 200}
    assert saved["recorder"] == {"_target_": user_module, "path": str(log)}
    assert OmegaConf.load(run_dir / "config.yaml").callbacks.lr_monitor._target_ == LR_MONITOR

    # On resume: change an added callback's argument, remove one, add another. A class of the
    # user's own is named again (a checkpoint alone may not make ca12 import code: ca12/untrusted.py).
    assert main(["--resume", str(run_dir), "collector.total_frames=300"]) == 2
    assert (
        main(
            [
                "--resume",
                str(run_dir),
                "collector.total_frames=300",
                f"callbacks.recorder._target_={user_module}",
                "callbacks.recorder.tag=resumed",
                "~callbacks.lr_monitor",
                f"+callbacks.second._target_={user_module}",
                f"+callbacks.second.path={log}",
                "+callbacks.second.tag=second",
            ]
        )
        == 0
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(c["iteration"], c["tag"]) for c in calls[2:]] == [(3, "resumed"), (3, "second")]
    assert "LearningRateMonitor" not in calls[-1]["callbacks"] and calls[-1]["callbacks"][-1] == "GracefulStop"


def test_resume_keeps_the_saved_callbacks_following_the_config():
    saved = OmegaConf.to_container(tiny_config("mappo", f"+callbacks.lr_monitor._target_={LR_MONITOR}"), resolve=True)
    assert saved["callbacks"]["progress"]["total_frames"] == 200, "the checkpoint holds resolved values"
    resumed = apply_overrides(OmegaConf.create(saved), ["collector.total_frames=400", "checkpoint.every_n_iters=5"])
    assert list(resumed.callbacks) == ["progress", "evaluation", "checkpoint", "lr_monitor"]
    assert resumed.callbacks.progress.total_frames == 400 and resumed.callbacks.checkpoint.every_n_iters == 5

    saved["callbacks"]["progress"]["total_frames"] = 999  # set by the user: kept
    assert apply_overrides(OmegaConf.create(saved), ["collector.total_frames=400"]).callbacks.progress.total_frames == 999
    assert list(apply_overrides(OmegaConf.create(saved), ["callbacks=none"]).callbacks) == []

    # The run's own command repeated on resume: a default callback it removed is already gone.
    without = OmegaConf.to_container(tiny_config("mappo", "~callbacks.evaluation"), resolve=True)
    assert list(apply_overrides(OmegaConf.create(without), ["~callbacks.evaluation"]).callbacks) == ["progress", "checkpoint"]
    with pytest.raises(UsageError, match=r"cannot remove 'callbacks.evaluaton': it is not in the config"):
        apply_overrides(OmegaConf.create(without), ["~callbacks.evaluaton"])  # a typo is still refused

    del saved["callbacks"]  # a run saved before callbacks were a config group ran with ca12's own
    resumed = apply_overrides(OmegaConf.create(saved), ["collector.total_frames=400"])
    assert list(resumed.callbacks) == ["progress", "evaluation", "checkpoint"] and resumed.callbacks.progress.total_frames == 400


@pytest.mark.parametrize(
    "added, fragment",
    [
        (
            ["+callbacks.x._target_=no_such_module_ca12.Thing"],
            "callbacks.x._target_: cannot import 'no_such_module_ca12' (ModuleNotFoundError: No module named 'no_such_module_ca12')",
        ),
        ([f"+callbacks.x._target_={MODULE}.Nowhere"], f"callbacks.x._target_: module '{MODULE}' has no 'Nowhere'"),
        (
            [f"+callbacks.x._target_={MODULE}.NotACallback"],
            f"callbacks.x._target_: '{MODULE}.NotACallback' is not a lightning.pytorch.Callback subclass",
        ),
        (["+callbacks.x.path=somewhere"], "callbacks.x has no _target_ (the Lightning Callback class to build)"),
        (
            [f"+callbacks.x._target_={MODULE}.Recorder", "+callbacks.x.path=p", "+callbacks.x.colour=red"],
            "callbacks.x: Recorder takes no argument 'colour'; it takes: path, tag",
        ),
        (
            [f"+callbacks.x._target_={MODULE}.Recorder"],
            "callbacks.x (ca12_test_recorder.Recorder): TypeError: Recorder.__init__() missing 1 required positional argument: 'path'",
        ),
        (
            [f"+callbacks.lr._target_={LR_MONITOR}", "+callbacks.lr.logging_interval=weekly"],
            f"callbacks.lr ({LR_MONITOR}): MisconfigurationException: logging_interval should be",
        ),
        (["callbacks.checkpoint.dirpath=elsewhere"], "callbacks.checkpoint.dirpath is given by ca12.fit at run time"),
        (["+callbacks.best._target_=lightning.pytorch.callbacks.ModelCheckpoint"], "callbacks.best: ca12 writes its own checkpoints"),
        (["~callbacks.nothing"], "cannot remove 'callbacks.nothing': it is not in the config (callbacks: progress, evaluation, checkpoint)"),
        (["callbacks=some"], "unknown callbacks 'some'; choose one of: default, none"),
    ],
)
def test_bad_callbacks_exit_2_with_one_line_and_write_nothing(added, fragment, tmp_path, user_module, capsys):
    run_dir = tmp_path / "run"
    assert main(["--algo", "mappo", "--run-dir", str(run_dir), *TINY, "logger=csv", *added]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err
    assert not run_dir.exists() and not (tmp_path / "runs").exists()


def test_show_config_prints_the_callbacks_section(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--algo", "mappo", "--show-config", "~callbacks.evaluation", f"+callbacks.lr_monitor._target_={LR_MONITOR}"]) == 0
    out = capsys.readouterr().out
    section = out[out.index("\ncallbacks:\n") :].splitlines()[2:]
    assert [line.split(":")[0].strip() for line in section] == ["progress", "checkpoint", "lr_monitor"]
    assert section[0].startswith(
        "  progress: {_target_: ca12.callbacks.FramesProgressBar, total_frames: ${collector.total_frames}}  # Lightning callback"
    )
    assert section[2].startswith(f"  lr_monitor: {{_target_: {LR_MONITOR}}}")
    assert not (tmp_path / "runs").exists()


def test_callbacks_group_options():
    assert load_config("mappo", "vmas/navigation", ["callbacks=none"]).callbacks == {}


def test_a_second_progress_bar_is_refused_in_one_line(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(["--algo", "mappo", "--run-dir", str(run_dir), *TINY, "+callbacks.rich._target_=lightning.pytorch.callbacks.RichProgressBar"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [
        "ca12.fit: error: callbacks.progress and callbacks.rich are both progress bars; Lightning takes one: remove one with ~callbacks.NAME"
    ]
    assert not run_dir.exists()


def test_a_run_saved_before_callbacks_installed_as_ca12_callbacks_resumes(tmp_path):
    """Run directories written before 2026-12-07 name ca12's callbacks `callbacks.NAME` (the
    package was installed at the top level then): they resume with the same callbacks."""
    run_dir = tmp_path / "old"
    assert main(["--algo", "mappo", "--run-dir", str(run_dir), *TINY, "logger=csv", "collector.total_frames=100"]) == 0
    for path in (run_dir / "checkpoints").glob("*.ckpt"):
        checkpoint = torch.load(path, weights_only=True)
        for entry in checkpoint["ca12"]["run_config"]["callbacks"].values():
            entry["_target_"] = entry["_target_"].replace("ca12.callbacks.", "callbacks.")
        torch.save(checkpoint, path)
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["ca12"]["run_config"]["callbacks"]
    assert saved["progress"]["_target_"] == "callbacks.FramesProgressBar"
    assert main(["--resume", str(run_dir), "collector.total_frames=200"]) == 0
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["ca12"]["frames"] == 200
    built = make_run_callbacks(OmegaConf.merge(tiny_config("mappo"), {"callbacks": saved}), tmp_path, None)
    assert [type(c) for c in built] == [FramesProgressBar, EvaluationCallback, IterationCheckpoint, GracefulStop]
