"""Experiment tracking: metrics.csv always, plus the loggers `logger=` names (Weights & Biases,
TensorBoard; several at once with `logger=[wandb,tensorboard]`).

W&B runs online only when credentials exist *and* its server answers; otherwise it runs
offline into `<run-dir>/wandb` by itself, so a run never hangs on the network or prompts for a
key. `logger.wandb.mode=online|offline|disabled` forces a mode.
"""

from __future__ import annotations

import csv
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


class MetricsCSV(Logger):
    """`metrics.csv` with one row per training iteration.

    Everything logged for an iteration (training metrics, evaluation) lands in that iteration's
    row, keyed by `time/iteration`. The file is rewritten atomically on every save, so it is
    never half-written. A resumed run keeps the rows up to its checkpoint's iteration and
    continues the same file (rows a killed run wrote after its last checkpoint are dropped).

    Args:
        path: the CSV file.
        keep_until_iteration: resume: keep the existing rows up to this iteration; None starts fresh.
    """

    def __init__(self, path: str | Path, keep_until_iteration: int | None = None):
        super().__init__()
        self.path = Path(path)
        self.rows: dict[int, dict[str, Any]] = {}
        self._last_iteration = 0
        if keep_until_iteration is not None and self.path.is_file():
            with open(self.path, newline="") as f:
                for row in csv.DictReader(f):
                    iteration = int(float(row[ITERATION_KEY]))
                    if iteration <= keep_until_iteration:
                        self.rows[iteration] = {k: v for k, v in row.items() if v != ""}
            self._last_iteration = max(self.rows, default=0)

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
        row.update({k: float(v) for k, v in metrics.items() if k != "epoch"})
        row[ITERATION_KEY] = iteration

    @rank_zero_only
    def save(self) -> None:
        if not self.rows:
            return
        keys = sorted({k for row in self.rows.values() for k in row} - {ITERATION_KEY})
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=[ITERATION_KEY, *keys])
            writer.writeheader()
            writer.writerows(self.rows[i] for i in sorted(self.rows))
        os.replace(tmp, self.path)

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
