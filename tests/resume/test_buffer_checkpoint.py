"""Replay-buffer checkpoints in segment files (ca12/data/buffer_store.py): a save writes only the
segments that changed, resume is exact from any kept checkpoint, a crash or a lost file never
passes unnoticed, and files no checkpoint needs are deleted."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_args
from tensordict import TensorDict

import ca12.data.buffer_store as buffer_store
from ca12.data import ReplayDataModule
from ca12.fit import main
from ca12.multirun.pbt.members import install_checkpoint

SEGMENT = 64  # transitions per segment file in these tests (32 768 in real runs)
# 100 frames per iteration into a 256-transition buffer: it wraps around in the third iteration.
RUN = ["logger=none", "eval.every_n_iters=0", "algo.buffer_size=256"]


@pytest.fixture(autouse=True)
def _small_segments(monkeypatch):
    monkeypatch.setattr("ca12.data.replay.SEGMENT_TRANSITIONS", SEGMENT)


def _writes(monkeypatch) -> list[Path]:
    """The segment files written from now on, in order."""
    written, write = [], buffer_store.write_segment

    def recording(rows, path):
        assert not path.exists(), f"{path} would be overwritten"
        write(rows, path)
        written.append(path)

    monkeypatch.setattr(buffer_store, "write_segment", recording)
    return written


# --- the data module's state, without a run -------------------------------------------------------
def _datamodule(kind: str = "memory") -> ReplayDataModule:
    return ReplayDataModule(
        None,
        100,
        0,
        buffer_size=320,
        minibatch_size=8,
        buffer_storage="memmap" if kind == "memmap" else "memory",
        prioritized=kind == "prioritized",
        sequence_length=4 if kind == "sequence" else None,
    )


def _items(n: int, start: int, kind: str = "memory") -> TensorDict:
    """n items numbered from `start` ([n, 4] chunks for sequence replay)."""
    shape = (n, 4) if kind == "sequence" else (n,)
    number = torch.arange(start, start + n).reshape(n, *[1] * (len(shape) - 1)).expand(shape)
    observation = number.unsqueeze(-1).float().expand(*shape, 32).clone()
    return TensorDict({"observation": observation, ("next", "done"): number.unsqueeze(-1) % 7 == 0}, shape)


def _segments_of(paths: list[Path]) -> list[int]:
    return sorted(int(path.name[3:8]) for path in paths)


def test_a_save_writes_only_the_segments_the_writer_touched(tmp_path, monkeypatch):
    data = _datamodule()  # 320 slots in 5 segments of 64
    data.checkpoint_dir = tmp_path
    written = _writes(monkeypatch)

    def save_after(n: int, start: int) -> list[int]:
        data.buffer.extend(_items(n, start))
        del written[:]
        state = data.state_dict()["buffer"]["_storage"]
        assert all((tmp_path / name).is_file() for name in state.get("segments", {}).values())
        return _segments_of(written)

    assert save_after(40, 0) == [] and not (tmp_path / "buffer").exists()  # fits one segment: kept inline
    assert save_after(60, 40) == [0, 1]  # 100 items: both segments written once the buffer outgrows one
    assert save_after(30, 100) == [1, 2]  # items 100..129
    del written[:]
    data.state_dict()
    assert written == [], "a second checkpoint of the same iteration writes nothing"
    assert save_after(200, 130) == [0, 2, 3, 4]  # items 130..319, then 0..9 after the wrap
    assert save_after(320, 330) == [0, 1, 2, 3, 4]  # a whole lap
    whole = _saved(data.buffer.state_dict(), tmp_path).stat().st_size  # TorchRL's state: the whole storage
    assert max(path.stat().st_size for path in written) < whole / 3, "a segment file holds its 64 items, not the buffer's 320"


@pytest.mark.parametrize("kind", ["memory", "memmap", "prioritized", "sequence"])
def test_a_fresh_data_module_loads_the_segments_back_exactly(kind, tmp_path):
    saved = _datamodule(kind)
    saved.checkpoint_dir = tmp_path
    capacity = saved.buffer.storage.max_size  # 320 transitions, 80 chunks of 4
    saved.buffer.extend(_items(capacity - 10, 0, kind))
    saved.state_dict()
    saved.buffer.extend(_items(25, capacity, kind))  # wraps around
    if kind == "prioritized":
        saved.buffer.update_priority(torch.arange(capacity), torch.rand(capacity))
    state = saved.state_dict()
    assert state["buffer"]["_storage"]["segments"]

    loaded = _datamodule(kind)
    loaded.buffer_checkpoint.load_state_dict(torch.load(_saved(state, tmp_path), weights_only=True)["buffer"], tmp_path)
    assert len(loaded.buffer) == len(saved.buffer) == capacity
    assert (loaded.buffer.storage.get(slice(0, capacity)) == saved.buffer.storage.get(slice(0, capacity))).all()
    assert loaded.buffer.state_dict()["_writer"] == saved.buffer.state_dict()["_writer"]
    if kind == "prioritized":
        assert torch.equal(loaded.buffer.sampler.state_dict()["priority"], saved.buffer.sampler.state_dict()["priority"])
    loaded.buffer.extend(_items(7, 0, kind))
    saved.buffer.extend(_items(7, 0, kind))
    assert (loaded.buffer.storage.get(slice(0, capacity)) == saved.buffer.storage.get(slice(0, capacity))).all()


def _saved(state: dict, folder: Path) -> Path:
    """`state` written as a checkpoint file would be (plain values, the safe loader reads it)."""
    path = folder / "state.ckpt"
    torch.save(state, path)
    return path


# --- runs -----------------------------------------------------------------------------------------
def _contents(path: Path) -> tuple[TensorDict, dict]:
    """A checkpoint's buffer rows (read from its segment files) and the rest of its buffer state."""
    checkpoint = torch.load(path, weights_only=True)
    (key,) = [k for k in checkpoint if k.endswith("ReplayDataModule")]
    buffer = checkpoint[key]["buffer"]
    files = buffer["_storage"]["segments"]
    rows = [TensorDict().load_state_dict(torch.load(path.parent / files[i], weights_only=True), strict=False) for i in sorted(files)]
    return torch.cat(rows), buffer


