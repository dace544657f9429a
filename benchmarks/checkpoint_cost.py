"""What a checkpoint of a full replay buffer costs: the whole storage in the file (the old way)
against segment files written only when they changed (ca12/data/buffer_store.py).

    python benchmarks/checkpoint_cost.py [--transitions 1000000] [--per-iteration 6000]
                                         [--iterations 5] [--iteration-s 11] [--storage memory]
                                         [--dir DIR]

The buffer is ca12's own for MADDPG on VMAS navigation (BenchMARL's off-policy task: 60 envs x
100 steps = 6 000 frames per iteration): the `ReplayDataModule` the algorithm builds, a real
batch collected by its collector with the module's policy, that batch's transitions written
again until the buffer holds `--transitions` of them (CPU). Measured in the same run, each into
its own checkpoint folder: (a) the first checkpoint of the full buffer, (b) `--iterations`
steady-state iterations, each after `--per-iteration` new transitions (the ring buffer
overwrites its oldest). A checkpoint is what `IterationCheckpoint` writes of it: the data
module's state and the module's weights to a temporary name renamed into place, and for the new
way its changed segments and the deletion of the files no checkpoint needs. Prints seconds and
MB written, and (b) as a share of an iteration of `--iteration-s` seconds (MADDPG's CPU
iteration at this work; the target is 5 %). Writes go through the page cache: a disk that
cannot absorb them makes the old way slower still.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from ca12.algos import algo_class
from ca12.data.buffer_store import FOLDER, collect_garbage
from ca12.data.collectors import make_collector
from ca12.data.replay import replay_view
from ca12.envs import make_env, make_spec_env
from ca12.run.config import load_config


def full_buffer(transitions: int, storage: str):
    """MADDPG's data module and module, its buffer filled with `transitions` real transitions."""
    cfg = load_config("maddpg", "vmas/navigation", [f"algo.buffer_size={transitions}", f"algo.buffer_storage={storage}", "logger=none"])
    algorithm = algo_class("maddpg")
    module = algorithm(cfg, make_spec_env(cfg.env, cfg.seed))
    env_factory = partial(make_env, cfg.env, transforms=module.env_transforms())
    data = algorithm.make_datamodule(cfg, env_factory)
    data.env = env_factory(cfg.seed, torch.device("cpu"))  # as `ReplayDataModule.setup` and `train_dataloader` build them
    data.collector = make_collector(
        data.collector_kind,
        data.workers,
        env_factory,
        data.env,
        module.policy,
        data.frames_per_batch,
        cfg.seed,
        data.env.device,
        data.episode_aligned,
    )
    batch = data.next_batch()  # collected with the module's policy, written to the buffer
    transitions_of_batch = replay_view(batch.fresh).reshape(-1)
    while len(data.buffer) < transitions:
        data.buffer.extend(transitions_of_batch[: transitions - len(data.buffer)])
    data.collector.shutdown()
    data.collector = None  # its counters are left out of both checkpoints alike
    return data, module, transitions_of_batch


def save_old(data, module, folder: Path) -> int:
    """The checkpoint as before segments: TorchRL's whole buffer state in the file."""
    state = {"datamodule": {**super(type(data), data).state_dict(), "buffer": data.buffer.state_dict()}, "state_dict": module.state_dict()}
    return _write(state, folder / "last.ckpt")


def save_new(data, module, folder: Path, cache: dict) -> int:
    """The checkpoint now: the changed segments, the small file, then garbage collection."""
    before = _files(folder)
    data.checkpoint_dir = folder
    state = {"datamodule": data.state_dict(), "state_dict": module.state_dict()}
    size = _write(state, folder / "last.ckpt")
    collect_garbage(folder, cache)
    return size + sum(path.stat().st_size for path in _files(folder) - before)


def _write(state: dict, path: Path) -> int:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path.stat().st_size


def _files(folder: Path) -> set[Path]:
    return set((folder / FOLDER).glob("*.pt"))


def timed(fn, *args) -> tuple[float, int]:
    start = time.perf_counter()
    written = fn(*args)
    return time.perf_counter() - start, written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transitions", type=int, default=1_000_000, help="replay buffer capacity, filled")
    parser.add_argument("--per-iteration", type=int, default=6000, help="new transitions per iteration (BenchMARL's off-policy work)")
    parser.add_argument("--iterations", type=int, default=5, help="steady-state iterations measured")
    parser.add_argument("--iteration-s", type=float, default=11.0, help="seconds of one training iteration to compare with")
    parser.add_argument("--storage", choices=["memory", "memmap"], default="memory")
    parser.add_argument("--dir", type=Path, default=None, help="where to write the checkpoints (default: a temporary folder)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    data, module, fresh = full_buffer(args.transitions, args.storage)
    row_bytes = sum(t[0].numel() * t.element_size() for t in data.buffer.storage.get(slice(0, 1)).values(True, True))
    print(f"buffer: {len(data.buffer)} transitions of {row_bytes} bytes ({args.storage}), {data.buffer_checkpoint.segment_items} per segment file")
    with tempfile.TemporaryDirectory(dir=args.dir) as root:
        old, new, cache = Path(root) / "old", Path(root) / "new", {}
        old.mkdir(), new.mkdir()
        first = {"old": timed(save_old, data, module, old), "new": timed(save_new, data, module, new, cache)}
        steady = {"old": [], "new": []}
        for i in range(args.iterations):
            data.buffer.extend(fresh[: args.per_iteration])
            steady["old"].append(timed(save_old, data, module, old))
            steady["new"].append(timed(save_new, data, module, new, cache))
        kept = sum(path.stat().st_size for path in _files(new)) + (new / "last.ckpt").stat().st_size

    mb = 1e6
    print(f"\n{'checkpoint':<34}{'old s':>9}{'new s':>9}{'old MB':>9}{'new MB':>9}{'new/old':>9}")
    (t_old, b_old), (t_new, b_new) = first["old"], first["new"]
    print(f"{'(a) first, full buffer':<34}{t_old:>9.3f}{t_new:>9.3f}{b_old / mb:>9.1f}{b_new / mb:>9.1f}{t_new / t_old:>9.3f}")
    med = {k: statistics.median(t for t, _ in v) for k, v in steady.items()}
    worst = {k: max(t for t, _ in v) for k, v in steady.items()}
    written = {k: statistics.median(b for _, b in v) for k, v in steady.items()}
    label = f"(b) steady, +{args.per_iteration} (median)"
    print(f"{label:<34}{med['old']:>9.3f}{med['new']:>9.3f}{written['old'] / mb:>9.1f}{written['new'] / mb:>9.1f}{med['new'] / med['old']:>9.3f}")
    print(f"{'(b) steady, slowest of ' + str(args.iterations):<34}{worst['old']:>9.3f}{worst['new']:>9.3f}")
    print(
        f"\nsteady-state checkpoint / {args.iteration_s:g} s iteration: old {100 * med['old'] / args.iteration_s:.1f} %, "
        f"new {100 * med['new'] / args.iteration_s:.2f} % (slowest {100 * worst['new'] / args.iteration_s:.2f} %; target <= 5 %)"
    )
    print(f"on disk after the run: old {b_old / mb:.1f} MB per checkpoint, new {kept / mb:.1f} MB (last.ckpt and its segment files)")


if __name__ == "__main__":
    main()
