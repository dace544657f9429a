"""The Lightning Trainer of a run, composed from conf/: `trainer.*` are Lightning's own
arguments passed through (any `Trainer` argument may be set: `trainer.max_time=...`,
`trainer.deterministic=true`), except the ones ca12 drives itself (iterations, loggers,
callbacks, checkpointing), which are refused in one line. Devices are checked before anything
of the run is written.

The config layer checks `trainer.*` and picks the devices with this module before a run starts,
so it imports Lightning and torch only inside the functions that build or check a run
(docs/ARCHITECTURE.md, "What may be imported at start-up").
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from omegaconf import DictConfig, OmegaConf

from ca12.errors import UsageError
from ca12.schema import key

if TYPE_CHECKING:
    import lightning as L

# Trainer arguments ca12 sets itself: one epoch is one iteration, its own loggers and callbacks.
MANAGED = {
    "logger",
    "callbacks",
    "max_epochs",
    "min_epochs",
    "max_steps",
    "min_steps",
    "enable_checkpointing",
    "enable_model_summary",
    "log_every_n_steps",
    "num_sanity_val_steps",
    "use_distributed_sampler",
    "default_root_dir",
    "gradient_clip_val",
    "gradient_clip_algorithm",
    "accumulate_grad_batches",
}


@dataclass
class CheckpointConfig:
    """The run config's `checkpoint` section (callbacks/checkpoint.py writes them)."""

    every_n_iters: int = key("keep checkpoints/iter_<N>.ckpt every N iterations (last.ckpt: every iteration)", positive=True)
    keep: Optional[int] = key("keep only the newest this many iter_<N>.ckpt, deleting older ones (null: keep all)", positive=True)
    every_s: Optional[float] = key(
        "rewrite last.ckpt at most every this many seconds (null: after every iteration); the first and last iteration, a stop "
        "signal and each iter_<N>.ckpt always write it",
        positive=True,
    )


# `lightning.Trainer.__init__`'s arguments in the Lightning version named, in its order: read
# instead of its signature while that version is installed, so checking `trainer.*` needs no
# Lightning import (tests/run/test_startup.py holds them equal to the signature).
_KNOWN_TRAINER_ARGUMENTS = (
    "2.6.6",
    (
        "accelerator",
        "strategy",
        "devices",
        "num_nodes",
        "precision",
        "logger",
        "callbacks",
        "fast_dev_run",
        "max_epochs",
        "min_epochs",
        "max_steps",
        "min_steps",
        "max_time",
        "limit_train_batches",
        "limit_val_batches",
        "limit_test_batches",
        "limit_predict_batches",
        "overfit_batches",
        "val_check_interval",
        "check_val_every_n_epoch",
        "num_sanity_val_steps",
        "log_every_n_steps",
        "enable_checkpointing",
        "enable_progress_bar",
        "enable_model_summary",
        "accumulate_grad_batches",
        "gradient_clip_val",
        "gradient_clip_algorithm",
        "deterministic",
        "benchmark",
        "inference_mode",
        "use_distributed_sampler",
        "profiler",
        "detect_anomaly",
        "barebones",
        "plugins",
        "sync_batchnorm",
        "reload_dataloaders_every_n_epochs",
        "default_root_dir",
        "enable_autolog_hparams",
        "model_registry",
    ),
)


def trainer_arguments() -> list[str]:
    """The arguments `lightning.Trainer` takes: read from its signature, or from
    `_KNOWN_TRAINER_ARGUMENTS` when the installed Lightning is the version they were read from."""
    version, names = _KNOWN_TRAINER_ARGUMENTS
    try:
        installed = importlib.metadata.version("lightning")
    except importlib.metadata.PackageNotFoundError:
        installed = None
    if installed == version:
        return list(names)
    import lightning as L

    return [name for name in inspect.signature(L.Trainer.__init__).parameters if name != "self"]


