"""Experiment tracking: metrics.csv always, plus the loggers `logger=` names (Weights & Biases,
TensorBoard; several at once with `logger=[wandb,tensorboard]`).

W&B runs online only when credentials exist *and* its server answers; otherwise it runs
offline into `<run-dir>/wandb` by itself, so a run never hangs on the network or prompts for a
key, and says so once on stderr with the `wandb sync` command that uploads it later.
`logger.wandb.mode=online|offline|disabled` forces a mode. `final_summary` is the line a run
ends with, read from what it logged.
"""

from __future__ import annotations

import csv
import io
import math
import netrc
import os
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from ca12.errors import UsageError
from ca12.sections import WANDB_MODES  # the loggers' keys live in ca12/sections.py (start-up)


def _wandb_host() -> str:
    return urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"


def wandb_has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(_wandb_host()) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def _reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wandb_mode(requested: str) -> str:
    """Resolve `auto` to online/offline; $WANDB_MODE, when set, wins like it does in wandb itself."""
    return _resolve_wandb_mode(requested)[0]


def _resolve_wandb_mode(requested: str) -> tuple[str, str | None]:
    """(the mode, why `auto` went offline or None): the reason is worked out while resolving,
    so telling the user costs no second look for credentials or the server."""
    if requested not in WANDB_MODES:
        raise UsageError(f"unknown logger.wandb.mode '{requested}'; choose one of: {', '.join(WANDB_MODES)}")
    env_mode = os.environ.get("WANDB_MODE")
    if env_mode in ("online", "offline", "disabled"):
        return env_mode, None
    if requested != "auto":
        return requested, None
    if not wandb_has_credentials():
        return "offline", "no W&B credentials (wandb login or WANDB_API_KEY)"
    if not _reachable(_wandb_host()):
        return "offline", f"the W&B server {_wandb_host()} did not answer"
    return "online", None


# Whether this process has said that W&B went offline by itself: a sweep trains its runs one
# after another in one process, and the note with its `wandb sync` command is the same for each.
_offline_said = False


def _say_offline(reason: str, run_dir: Path) -> None:
    """One line on stderr, once per process and only on rank 0, when `auto` chose offline: the
    run would otherwise never tell that nothing reaches W&B until the user uploads it."""
    global _offline_said
    if _offline_said or rank_zero_only.rank != 0:
        return
    _offline_said = True
    print(f"ca12.fit: note: {reason}, so W&B logs offline; upload the run later with: wandb sync {run_dir}/wandb/offline-run-*", file=sys.stderr)


ITERATION_KEY = "time/iteration"


def complete_metrics_text(path: str | Path) -> str:
    """metrics.csv's text up to its last complete line: a run killed while appending a row can
    leave that line cut short, and a cut-short number would read as another number."""
    text = Path(path).read_text()
    return text[: text.rfind("\n") + 1]


def read_metrics_rows(path: str | Path) -> list[dict[str, str]]:
    """metrics.csv's complete rows (`complete_metrics_text`), as `csv.DictReader` gives them."""
    return list(csv.DictReader(io.StringIO(complete_metrics_text(path))))


def resumed_rows(path: Path, keep_until_iteration: int) -> dict[int, dict[str, str]]:
    """The rows of a resumed run's metrics.csv up to its checkpoint's iteration, by iteration
    (none when the file is missing).

    Raises:
        UsageError: naming the file, when it is not a metrics.csv ca12 wrote (no `time/iteration`
            column, a row whose iteration is not a number, not text): resuming would replace
            it, so it is refused and kept; the run's checkpoint is untouched.
    """
    if not path.is_file():
        return {}
    rows = {}
    try:
        for row in read_metrics_rows(path):
            iteration = int(float(row[ITERATION_KEY]))
            if iteration <= keep_until_iteration:
                rows[iteration] = {k: v for k, v in row.items() if v not in ("", None)}
    except (KeyError, ValueError, TypeError, UnicodeDecodeError, csv.Error) as exc:
        why = f"no {ITERATION_KEY} column" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise UsageError(
            f"{path} is not a metrics file this run wrote ({why}); move it away to resume (the checkpoint is intact, "
            f"a new metrics.csv starts after iteration {keep_until_iteration})"
        ) from None
    return rows


