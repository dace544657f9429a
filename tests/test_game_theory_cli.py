"""``python -m ca12.game_theory`` through a subprocess, as a user or script would run it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ca12.game_theory", *args],
        capture_output=True, text=True, timeout=60,
    )


def test_named_game_json_keys_and_values():
    proc = _run("battle_of_the_sexes", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for key in ("pure_nash", "mixed_nash", "correlated", "stackelberg", "pareto", "zero_sum"):
        assert key in out
    assert out["pure_nash"] == [[0, 0], [1, 1]]
    assert len(out["mixed_nash"]) == 3
    mixed = [eq for eq in out["mixed_nash"] if 0 < eq["strategies"][0][0] < 1]
    np.testing.assert_allclose(mixed[0]["strategies"], [[0.6, 0.4], [0.4, 0.6]], atol=1e-9)
    np.testing.assert_allclose(mixed[0]["payoffs"], [1.2, 1.2], atol=1e-9)
    assert sum(out["correlated"]["payoffs"]) == pytest.approx(5.0)
    assert out["stackelberg"]["leader"] == 0 and out["stackelberg"]["payoffs"][0] >= 3.0 - 1e-9
    assert sorted(out["pareto"]) == [[2.0, 3.0], [3.0, 2.0]]
    assert out["zero_sum"] is None


def test_zero_sum_game_json():
    out = json.loads(_run("matching_pennies", "--json").stdout)
    assert out["zero_sum"]["value"] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(out["zero_sum"]["strategies"], [[0.5, 0.5], [0.5, 0.5]])
    assert out["pure_nash"] == []


def test_text_output_and_payoff_files(tmp_path):
    text = _run("chicken")
    assert text.returncode == 0 and "correlated" in text.stdout and "Stackelberg" in text.stdout
    path = tmp_path / "pd.json"
    path.write_text(json.dumps({"payoffs": [[[3, 0], [5, 1]], [[3, 5], [0, 1]]]}))
    out = json.loads(_run(str(path), "--json").stdout)
    assert out["pure_nash"] == [[1, 1]]
    three = tmp_path / "three.npy"
    u = np.zeros((2, 2, 2))
    u[0, 0, 0] = u[1, 1, 1] = 1.0
    np.save(three, np.stack([u, u, u]))
    out = json.loads(_run(str(three), "--json").stdout)
    assert out["pure_nash"] == [[0, 0, 0], [1, 1, 1]]
    assert out["mixed_nash"] is None and out["stackelberg"] is None and out["zero_sum"] is None
    assert out["pareto"] == [[1.0, 1.0, 1.0]]


@pytest.mark.parametrize(
    "content, name",
    [
        (None, "no_such_game"),
        (None, "missing.json"),
        ("{not json", "bad.json"),
        ('{"payoffs": [[[1, 2], [3, 4]], [[1, 2]]]}', "ragged.json"),
        ('{"payoffs": [[[1, "x"], [3, 4]], [[1, 2], [3, 4]]]}', "text.json"),
        ('{"payoffs": [[1, 2], [3, 4]]}', "shape.json"),
        ('[1, 2]', "list.json"),
        (b"\x00garbage", "bad.npy"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, content, name):
    target = name
    if content is not None:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        target = str(path)
    elif name.endswith(".json"):
        target = str(tmp_path / name)
    proc = _run(target, "--json")
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr


def test_missing_argument_is_one_line():
    proc = _run()
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