def check_trainer_args(node: DictConfig) -> DictConfig:
    """`trainer.*` keys must be `Trainer` arguments that ca12 does not drive itself."""
    allowed = [name for name in trainer_arguments() if name not in MANAGED]
    for name in node:
        if name in MANAGED:
            raise UsageError(f"trainer.{name} is set by ca12 itself (one Lightning epoch is one iteration); it cannot be configured")
        if name not in allowed:
            raise UsageError(f"unknown key 'trainer.{name}'; Lightning's Trainer takes: {', '.join(allowed)}")
    return node


def check_devices(cfg: DictConfig) -> None:
    """Refuse, before anything is written, devices this machine does not have."""
    import torch

    from ca12.algos.cuda_graphs import check_fast_path

    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    wants_gpu = (
        accelerator in ("gpu", "cuda") or str(cfg.env.device).startswith("cuda") or str(cfg.algo.get("buffer_device", "cpu")).startswith("cuda")
    )
    if wants_gpu and not torch.cuda.is_available():
        what = (
            "trainer=gpu"
            if accelerator in ("gpu", "cuda")
            else "env.device=cuda"
            if str(cfg.env.device).startswith("cuda")
            else "algo.buffer_device=cuda"
        )
        raise UsageError(
            f"{what}: this machine has no CUDA GPU that torch can use (torch.cuda.is_available() is False); use trainer=cpu env.device=cpu"
        )
    devices = cfg.trainer.get("devices", 1)
    if accelerator in ("gpu", "cuda") and isinstance(devices, int) and devices > torch.cuda.device_count():
        raise UsageError(f"trainer.devices={devices}: this machine has {torch.cuda.device_count()} GPU(s)")
    check_fast_path(cfg)


def gpu_overrides(env: str, overrides: list[str]) -> list[str]:
    """The overrides by which a new VMAS run on a machine with a CUDA GPU and no device chosen on
    the command line (`trainer=`, `trainer.accelerator=`, `env.device=`) trains on the GPU and
    steps its envs there: VMAS simulates on the GPU, and the fast path (`algo.cudagraphs`) needs
    it. Other env families step on the CPU and keep `trainer=cpu`. Added to the command line's
    before the config is composed and validated, so the validated config is final (and the
    written config.yaml says so); empty when nothing switches."""
    if env.partition("/")[0] != "vmas" or not cuda_available():
        return []
    chosen = {text.split("=", 1)[0].lstrip("+~") for text in overrides}
    if chosen & {"trainer", "trainer.accelerator", "env.device"}:
        return []
    return ["trainer.accelerator=gpu", "env.device=cuda"]


def _torch_build() -> dict:
    """The constants of the installed torch's torch/version.py (`cuda`, `hip`: the GPU toolkits
    it was built with, None for none), read without importing torch; empty when unreadable."""
    spec = importlib.util.find_spec("torch")
    try:
        tree = ast.parse((Path(spec.origin).parent / "version.py").read_text())
    except (AttributeError, TypeError, OSError, SyntaxError):
        return {}
    found = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else getattr(node, "target", None)
        if isinstance(target, ast.Name) and isinstance(node.value, ast.Constant):
            found[target.id] = node.value.value
    return found


def cuda_available() -> bool:
    """`torch.cuda.is_available()`, answered without importing torch when the installed torch is
    a build without GPU support (its torch/version.py, written when torch was built, has neither
    `cuda` nor `hip`): `--show-config` of a VMAS run then needs no torch."""
    build = _torch_build()
    if build.get("cuda", "?") is None and build.get("hip", "?") is None:
        return False
    import torch

    return torch.cuda.is_available()


def make_trainer(cfg: DictConfig, run_dir: Path, loggers: list, callbacks: list) -> L.Trainer:
    """A Trainer with `trainer.*` passed through and what ca12 drives itself set here."""
    import lightning as L

    return L.Trainer(
        **OmegaConf.to_container(cfg.trainer, resolve=True),
        logger=loggers,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        default_root_dir=str(run_dir),
    )