@rank_zero_only
def _note_lost_rows(path: Path, iteration: int) -> None:
    """One line on stderr: a resumed run whose metrics.csv was deleted starts a new one, and the
    rows up to its checkpoint cannot be rebuilt (a checkpoint holds no metrics)."""
    print(
        f"ca12.fit: note: {path} is missing; it starts again after iteration {iteration}, "
        f"the rows of iterations 1-{iteration} are lost (a checkpoint holds no metrics)",
        file=sys.stderr,
    )


class MetricsCSV(Logger):
    """`metrics.csv` with one row per training iteration.

    Everything logged for an iteration (training metrics, evaluation) lands in that iteration's
    row, keyed by `time/iteration`. A save appends the rows logged since the last one, so its cost
    does not grow with the run (a rewrite on every save made a run of thousands of iterations spend
    more time writing this file than training); the file's last row, which an evaluation may
    complete after its training metrics were saved, is rewritten in place. Only a new column or a
    change to an earlier row rewrites the whole file, atomically (a temporary file, then a rename).
    A line cut short by a crash mid-append is dropped when the file is read back. A resumed run
    keeps the rows up to its checkpoint's iteration and continues the same file (rows a killed run
    wrote after its last checkpoint are dropped).

    Args:
        path: the CSV file.
        keep_until_iteration: resume: keep the existing rows up to this iteration; None starts fresh.
    """

    def __init__(self, path: str | Path, keep_until_iteration: int | None = None):
        super().__init__()
        self.path = Path(path)
        self.rows: dict[int, dict[str, Any]] = {}
        self._keys: set[str] = set()  # every column but the iteration
        self._header: list[str] | None = None  # the file's columns; None: the file is not ours yet (rewrite it)
        self._last: tuple[int, int] | None = None  # the file's last row: (iteration, byte offset of its line)
        self._changed: set[int] = set()  # iterations logged since the last save
        self._last_iteration = 0
        if keep_until_iteration is not None:
            self.rows = resumed_rows(self.path, keep_until_iteration)
            if keep_until_iteration and not self.path.is_file():
                _note_lost_rows(self.path, keep_until_iteration)
            for row in self.rows.values():
                self._keys.update(row)
            self._keys.discard(ITERATION_KEY)
            self._last_iteration = max(self.rows, default=0)
            self._changed = set(self.rows)

    @property
    def name(self) -> str:
        return "csv"

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        return str(self.path.parent)

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        """The run's config is in config.yaml beside this file."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        iteration = int(metrics[ITERATION_KEY]) if ITERATION_KEY in metrics else self._last_iteration
        self._last_iteration = iteration
        row = self.rows.setdefault(iteration, {})
        values = {k: float(v) for k, v in metrics.items() if k not in ("epoch", ITERATION_KEY)}
        row.update(values)
        row[ITERATION_KEY] = iteration
        self._keys.update(values)
        self._changed.add(iteration)

    @rank_zero_only
    def save(self) -> None:
        if not self._changed:
            return
        header = [ITERATION_KEY, *sorted(self._keys)]
        changed = sorted(self._changed)
        last = self._last[0] if self._last is not None else None
        if header == self._header and last is not None and changed[0] >= last and self.path.is_file():
            self._append(header, changed, truncate_at=self._last[1] if changed[0] == last else None)
        else:  # (also when the file went missing: it is written anew)
            self._rewrite(header)
        self._changed = set()

    def _lines(self, header: list[str], iterations: list[int]) -> list[bytes]:
        """The CSV lines of these rows, encoded."""
        lines = []
        for i in iterations:
            buffer = io.StringIO()
            csv.DictWriter(buffer, fieldnames=header).writerow(self.rows[i])
            lines.append(buffer.getvalue().encode())
        return lines

    def _append(self, header: list[str], iterations: list[int], truncate_at: int | None) -> None:
        """Write `iterations` (the file's last row first, when it changed) at the end of the file."""
        lines = self._lines(header, iterations)
        with open(self.path, "r+b") as f:
            if truncate_at is not None:
                f.truncate(truncate_at)
            offset = f.seek(0, os.SEEK_END)
            f.write(b"".join(lines))
        self._last = (iterations[-1], offset + sum(len(line) for line in lines[:-1]))

    def _rewrite(self, header: list[str]) -> None:
        """The whole file, atomically."""
        buffer = io.StringIO()
        csv.DictWriter(buffer, fieldnames=header).writeheader()
        head = buffer.getvalue().encode()
        iterations = sorted(self.rows)
        lines = self._lines(header, iterations)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(head + b"".join(lines))
        os.replace(tmp, self.path)
        self._header = header
        self._last = (iterations[-1], len(head) + sum(len(line) for line in lines[:-1])) if iterations else None

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()


def make_loggers(cfg: DictConfig, run_dir: Path, wandb_id: str | None = None, resume_iteration: int | None = None) -> list[Logger]:
    """`<run-dir>/metrics.csv` always, plus every logger the `logger` section names.

    Args:
        cfg: the resolved run config (logged to W&B as the run's config).
        run_dir: the run directory.
        wandb_id: continue this W&B run (resume) instead of starting a new one.
        resume_iteration: the iteration a resumed run continues from (its metrics.csv rows up to
            there are kept).
    """
    loggers: list[Logger] = [MetricsCSV(run_dir / "metrics.csv", keep_until_iteration=resume_iteration)]
    wandb_cfg = cfg.logger.get("wandb")
    if wandb_cfg is not None:
        mode, offline_reason = _resolve_wandb_mode(wandb_cfg.mode)
        if offline_reason:
            _say_offline(offline_reason, run_dir)
        if mode != "disabled":
            wandb_logger = WandbLogger(
                project=wandb_cfg.project,
                entity=wandb_cfg.entity,
                save_dir=str(run_dir),
                name=run_dir.name,
                id=wandb_id,
                resume="allow" if wandb_id else None,
                tags=list(wandb_cfg.tags),
                mode=mode,
                config=OmegaConf.to_container(cfg, resolve=True),
                settings={"silent": True, "init_timeout": 60},
            )
            # Lightning always passes wandb.init an `anonymous` entry, which wandb >= 0.19 answers
            # with a deprecation warning on the terminal; None means "not set", so leave it out.
            wandb_logger._wandb_init.pop("anonymous", None)
            loggers.append(wandb_logger)
    if cfg.logger.get("tensorboard") is not None:
        loggers.append(
            TensorBoardLogger(
                save_dir=str(run_dir), name="tensorboard", version="", log_graph=cfg.logger.tensorboard.log_graph, default_hp_metric=False
            )
        )
    return loggers


def finish_wandb(loggers: list[Logger]) -> None:
    """Close the W&B run (flushes an offline run to disk) once training is over."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish()


def final_summary(metrics, module, run_dir: Path, signum: int | None = None) -> str:
    """The run's last line: how it ended, its training return (the last iteration's
    `rollout/episode_reward_mean` in `metrics`), its evaluation return, frames and run directory.

    The evaluation return is the last `eval/episode_reward_mean` in the run's metrics.csv (what a
    user compares runs by, and what `ca12.compare` scores), followed by the iteration and frames
    it was measured at when that was not the run's last iteration (a run stopped by a signal
    between evaluations); nothing when the run logged no evaluation. A NaN training return (no
    episode ended in the run) is said in words, not printed as a number.
    """
    parts = [f"stopped by signal {signum} after iteration {module.iterations}, checkpoint saved"] if signum is not None else []
    final = metrics.get("rollout/episode_reward_mean")
    if final is not None:
        value = float(final)
        parts.append(f"final rollout/episode_reward_mean {'– (no training episode ended)' if math.isnan(value) else f'{value:.3f}'}")
    path = run_dir / "metrics.csv"
    evaluated = [row for row in read_metrics_rows(path) if row.get("eval/episode_reward_mean")] if path.is_file() else []
    if evaluated:
        row = evaluated[-1]
        text = f"eval/episode_reward_mean {float(row['eval/episode_reward_mean']):.3f}"
        iteration = int(float(row[ITERATION_KEY]))
        if iteration != module.iterations:
            frames = f", {int(float(row['time/frames']))} frames" if row.get("time/frames") else ""
            text += f" (at iteration {iteration}{frames})"
        parts.append(text)
    return " | ".join(parts + [f"{module.frames} frames", f"run directory: {run_dir}"])