def _assert_same_run(a: Path, b: Path) -> None:
    """Two runs' last checkpoints hold the same weights, optimiser state and replay buffer."""
    ca, cb = (torch.load(run / "checkpoints" / "last.ckpt", weights_only=True) for run in (a, b))
    assert ca["ca12"]["frames"] == cb["ca12"]["frames"]
    for key in ca["state_dict"]:
        assert torch.equal(ca["state_dict"][key], cb["state_dict"][key]), key
    for sa, sb in zip(ca["optimizer_states"][0]["state"].values(), cb["optimizer_states"][0]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    (rows_a, buffer_a), (rows_b, buffer_b) = (_contents(run / "checkpoints" / "last.ckpt") for run in (a, b))
    assert rows_a.shape == rows_b.shape and (rows_a == rows_b).all()
    assert buffer_a["_writer"] == buffer_b["_writer"] and buffer_a["_storage"]["_len"] == buffer_b["_storage"]["_len"]
    for key, value in buffer_a["_sampler"].items():
        assert torch.equal(value, buffer_b["_sampler"][key]), key


# (algo, args, frames per iteration): the splits are at the third iteration for transitions
# (300 of 256 slots: this save's items wrapped around) and the fourth for sequences (144 of 128).
CASES = [
    ("iql", [*tiny_args("iql"), *RUN], 100),
    ("vdn", [*tiny_args("vdn"), *RUN, "algo.buffer_storage=memmap", "algo.prioritized=true"], 100),
    # sequence replay: 36 chunks of 8 steps per iteration, 128 in the buffer, 8 per segment
    (
        "qmix",
        [
            "--env",
            "memory/cue",
            "logger=none",
            "eval.every_n_iters=0",
            "model=gru",
            "model.hidden_size=16",
            "model.hidden_sizes=[16]",
            "env.num_envs=12",
            "collector.frames_per_batch=192",
            "algo.sequence_length=8",
            "algo.burn_in=4",
            "algo.warmup_frames=200",
            "algo.buffer_size=1024",
            "algo.minibatch_size=32",
            "algo.updates_per_frame=0.05",
            "checkpoint.every_n_iters=1",
        ],
        192,
    ),
]


@pytest.mark.parametrize("algo, args, frames", CASES, ids=["memory", "memmap_prioritized", "sequences"])
def test_resume_from_last_and_from_an_older_checkpoint_is_bit_exact_after_the_buffer_wrapped(algo, args, frames, tmp_path, monkeypatch):
    _writes(monkeypatch)  # and no segment file is ever written over
    split_at = 3 if algo != "qmix" else 4
    one_go, split = tmp_path / "one_go", tmp_path / "split"
    assert main(["--algo", algo, "--run-dir", str(one_go), *args, f"collector.total_frames={6 * frames}"]) == 0
    assert main(["--algo", algo, "--run-dir", str(split), *args, f"collector.total_frames={split_at * frames}"]) == 0
    _, buffer = _contents(split / "checkpoints" / "last.ckpt")
    assert buffer["_writer"]["_write_count"] > buffer["_storage"]["_len"], "the buffer wrapped around"
    assert main(["--resume", str(split), f"collector.total_frames={6 * frames}"]) == 0
    _assert_same_run(one_go, split)

    # From that iteration again, now an older checkpoint: its segment files were kept, and what the
    # rerun writes takes names of its own (the iterations after it wrote the same generations).
    older = split / "checkpoints" / f"iter_{split_at:05d}.ckpt"
    assert main(["--resume", str(older), f"collector.total_frames={6 * frames}"]) == 0
    _assert_same_run(one_go, split)


def _referenced(folder: Path) -> set[str]:
    return set().union(*(buffer_store.referenced_files(path) for path in folder.glob("*.ckpt")))


def test_a_crash_while_writing_segments_leaves_the_previous_checkpoint_resumable(tmp_path, monkeypatch):
    args = [*tiny_args("iql"), *RUN]
    one_go, run = tmp_path / "one_go", tmp_path / "run"
    assert main(["--algo", "iql", "--run-dir", str(one_go), *args, "collector.total_frames=500"]) == 0
    assert main(["--algo", "iql", "--run-dir", str(run), *args, "collector.total_frames=300"]) == 0
    checkpoints = run / "checkpoints"
    before = {path: path.read_bytes() for path in [*checkpoints.glob("*.ckpt"), *checkpoints.glob("buffer/*")]}

    calls, write = [], buffer_store.write_segment

    def crash_half_way(rows, path):  # the first segment of iteration 4 is written, the second is not
        calls.append(path)
        if len(calls) == 2:
            torch.save(rows, path.with_name(path.name + ".tmp"))  # a half-written temporary file
            raise OSError("disk gone")
        write(rows, path)

    monkeypatch.setattr(buffer_store, "write_segment", crash_half_way)
    with pytest.raises(OSError, match="disk gone"):
        main(["--resume", str(run), "collector.total_frames=500"])
    monkeypatch.setattr(buffer_store, "write_segment", write)
    for path, content in before.items():  # every checkpoint and the files they refer to are as they were
        assert path.read_bytes() == content, path
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["ca12"]["frames"] == 300

    assert main(["--resume", str(run), "collector.total_frames=500"]) == 0
    _assert_same_run(one_go, run)
    assert {f"buffer/{path.name}" for path in (checkpoints / "buffer").iterdir()} == _referenced(checkpoints), "the crash's leftovers are deleted"


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_missing_or_corrupt_segment_file_is_a_one_line_error_naming_it(damage, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["--algo", "iql", "--run-dir", str(run), *tiny_args("iql"), *RUN, "collector.total_frames=300"]) == 0
    _, buffer = _contents(run / "checkpoints" / "last.ckpt")
    segment = run / "checkpoints" / buffer["_storage"]["segments"][1]
    if damage == "missing":
        segment.unlink()
    else:
        segment.write_bytes(segment.read_bytes()[:100])
    capsys.readouterr()
    assert main(["--resume", str(run), "collector.total_frames=400"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("ca12.fit: error: replay buffer segment") and f"'{segment.resolve()}'" in err[0], err
    assert ("is missing" if damage == "missing" else "is not readable") in err[0]


def test_garbage_collection_keeps_what_kept_checkpoints_need_and_deletes_the_rest(tmp_path, monkeypatch):
    run = tmp_path / "run"
    written = _writes(monkeypatch)
    args = [*tiny_args("iql"), *RUN, "checkpoint.every_n_iters=3"]
    assert main(["--algo", "iql", "--run-dir", str(run), *args, "collector.total_frames=500"]) == 0
    checkpoints = run / "checkpoints"
    files = {f"buffer/{path.name}" for path in (checkpoints / "buffer").iterdir()}
    assert files == _referenced(checkpoints) and len(written) > len(files), "files no checkpoint refers to were deleted"
    only_older = buffer_store.referenced_files(checkpoints / "iter_00003.ckpt") - buffer_store.referenced_files(checkpoints / "last.ckpt")
    assert only_older and only_older <= files, "iter_00003.ckpt's own segment files are kept"

    stray = checkpoints / "buffer" / "seg00001-w000000000999.pt.tmp"  # left by a crash
    stray.write_bytes(b"half")
    (checkpoints / "iter_00003.ckpt").unlink()
    assert main(["--resume", str(run), "collector.total_frames=600"]) == 0
    files = {f"buffer/{path.name}" for path in (checkpoints / "buffer").iterdir()}
    assert files == _referenced(checkpoints) and not stray.exists() and not files & only_older


def test_checkpoint_keep_deletes_older_iteration_checkpoints_and_the_buffer_files_only_they_needed(tmp_path):
    run = tmp_path / "run"
    args = [*tiny_args("iql"), *RUN, "checkpoint.every_n_iters=1", "checkpoint.keep=2"]
    assert main(["--algo", "iql", "--run-dir", str(run), *args, "collector.total_frames=500"]) == 0
    checkpoints = run / "checkpoints"
    assert sorted(path.name for path in checkpoints.glob("*.ckpt")) == ["iter_00004.ckpt", "iter_00005.ckpt", "last.ckpt"]
    assert {f"buffer/{path.name}" for path in (checkpoints / "buffer").iterdir()} == _referenced(checkpoints)
    assert main(["--resume", str(checkpoints / "iter_00004.ckpt"), "collector.total_frames=600"]) == 0  # a kept one resumes
    assert sorted(path.name for path in checkpoints.glob("iter_*.ckpt")) == ["iter_00005.ckpt", "iter_00006.ckpt"]


def test_an_exploited_member_copies_the_donors_segment_files(tmp_path):
    """PBT's exploit (`install_checkpoint`) brings the segment files the donor's checkpoint refers
    to into the member's folder, under names of its own: both members wrote the same generations."""
    members = [tmp_path / "member_0", tmp_path / "member_1"]
    for seed, run in enumerate(members):
        assert main(["--algo", "iql", "--seed", str(seed), "--run-dir", str(run), *tiny_args("iql"), *RUN, "collector.total_frames=300"]) == 0
    member, donor = (run / "checkpoints" for run in members)
    donor_files = {path.name: path.read_bytes() for path in (donor / "buffer").iterdir()}
    install_checkpoint(donor / "last.ckpt", members[0])

    copied, _ = _contents(member / "last.ckpt")
    original, _ = _contents(donor / "last.ckpt")
    assert (copied == original).all()
    assert {f"buffer/{p.name}" for p in (member / "buffer").iterdir()} == _referenced(member), "the member's own files are deleted"
    assert {p.name: p.read_bytes() for p in (donor / "buffer").iterdir()} == donor_files, "the donor's folder is untouched"
    assert main(["--resume", str(members[0]), "collector.total_frames=400"]) == 0
