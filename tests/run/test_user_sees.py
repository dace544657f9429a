"""What a user sees on the console: the final line's evaluation return, the note when W&B goes
offline by itself, progress in a log file, a return no episode has produced yet, and the answer
to Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import TINY, tiny_args, tiny_config

from ca12.callbacks import GracefulStop
from ca12.fit import main
from ca12.run import tracking
from ca12.run.tracking import ITERATION_KEY, final_summary, make_loggers, read_metrics_rows


def test_the_final_line_shows_the_last_evaluation_return(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["--algo", "mappo", "--run-dir", str(run_dir), *TINY, "logger=csv", "eval.every_n_iters=1", "eval.episodes=2"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    evaluation = float(read_metrics_rows(run_dir / "metrics.csv")[-1]["eval/episode_reward_mean"])
    assert f" | eval/episode_reward_mean {evaluation:.3f} | 200 frames | run directory: {run_dir}" in last
    assert last.startswith("final rollout/episode_reward_mean ") and "(at iteration" not in last  # evaluated at the end


def _metrics_csv(run_dir: Path, rows: list[str]) -> None:
    run_dir.mkdir()
    (run_dir / "metrics.csv").write_text(
        "\n".join([f"{ITERATION_KEY},time/frames,rollout/episode_reward_mean,eval/episode_reward_mean", *rows]) + "\n"
    )


def test_the_final_line_says_where_an_earlier_evaluation_was_and_omits_a_missing_one(tmp_path):
    module = SimpleNamespace(iterations=3, frames=300)
    _metrics_csv(tmp_path / "evaluated", ["1,100,0.1,", "2,200,0.2,0.75", "3,300,0.3,"])
    line = final_summary({"rollout/episode_reward_mean": torch.tensor(0.3)}, module, tmp_path / "evaluated", signum=2)
    assert line == (
        f"stopped by signal 2 after iteration 3, checkpoint saved | final rollout/episode_reward_mean 0.300 | "
        f"eval/episode_reward_mean 0.750 (at iteration 2, 200 frames) | 300 frames | run directory: {tmp_path / 'evaluated'}"
    )
    _metrics_csv(tmp_path / "unevaluated", ["1,100,nan,", "2,200,nan,", "3,300,nan,"])  # eval.every_n_iters=0
    line = final_summary({"rollout/episode_reward_mean": torch.tensor(float("nan"))}, module, tmp_path / "unevaluated")
    assert line == f"final rollout/episode_reward_mean – (no training episode ended) | 300 frames | run directory: {tmp_path / 'unevaluated'}"


def test_wandb_going_offline_by_itself_says_so_once_with_the_sync_command(tmp_path, monkeypatch, capsys, no_wandb_credentials):
    monkeypatch.setattr(tracking, "_offline_said", False, raising=False)
    cfg = tiny_config("mappo")
    assert cfg.logger.wandb.mode == "auto"
    make_loggers(cfg, tmp_path / "a")
    make_loggers(cfg, tmp_path / "b")  # a sweep's next run in the same process: said already
    err = capsys.readouterr().err
    assert err == (
        f"ca12.fit: note: no W&B credentials (wandb login or WANDB_API_KEY), so W&B logs offline; "
        f"upload the run later with: wandb sync {tmp_path / 'a'}/wandb/offline-run-*\n"
    )
    monkeypatch.setattr(tracking, "_offline_said", False)
    monkeypatch.setattr(tracking.rank_zero_only, "rank", 1)  # a DDP process other than rank 0
    make_loggers(cfg, tmp_path / "c")
    monkeypatch.setattr(tracking.rank_zero_only, "rank", 0)
    monkeypatch.setenv("WANDB_MODE", "offline")  # offline because the user said so: nothing to tell
    make_loggers(cfg, tmp_path / "d")
    assert capsys.readouterr().err == ""


def test_a_log_file_shows_progress_lines_to_100_percent_and_why_there_is_no_return_yet(tmp_path, capsys):
    # Episodes of 50 steps, 25 steps per batch: none has ended after the first iteration.
    args = ["--algo", "masac", "--run-dir", str(tmp_path / "run"), *tiny_args("masac"), "env.max_steps=50", "logger=csv", "eval.every_n_iters=0"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "\r" not in captured.err and not re.search(r"\bnan\b", captured.err + captured.out)
    lines = [line for line in captured.err.splitlines() if "frames [" in line]
    assert [line.split(" [")[0] for line in lines] == [" 50% | 100/200 frames", "100% | 200/200 frames"]
    assert lines[0].endswith("return=– (no episode ended yet)]") and "return=" in lines[1] and "no episode" not in lines[1]
    assert float(read_metrics_rows(tmp_path / "run" / "metrics.csv")[1]["rollout/episode_reward_mean"]) == pytest.approx(
        float(lines[1].rpartition("return=")[2].rstrip("]")), abs=1e-3
    )


def test_the_first_ctrl_c_is_answered_at_once(capsys):
    stop, trainer = GracefulStop(), SimpleNamespace(is_global_zero=True, should_stop=False)
    before = signal.getsignal(signal.SIGINT)
    stop.on_train_start(trainer, None)
    try:
        os.kill(os.getpid(), signal.SIGINT)  # handled between two bytecodes of this thread
        assert stop.requested == signal.SIGINT
        assert capsys.readouterr().err == (
            "ca12.fit: SIGINT received: stopping after this iteration, once its checkpoint is saved (Ctrl-C again to stop now)\n"
        )
        stop.on_train_epoch_end(trainer, None)
        assert trainer.should_stop
        with pytest.raises(KeyboardInterrupt):  # the second one stops at once, saying nothing more
            os.kill(os.getpid(), signal.SIGINT)
        assert capsys.readouterr().err == ""
    finally:
        stop.on_train_end(trainer, None)
    assert signal.getsignal(signal.SIGINT) is before


def test_other_ranks_stay_silent_on_a_signal(capsys):
    stop = GracefulStop()
    stop.on_train_start(SimpleNamespace(is_global_zero=False), None)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested == signal.SIGTERM and capsys.readouterr().err == ""
    finally:
        stop.on_train_end(None, None)
