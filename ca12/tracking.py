"""Experiment tracking: metrics.csv always, Weights & Biases when `logger=wandb`.

W&B runs online only when credentials exist *and* its server answers; otherwise it runs
offline into `<run-dir>/wandb` by itself, so a run never hangs on the network or prompts for a
key. `logger.mode=online|offline|disabled` forces a mode.
"""

from __future__ import annotations

import netrc
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from ca12.errors import UsageError

WANDB_MODES = ("auto", "online", "offline", "disabled")


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


def make_loggers(cfg: DictConfig, run_dir: Path, wandb_id: str | None = None) -> list[Logger]:
    """CSV logger writing `<run-dir>/metrics.csv`, plus a W&B logger when `cfg.logger.name == "wandb"`.

    Args:
        cfg: the resolved run config (logged to W&B as the run's config).
        run_dir: the run directory.
        wandb_id: continue this W&B run (resume) instead of starting a new one.
    """
    loggers: list[Logger] = [CSVLogger(save_dir=str(run_dir), name="", version="", flush_logs_every_n_steps=1)]
    if cfg.logger.name == "wandb":
        mode = wandb_mode(cfg.logger.mode)
        if mode != "disabled":
            loggers.append(
                WandbLogger(
                    project=cfg.logger.project,
                    entity=cfg.logger.entity,
                    save_dir=str(run_dir),
                    name=run_dir.name,
                    id=wandb_id,
                    resume="allow" if wandb_id else None,
                    tags=list(cfg.logger.tags),
                    mode=mode,
                    config=OmegaConf.to_container(cfg, resolve=True),
                    settings={"silent": True, "init_timeout": 60},
                )
            )
    return loggers


def finish_wandb(loggers: list[Logger]) -> None:
    """Close the W&B run (flushes an offline run to disk) once training is over."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish()
