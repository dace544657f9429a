"""Members of a population as ordinary ca12 runs, shared by both backends.

A member is a run directory `<pbt_dir>/member_<i>` (seed `seed + i`) trained by `ca12.fit` in
intervals: round r resumes it (`--resume`) with the member's hyperparameters as overrides and
`collector.total_frames = r x ready`. Its score is read from its metrics.csv. Exploit copies
another member's `last.ckpt` over its own (with the replay-buffer segment files it refers to):
weights, optimiser state, the data module's state (RNG states, collector counters, a replay
buffer), counters and run config, so the copy goes on as the donor's run would (with the same
random stream: donor and copy then differ only by their hyperparameters), only its W&B run
stays its own. A resumed run takes the overrides' hyperparameters even where the checkpoint
holds old ones (optimiser learning rates, TorchRL's loss coefficients): see
`ConfigHyperparameters` in callbacks/hyperparameters.py.
"""

from __future__ import annotations

import csv
import json
import math
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from omegaconf import OmegaConf

from ca12.errors import NonFiniteError, UsageError
from ca12.multirun.pbt.core import Hyperparameter, SearchSpace
from ca12.run.config import is_frozen_on_resume, load_config
from ca12.run.rundir import POPULATION_SPEC, read_checkpoint
from ca12.run.train import fit_parser, run
from ca12.untrusted import check_override_texts, check_plain_config, read_json_file

SPEC_FILE = POPULATION_SPEC
MEMBERS_TABLE = "members.csv"
EXPLOITS_TABLE = "exploits.csv"
ROLLOUT_SCORE, EVAL_SCORE = "rollout/episode_reward_mean", "eval/episode_reward_mean"


@dataclass
class PopulationSpec:
    """Everything that defines a population (saved as `<pbt_dir>/pbt.json`, so `--resume DIR`
    needs nothing else).

    Attributes:
        search: the `--search KEY=PRIOR:ARGS` texts.
        overrides: ca12 config overrides every member starts with.
        ready: frames each member trains between two ready steps (a round).
        frames: frames each member trains in all.
        score: the metrics.csv column a member is ranked by (eval return when evaluation is on).
    """

    algo: str
    env: str
    search: list[str]
    population: int
    ready: int
    frames: int
    overrides: list[str] = field(default_factory=list)
    seed: int = 0
    quantile: float = 0.25
    perturbation_factors: list[float] = field(default_factory=lambda: [0.8, 1.2])
    resample_probability: float = 0.25
    backend: str = "local"
    score: str = ROLLOUT_SCORE

    @property
    def space(self) -> SearchSpace:
        return SearchSpace(tuple(Hyperparameter.parse(s) for s in self.search), tuple(self.perturbation_factors), self.resample_probability)

    @property
    def rounds(self) -> int:
        return self.frames // self.ready

    def initial_hparams(self) -> list[dict]:
        """Each member's first hyperparameters, drawn from the priors (seeded: both backends
        start the same population)."""
        rng = np.random.default_rng([self.seed, 1])
        return [self.space.sample(rng) for _ in range(self.population)]

    def save(self, pbt_dir: Path) -> None:
        pbt_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(pbt_dir / SPEC_FILE, json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, pbt_dir: Path) -> "PopulationSpec":
        """The spec saved in `pbt_dir`, read as data from anyone (ca12/untrusted.py): known fields
        of plain types only, and overrides and searched keys that set values, never a class."""
        path = Path(pbt_dir) / SPEC_FILE
        if not path.is_file():
            raise UsageError(f"--resume: no population in '{pbt_dir}' (no {SPEC_FILE})")
        saved = read_json_file(path, "population spec")
        check_plain_config(saved, str(path))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(saved) - known)
        if unknown:
            raise UsageError(f"{path}: unknown field '{unknown[0]}'; a population spec has: {', '.join(sorted(known))}")
        for name in ("overrides", "search"):
            if not isinstance(saved.get(name, []), list):
                raise UsageError(f"{path}: '{name}' must be a list of texts")
        check_override_texts(saved.get("overrides", []) + saved.get("search", []), str(path))
        try:
            return cls(**saved)
        except TypeError as exc:  # a required field missing
            raise UsageError(f"{path}: {exc}") from None


@contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary name to write `path` under, renamed into place when the block ends without
    an error: `path` is never half-written."""
    tmp = path.with_name(path.name + suffix)
    yield tmp
    os.replace(tmp, path)


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through `atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def member_dir(pbt_dir: Path, index: int) -> Path:
    return Path(pbt_dir) / f"member_{index}"


def overrides_of(hparams: dict) -> list[str]:
    """Hyperparameters as ca12 overrides (`algo.lr=0.00012`; repr keeps a float exact)."""
    return [f"{key}={value!r}" if isinstance(value, float) else f"{key}={value}" for key, value in hparams.items()]


# --- checking a population against ca12's config before anything runs ------------------------------
def check_spec(spec: PopulationSpec) -> str:
    """Check the spec against ca12's config schemas (one-line `UsageError`s) and return the
    score column: every searched key must be a value a resumed run may change, each bound (or
    choice) must pass the key's own schema, and the intervals must be whole collector batches."""
    space = spec.space  # parses every --search
    if spec.population < 2:
        raise UsageError(f"--population must be at least 2, got {spec.population}")
    if not 0 < spec.quantile <= 0.5:
        raise UsageError(f"--quantile must be in (0, 0.5], got {spec.quantile}")
    for text in spec.overrides:
        key = text.partition("=")[0].lstrip("+~")
        if key == "collector.total_frames":
            raise UsageError("collector.total_frames is set by PBT from --ready and --frames; leave it out")
        if key in space.keys:
            raise UsageError(f"'{key}' is searched (--search) and also given as an override; choose one")
    base = load_config(spec.algo, spec.env, spec.overrides, seed=spec.seed)
    for p in space.params:
        _check_searched_key(spec, base, p)
    fpb = base.collector.frames_per_batch
    if spec.ready < 1 or spec.ready % fpb:
        raise UsageError(
            f"--ready ({spec.ready}) must be a positive multiple of collector.frames_per_batch ({fpb}): a member stops only between batches"
        )
    if spec.frames < spec.ready or spec.frames % spec.ready:
        raise UsageError(f"--frames ({spec.frames}) must be a positive multiple of --ready ({spec.ready})")
    return EVAL_SCORE if base.eval.every_n_iters > 0 else ROLLOUT_SCORE


def _check_searched_key(spec: PopulationSpec, base, p: Hyperparameter) -> None:
    """`p` names a value of the composed config `base` that a resumed run may change, of a type
    its prior can give, and whose bounds (or choices) the key's schema accepts."""
    value = OmegaConf.select(base, p.key, default=_MISSING)
    if value is _MISSING:
        parent = p.key.rpartition(".")[0]
        section = OmegaConf.select(base, parent) if parent else base
        known = ", ".join(sorted(section.keys())) if OmegaConf.is_dict(section) else "none"
        raise UsageError(f"--search: unknown key '{p.key}'; keys under '{parent or '<root>'}': {known}")
    if is_frozen_on_resume(p.key) or p.key == "collector.total_frames":
        raise UsageError(f"--search: '{p.key}' cannot change when a member resumes (it fixes the run's shapes, data or length); search another key")
    if OmegaConf.is_dict(value):
        raise UsageError(f"--search: '{p.key}' is a section, not a value")
    if OmegaConf.is_list(value):
        raise UsageError(f"--search: '{p.key}' is a list; PBT searches numbers and single values")
    if p.prior != "choice" and (isinstance(value, bool) or not isinstance(value, (int, float, type(None)))):
        raise UsageError(f"--search: '{p.key}' is {type(value).__name__} {value!r}: search it with choice:A,B,...")
    if p.prior in ("uniform", "loguniform") and isinstance(value, int) and not isinstance(value, bool):
        raise UsageError(f"--search: '{p.key}' is an integer: search it with int:LOW:HIGH or choice:A,B,...")
    for candidate in p.choices or (p.low, p.high):
        try:
            load_config(spec.algo, spec.env, spec.overrides + overrides_of({p.key: candidate}), seed=spec.seed)
        except UsageError as exc:
            raise UsageError(f"--search {p.key}: {exc}") from None


_MISSING = object()


# --- one member -----------------------------------------------------------------------------------
def _saved_run_state(checkpoint: Path) -> dict:
    """A checkpoint's `ca12` section (frames, iterations, W&B id...), its tensors memory-mapped
    rather than read: a replay buffer may make the file large."""
    import torch

    return torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)["ca12"]


def trained_frames(run_dir: Path) -> int:
    """Frames a member's last checkpoint holds (0: it has none)."""
    last = Path(run_dir) / "checkpoints" / "last.ckpt"
    return _saved_run_state(last)["frames"] if last.is_file() else 0


def train_member(spec: PopulationSpec, run_dir: Path, seed: int, hparams: dict, frames: int) -> bool:
    """Train the member in `run_dir` up to `frames` with `hparams`, in this process
    (`ca12.run.train.run`): a fresh run the first time, `--resume` after. Returns False when the run
    stopped on a non-finite loss (its last good checkpoint stays), True otherwise. A run that a
    signal stopped raises `ca12.cli.Interrupted`.
    """
    values = overrides_of(hparams) + [f"collector.total_frames={frames}"]
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        if trained_frames(run_dir) >= frames:  # done before an interruption
            return True
        argv = ["--resume", str(run_dir), *values]
    else:
        argv = ["--algo", spec.algo, "--env", spec.env, "--seed", str(seed), "--run-dir", str(run_dir), *spec.overrides, *values]
    try:
        run(fit_parser().parse_intermixed_args(argv))
    except NonFiniteError as exc:
        print(f"ca12.pbt: {run_dir.name}: {exc}")
        return False
    return True


