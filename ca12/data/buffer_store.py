"""Replay-buffer checkpoints whose cost per iteration is what changed, not the buffer's size.

`last.ckpt` is rewritten after every iteration; with the whole storage in it, a full 1 M
transition buffer made that hundreds of MB each time. Instead the storage's items [0, len) are
cut into segments of `SEGMENT_TRANSITIONS` transitions (fewer items for sequence replay, whose
items hold several), each saved as its own file in the checkpoint folder's `buffer/`:

* A save writes only the segments the round-robin writer touched since the previous save (found
  from the writer's cursor and write count then and now); the others keep the files written
  before. A file is named after its segment and its content generation, the writer's count of
  items written (`seg00003-w000000120000.pt`), written under a temporary name and renamed; a
  name already taken gets a suffix, so no file a checkpoint refers to is ever modified.
* The checkpoint keeps TorchRL's buffer state (writer, sampler, priorities and all), with the
  storage's rows replaced by a manifest {segment: file, relative to the checkpoint's folder}:
  plain values only, as are the segment files (the rows as TorchRL's own tensordict state,
  compact CPU tensors), both read with `torch.load(weights_only=True)`.
* Once a checkpoint is in place, `collect_garbage` deletes the files no checkpoint of the folder
  refers to (`callbacks.checkpoint.IterationCheckpoint` calls it); `import_segments` copies what a
  checkpoint refers to when it moves to another folder (PBT's exploit).
* A buffer that fits in one segment (or saved with no checkpoint folder) stays in the checkpoint,
  its filled rows in TorchRL's layout: one segment file would be rewritten every save anyway,
  and small runs keep self-contained checkpoints.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import TensorDictReplayBuffer

from ca12.errors import UsageError

SEGMENT_TRANSITIONS = 32_768  # 16 MB of MADDPG's navigation transitions (504 bytes each)
FOLDER = "buffer"  # in the checkpoint folder


@dataclass
class _Saved:
    """What the last save left on disk: where, the writer's position then, which file holds each segment."""

    folder: Path
    cursor: int
    write_count: int
    segment_items: int
    files: dict[int, str]


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    """A compact CPU copy: a slice would save its whole storage, a memory-mapped tensor its class."""
    return torch.empty(tensor.shape, dtype=tensor.dtype).copy_(tensor)


