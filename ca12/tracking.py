"""Experiment tracking: metrics.csv always, plus the loggers `logger=` names (Weights & Biases,
TensorBoard; several at once with `logger=[wandb,tensorboard]`).

W&B runs online only when credentials exist *and* its server answers; otherwise it runs
offline into `<run-dir>/wandb` by itself, so a run never hangs on the network or prompts for a
key. `logger.wandb.mode=online|offline|disabled` forces a mode.
"""

from __future__ import annotations

import csv
import io
import netrc
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from dataclasses import dataclass, field
from typing import Optional

from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from ca12.errors import UsageError
from ca12.schema import key

WANDB_MODES = ("auto", "online", "offline", "disabled")


@dataclass
class WandbConfig:
    """conf/logger/wandb.yaml."""

    project: str = key("W&B project")
    entity: Optional[str] = key("W&B entity (null: your default)")
    mode: str = key("auto (online when credentials and the server answer, else offline), online, offline, disabled", choices=WANDB_MODES)
    tags: list[str] = key("W&B run tags")


@dataclass
class TensorBoardConfig:
    """conf/logger/tensorboard.yaml (Lightning's TensorBoardLogger under <run-dir>/tensorboard)."""

    log_graph: bool = key("also log the model graph")


@dataclass
class LoggerConfig:
    """The run config's `logger` section: one entry per chosen logger (metrics.csv is always written)."""

    wandb: Optional[WandbConfig] = field(default=None, metadata={"doc": "Weights & Biases (logger=wandb)"})
    tensorboard: Optional[TensorBoardConfig] = field(default=None, metadata={"doc": "TensorBoard (logger=tensorboard)"})


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
    if requested not in WANDB_MODES:
        raise UsageError(f"unknown logger.mode '{requested}'; choose one of: {', '.join(WANDB_MODES)}")
    env_mode = os.environ.get("WANDB_MODE")
    if env_mode in ("online", "offline", "disabled"):
        return env_mode
    if requested != "auto":
        return requested
    return "online" if wandb_has_credentials() and _reachable(_wandb_host()) else "offline"


ITERATION_KEY = "time/iteration"


def complete_metrics_text(path: str | Path) -> str:
    """metrics.csv's text up to its last complete line: a run killed while appending a row can
    leave that line cut short, and a cut-short number would read as another number."""
    text = Path(path).read_text()
    return text[: text.rfind("\n") + 1]


def read_metrics_rows(path: str | Path) -> list[dict[str, str]]:
    """metrics.csv's complete rows (`complete_metrics_text`), as `csv.DictReader` gives them."""
    return list(csv.DictReader(io.StringIO(complete_metrics_text(path))))


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
        if keep_until_iteration is not None and self.path.is_file():
            for row in read_metrics_rows(self.path):
                iteration = int(float(row[ITERATION_KEY]))
                if iteration <= keep_until_iteration:
                    self.rows[iteration] = {k: v for k, v in row.items() if v not in ("", None)}
                    self._keys.update(self.rows[iteration])
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
        mode = wandb_mode(wandb_cfg.mode)
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
        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="", log_graph=cfg.logger.tensorboard.log_graph, default_hp_metric=False))
    return loggers


def finish_wandb(loggers: list[Logger]) -> None:
    """Close the W&B run (flushes an offline run to disk) once training is over."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish()