def member_score(run_dir: Path, after_frames: int, until_frames: int, column: str) -> float:
    """A member's score for the round that trained it from `after_frames` to `until_frames`:
    the mean of `rollout/episode_reward_mean` over that round's iterations, or the evaluation
    return at its end (`eval/episode_reward_mean`, written after a run's last iteration).
    NaN when the round logged none (no episode ended)."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return float("nan")
    from ca12.run.tracking import read_metrics_rows

    rows = [r for r in read_metrics_rows(path) if after_frames < float(r.get("time/frames") or 0) <= until_frames]
    if column == EVAL_SCORE:
        last = max(rows, key=lambda r: float(r["time/frames"]), default={})
        return float(last.get(column) or "nan")
    values = [float(r[column]) for r in rows if r.get(column) not in (None, "") and math.isfinite(float(r[column]))]
    return sum(values) / len(values) if values else float("nan")


def install_checkpoint(source: Path, run_dir: Path) -> None:
    """Exploit: `source` (another member's checkpoint) becomes this member's `last.ckpt`,
    everything in it (weights, optimiser state, data-module and RNG state, counters, the run
    config) except the W&B run id, which stays this member's. Written atomically."""
    last = Path(run_dir) / "checkpoints" / "last.ckpt"
    own_id = _saved_run_state(last).get("wandb_id") if last.is_file() else None
    copy_checkpoint(source, last, wandb_id=own_id)


def copy_checkpoint(source: Path, target: Path, **ca12_state: Any) -> None:
    """Copy checkpoint `source` to `target` (a file, written atomically) with the replay-buffer
    segment files it refers to (linked or copied into `target`'s folder: ca12/data/buffer_store.py),
    then delete the segment files no checkpoint beside `target` refers to any more.
    `ca12_state` replaces entries of its `ca12` section."""
    import torch

    from ca12.data.buffer_store import collect_garbage, import_segments

    source, target = Path(source), Path(target)
    checkpoint = read_checkpoint(source)
    checkpoint["ca12"].update(ca12_state)
    target.parent.mkdir(parents=True, exist_ok=True)
    import_segments(checkpoint, source.parent, target.parent)
    with atomic_path(target, ".pbt.tmp") as tmp:
        torch.save(checkpoint, tmp)
    collect_garbage(target.parent)


# --- tables ---------------------------------------------------------------------------------------
def exploit_events(rows: list[dict], keys: list[str]) -> list[dict]:
    """The exploit events a members table shows: a member whose round r started from another
    member's checkpoint copied it after round r - 1 (scores of r - 1, hyperparameters of r)."""
    by = {(r["round"], r["member"]): r for r in rows}
    events = []
    for r in sorted(rows, key=lambda r: (r["round"], r["member"])):
        if r["started_from"] == r["member"]:
            continue
        before, donor = by.get((r["round"] - 1, r["member"]), {}), by.get((r["round"] - 1, r["started_from"]), {})
        event = {
            "after_round": r["round"] - 1,
            "member": r["member"],
            "member_score": before.get("score"),
            "donor": r["started_from"],
            "donor_score": donor.get("score"),
        }
        for key in keys:
            event[f"{key}:donor"], event[key], event[f"{key}:op"] = donor.get(key), r[key], r.get(f"{key}:op", "")
        events.append(event)
    return events


def write_tables(pbt_dir: Path, keys: list[str], rows: list[dict]) -> None:
    """`members.csv` (a row per member and round: the hyperparameters it trained with, whose
    checkpoint it started from, its score at the round's end) and `exploits.csv` (who copied
    whom, with both scores and the donor's and the explored values)."""
    rows = sorted(rows, key=lambda r: (r["round"], r["member"]))
    columns = ["round", "member", "frames", "score", "started_from", *keys]
    _write_csv(Path(pbt_dir) / MEMBERS_TABLE, columns, rows)
    events = exploit_events(rows, keys)
    columns = ["after_round", "member", "member_score", "donor", "donor_score"]
    columns += [c for key in keys for c in (f"{key}:donor", key, f"{key}:op")]
    _write_csv(Path(pbt_dir) / EXPLOITS_TABLE, columns, events)


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def summary(rows: list[dict], keys: list[str]) -> str:
    """The last round's members, best first, as aligned text."""
    if not rows:
        return "no round finished"
    last = max(r["round"] for r in rows)
    final = sorted((r for r in rows if r["round"] == last), key=lambda r: -_sortable(r["score"]))
    head = ["member", "score", *keys]
    lines = [head] + [[str(r["member"]), f"{r['score']:.4g}", *(_fmt(r[k]) for k in keys)] for r in final]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in lines)


def _sortable(score: float) -> float:
    return -math.inf if score is None or math.isnan(score) else score


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