class BufferCheckpoint:
    """Saves and restores a replay buffer's state with its storage in segment files.

    Args:
        buffer: the replay buffer (a round-robin writer, any sampler and tensordict storage).
        segment_items: items per segment file.
    """

    def __init__(self, buffer: TensorDictReplayBuffer, segment_items: int):
        self.buffer = buffer
        self.segment_items = segment_items
        self._saved: _Saved | None = None

    def state_dict(self, folder: Path | None, write: bool = True) -> dict:
        """The buffer's state for a checkpoint in `folder`, its changed segments written there.

        `write=False` (DDP ranks other than 0, whose checkpoints are not saved) writes nothing and
        leaves the manifest empty.
        """
        state = self.buffer.state_dict()
        length = state["_storage"]["_len"]
        if folder is None or length <= self.segment_items:
            state["_storage"]["_storage"] = self._rows(0, length).state_dict() if length else {}
            self._saved = None
            return state
        folder = Path(folder).resolve()
        files = {} if not write else self._write_segments(folder, length, state["_writer"])
        state["_storage"] = {"_len": length, "initialized": True, "segment_items": self.segment_items, "segments": files}
        return state

    def load_state_dict(self, state: dict, folder: Path | None) -> None:
        """Restore `state`, reading its segment files from `folder` (the checkpoint's).

        Raises:
            UsageError: a segment file is missing, unreadable or not the segment it should be.
            ValueError: the state has segment files and `folder` is None.
        """
        storage = state["_storage"]
        length = storage["_len"]
        if "segments" in storage:
            if folder is None:
                raise ValueError("a replay buffer saved in segment files needs the folder of its checkpoint")
            folder = Path(folder).resolve()
            size, files = storage["segment_items"], storage["segments"]
            if sorted(files) != list(range(-(-length // size))):
                raise UsageError(f"the checkpoint in '{folder}' lists replay buffer segments {sorted(files)} for {length} items of {size}")
            for index in sorted(files):
                start = index * size
                self._set_rows(start, _read_segment(segment_path(folder, files[index]), min(size, length - start)))
            writer = state["_writer"]
            self._saved = _Saved(folder, writer["_cursor"], writer["_write_count"], size, dict(files))
        else:
            if length:  # rows [0, len) of TorchRL's state (checkpoints before segments hold the whole capacity)
                self._set_rows(0, TensorDict().load_state_dict(storage["_storage"], strict=False)[:length])
            self._saved = None
        # The rows are in place: TorchRL's own load then only sets the length (and the rest).
        rows_loaded = {"_storage": {}, "initialized": storage["initialized"], "_len": length} if length else storage
        self.buffer.load_state_dict({**state, "_storage": rows_loaded})

    # --- internals --------------------------------------------------------------------------------
    def _rows(self, start: int, stop: int) -> TensorDictBase:
        return self.buffer.storage.get(slice(start, stop)).apply(_plain)

    def _set_rows(self, start: int, rows: TensorDictBase) -> None:
        storage = self.buffer.storage
        storage.set(slice(start, start + rows.shape[0]), rows.to(storage.device), set_cursor=False)

    def _changed(self, writer: dict) -> set[int] | None:
        """Segments written since the last save into this folder, None for all of them."""
        saved, capacity = self._saved, self.buffer.storage.max_size
        written = writer["_write_count"] - saved.write_count
        if not 0 <= written < capacity or (saved.cursor + written) % capacity != writer["_cursor"]:
            return None  # more than a lap, or writes the round-robin writer did not place
        size, changed = self.segment_items, set()
        for start, stop in ((saved.cursor, min(saved.cursor + written, capacity)), (0, saved.cursor + written - capacity)):
            if stop > start:
                changed.update(range(start // size, (stop - 1) // size + 1))
        return changed

    def _write_segments(self, folder: Path, length: int, writer: dict) -> dict[int, str]:
        saved = self._saved
        fresh = saved is None or saved.folder != folder or saved.segment_items != self.segment_items
        changed = None if fresh else self._changed(writer)
        files = {} if changed is None else dict(saved.files)
        size = self.segment_items
        (folder / FOLDER).mkdir(parents=True, exist_ok=True)
        for index in range(-(-length // size)):
            if changed is None or index in changed or index not in files:
                start = index * size
                path = _free_name(folder / FOLDER, f"seg{index:05d}-w{writer['_write_count']:012d}")
                write_segment(self._rows(start, min(start + size, length)).state_dict(), path)
                files[index] = f"{FOLDER}/{path.name}"
        self._saved = _Saved(folder, writer["_cursor"], writer["_write_count"], size, dict(files))
        return files


def write_segment(rows: dict, path: Path) -> None:
    """Write a segment's rows to `path` under a temporary name, then rename it into place."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(rows, tmp)
    os.replace(tmp, path)


def _free_name(folder: Path, stem: str) -> Path:
    """`folder/<stem>.pt`, or `<stem>-<n>.pt` where that name is taken (a checkpoint may refer to it)."""
    path, n = folder / f"{stem}.pt", 0
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}.pt"
    return path


def _read_segment(path: Path, items: int) -> TensorDictBase:
    if not path.is_file():
        raise UsageError(f"replay buffer segment '{path}' is missing (a checkpoint needs the buffer/ folder beside it)")
    try:
        rows = TensorDict().load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=False)
    except Exception as exc:  # truncated, not a torch file, a class the safe loader refuses...
        raise UsageError(f"replay buffer segment '{path}' is not readable ({type(exc).__name__})") from None
    if rows.batch_dims == 0 or rows.shape[0] != items:
        raise UsageError(f"replay buffer segment '{path}' holds {rows.shape[0] if rows.batch_dims else 0} items, the checkpoint expects {items}")
    return rows


# --- checkpoint folders ---------------------------------------------------------------------------
def segment_path(folder: Path, name: object) -> Path:
    """The file a manifest entry `name` names in `folder`: `buffer/<file>`, nothing else. A
    checkpoint is data from anyone (ca12/untrusted.py), so a name that would lead out of the
    checkpoint's own buffer/ folder (`../`, an absolute path) is refused in one line."""
    if not isinstance(name, str) or PurePosixPath(name).parent != PurePosixPath(FOLDER) or PurePosixPath(name).name in ("", ".", ".."):
        raise UsageError(f"the checkpoint in '{folder}' names the replay buffer segment {name!r}; segments are files in its {FOLDER}/ folder")
    return Path(folder) / name


def manifests(checkpoint: dict) -> list[dict[int, str]]:
    """The segment manifests {segment: file relative to the checkpoint's folder} of a loaded
    checkpoint (a data module's `buffer` entry), to read or rewrite in place."""
    found = []
    for value in checkpoint.values():
        buffer = value.get("buffer") if isinstance(value, dict) else None
        storage = buffer.get("_storage") if isinstance(buffer, dict) else None
        if isinstance(storage, dict) and isinstance(storage.get("segments"), dict):
            found.append(storage["segments"])
    return found


def referenced_files(checkpoint_path: Path) -> set[str]:
    """The segment files a checkpoint file refers to (its tensors memory-mapped, not read)."""
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True, mmap=True)
    return {name for manifest in manifests(checkpoint) for name in manifest.values()}


def collect_garbage(folder: Path, cache: dict | None = None) -> list[Path]:
    """Delete the files in `folder/buffer/` that no checkpoint (`*.ckpt`) in `folder` refers to;
    returns them. Call it once a new checkpoint is in place. A checkpoint it cannot read makes it
    delete nothing.

    Args:
        cache: {checkpoint name: ((inode, mtime, size), files)} kept between calls, so that each
            checkpoint file is read once.
    """
    store = Path(folder) / FOLDER
    if not store.is_dir():
        return []
    cache = {} if cache is None else cache
    checkpoints = {path.name: path for path in Path(folder).glob("*.ckpt")}
    for name in set(cache) - set(checkpoints):
        del cache[name]
    referenced: set[str] = set()
    for name, path in checkpoints.items():
        try:
            stat = path.stat()
            key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            if cache.get(name, (None,))[0] != key:
                cache[name] = (key, referenced_files(path))
        except Exception:  # a checkpoint being replaced, or not one of ours: keep everything
            return []
        referenced |= cache[name][1]
    removed = [path for path in store.iterdir() if f"{FOLDER}/{path.name}" not in referenced]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def import_segments(checkpoint: dict, source: Path, target: Path) -> None:
    """Make `checkpoint` (read from folder `source`) ready to be saved in folder `target`: the
    segment files it refers to are linked (or copied) into `target/buffer/` under names no file
    there has, and its manifests rewritten to them.

    Raises:
        UsageError: a segment file the checkpoint refers to is missing.
    """
    source, target = Path(source).resolve(), Path(target).resolve()
    if source == target:
        return
    for manifest in manifests(checkpoint):
        (target / FOLDER).mkdir(parents=True, exist_ok=True)
        for index, name in manifest.items():
            path = segment_path(source, name)
            if not path.is_file():
                raise UsageError(f"replay buffer segment '{path}' is missing (a checkpoint needs the buffer/ folder beside it)")
            copy = _free_name(target / FOLDER, Path(name).stem)
            tmp = copy.with_name(copy.name + ".tmp")
            tmp.unlink(missing_ok=True)
            try:
                os.link(path, tmp)  # segment files are never modified, so both folders may share one
            except OSError:
                shutil.copyfile(path, tmp)
            os.replace(tmp, copy)
            manifest[index] = f"{FOLDER}/{copy.name}"
