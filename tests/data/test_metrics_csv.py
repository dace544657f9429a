"""metrics.csv (`ca12.run.tracking.MetricsCSV`): rows appended as iterations are logged, the file
always what was logged, and a resumed run reading back only complete rows."""

import csv

from ca12.multirun.pbt.members import member_score
from ca12.run.tracking import ITERATION_KEY, MetricsCSV, read_metrics_rows


def read(path):
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def log_iteration(logger, i, **metrics):
    logger.log_metrics({ITERATION_KEY: i, **metrics})
    logger.save()


def test_saves_append_new_rows_without_rewriting_the_file(tmp_path):
    path = tmp_path / "metrics.csv"
    logger = MetricsCSV(path)
    log_iteration(logger, 1, loss=1.0)
    inode = path.stat().st_ino
    for i in range(2, 50):
        log_iteration(logger, i, loss=1.0 / i)
    assert path.stat().st_ino == inode  # appended in place: a rewrite goes through a new file
    rows = read(path)
    assert [int(r[ITERATION_KEY]) for r in rows] == list(range(1, 50))
    assert float(rows[-1]["loss"]) == 1.0 / 49


def test_the_last_row_completed_after_its_save_is_rewritten_in_place(tmp_path):
    path = tmp_path / "metrics.csv"
    logger = MetricsCSV(path)
    log_iteration(logger, 1, loss=1.0, reward=0.5)
    log_iteration(logger, 2, loss=0.5, reward=0.75)
    inode = path.stat().st_ino
    log_iteration(logger, 2, reward=0.8)  # an evaluation of iteration 2, after its training metrics
    log_iteration(logger, 3, loss=0.25, reward=0.9)
    assert path.stat().st_ino == inode
    assert read(path) == [
        {ITERATION_KEY: "1", "loss": "1.0", "reward": "0.5"},
        {ITERATION_KEY: "2", "loss": "0.5", "reward": "0.8"},
        {ITERATION_KEY: "3", "loss": "0.25", "reward": "0.9"},
    ]


def test_a_new_column_or_an_earlier_row_rewrites_the_whole_file(tmp_path):
    path = tmp_path / "metrics.csv"
    logger = MetricsCSV(path)
    for i in (1, 2, 3):
        log_iteration(logger, i, loss=float(i))
    log_iteration(logger, 3, **{"eval/return": 7.0})  # a new column: the header changes
    assert read(path)[-1] == {ITERATION_KEY: "3", "loss": "3.0", "eval/return": "7.0"}
    assert list(read(path)[0]) == [ITERATION_KEY, "loss"]  # empty cells are read as absent
    log_iteration(logger, 1, **{"eval/return": 5.0})  # an earlier row
    log_iteration(logger, 4, loss=4.0)
    assert read(path) == [
        {ITERATION_KEY: "1", "loss": "1.0", "eval/return": "5.0"},
        {ITERATION_KEY: "2", "loss": "2.0"},
        {ITERATION_KEY: "3", "loss": "3.0", "eval/return": "7.0"},
        {ITERATION_KEY: "4", "loss": "4.0"},
    ]
    assert not path.with_name("metrics.csv.tmp").exists()


def test_a_file_deleted_mid_run_is_written_anew_with_every_row(tmp_path):
    path = tmp_path / "metrics.csv"
    logger = MetricsCSV(path)
    log_iteration(logger, 1, loss=1.0)
    path.unlink()
    log_iteration(logger, 2, loss=2.0)
    assert read(path) == [{ITERATION_KEY: "1", "loss": "1.0"}, {ITERATION_KEY: "2", "loss": "2.0"}]


def test_resume_keeps_complete_rows_up_to_the_checkpoint_and_drops_a_line_cut_short(tmp_path):
    path = tmp_path / "metrics.csv"
    logger = MetricsCSV(path)
    for i in range(1, 6):
        log_iteration(logger, i, loss=float(i))
    with open(path, "ab") as f:
        f.write(b"6,0.12")  # a crash in the middle of appending iteration 6's row
    assert MetricsCSV(path, keep_until_iteration=10).rows.keys() == {1, 2, 3, 4, 5}
    resumed = MetricsCSV(path, keep_until_iteration=3)
    log_iteration(resumed, 4, loss=40.0)
    log_iteration(resumed, 5, loss=50.0)
    assert read(path) == [
        {ITERATION_KEY: "1", "loss": "1.0"},
        {ITERATION_KEY: "2", "loss": "2.0"},
        {ITERATION_KEY: "3", "loss": "3.0"},
        {ITERATION_KEY: "4", "loss": "40.0"},
        {ITERATION_KEY: "5", "loss": "50.0"},
    ]


def test_readers_of_a_run_skip_a_row_cut_short_by_a_crash(tmp_path):
    path = tmp_path / "metrics.csv"
    logger = MetricsCSV(path)
    for i in (1, 2):
        log_iteration(logger, i, **{"time/frames": 100.0 * i, "rollout/episode_reward_mean": float(i)})
    with open(path, "ab") as f:
        f.write(b"3,3.0,30")  # iteration 3's row killed mid-write: its frames (300) would read as 30
    assert [row[ITERATION_KEY] for row in read_metrics_rows(path)] == ["1", "2"]
    assert member_score(tmp_path, 0, 1000, "rollout/episode_reward_mean") == 1.5  # PBT's score reads the same rows
