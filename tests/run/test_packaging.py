"""The package as a user gets it from `pip install .` (not editable): `callbacks/` installs as
`ca12.callbacks` (no top-level `callbacks` package in site-packages), and every conf/ group ships
inside the package, found from any working directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """ca12 built as a wheel and installed (without its dependencies, which this venv has) into a
    folder of its own."""
    tmp = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(ROOT)], check=True, capture_output=True)
    (wheel,) = (tmp / "dist").glob("ca12-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp / "site"), str(wheel)], check=True, capture_output=True)
    return tmp / "site"


def _run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CA12_CONF"} | {"PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_installed_wheel_lists_and_composes_from_another_folder(installed, tmp_path):
    listed = _run(installed, tmp_path, "-m", "ca12.fit", "--list")
    assert listed.returncode == 0, listed.stderr
    assert "algo mappo" in listed.stdout.splitlines() and "env vmas/navigation" in listed.stdout.splitlines()
    probe = (
        "import json, sys, ca12, ca12.callbacks; from ca12.paths import conf_dir; from ca12.run.config import load_config; "
        "cfg = load_config('mappo', 'grid/cigre_lv'); "
        "print(json.dumps([ca12.__file__, ca12.callbacks.__file__, str(conf_dir()), 'callbacks' in sys.modules, cfg.callbacks.progress._target_]))"
    )
    shown = _run(installed, tmp_path, "-c", probe)
    assert shown.returncode == 0, shown.stderr
    package, callbacks, conf, top_level_callbacks, target = json.loads(shown.stdout)
    assert Path(package).parent == installed / "ca12" and Path(callbacks).parent == installed / "ca12" / "callbacks"
    assert Path(conf) == installed / "ca12" / "conf" and not top_level_callbacks and target == "ca12.callbacks.FramesProgressBar"
    shipped = sorted(p.relative_to(installed / "ca12" / "conf") for p in (installed / "ca12" / "conf").rglob("*.yaml"))
    assert shipped == sorted(p.relative_to(ROOT / "conf") for p in (ROOT / "conf").rglob("*.yaml")), "every conf/ file ships, by glob"
    assert not (installed / "callbacks").exists() and not (installed / "conf").exists()
