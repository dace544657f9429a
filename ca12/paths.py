"""Where conf/ lives and which options its groups hold (no other ca12 imports: the registries
of algorithms and envs and the config composer all read it without importing each other)."""

from __future__ import annotations

import os
from pathlib import Path


def conf_dir() -> Path:
    """Where conf/ lives: $CA12_CONF, the source tree beside the package, or the copy installed
    inside it (`ca12/conf/`, setup.py)."""
    candidates = []
    if os.environ.get("CA12_CONF"):
        candidates.append(Path(os.environ["CA12_CONF"]))
    candidates.append(Path(__file__).resolve().parent.parent / "conf")
    candidates.append(Path(__file__).resolve().parent / "conf")
    for path in candidates:
        if (path / "config.yaml").is_file():
            return path
    raise FileNotFoundError(f"ca12 cannot find its conf/ directory (looked in {[str(p) for p in candidates]})")


# Folders inside a group that hold shared bases for its options' defaults lists, not options.
BASE_DIR = "base"


def group_options(group: str) -> list[str]:
    """Options of a config group, e.g. group_options('trainer') -> ['cpu', 'ddp', 'gpu'];
    the bases under `<group>/base/` are not options."""
    root = conf_dir() / group
    names = (str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))
    return sorted(name for name in names if not name.startswith(BASE_DIR + "/"))
