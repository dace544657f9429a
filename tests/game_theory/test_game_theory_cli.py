"""``python -m ca12.game_theory`` through a subprocess, as a user or script would run it."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ca12.game_theory", *args],
        capture_output=True,
        text=True,
        timeout=60,
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
        ("[1, 2]", "list.json"),
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
    for mode in ([], ["--json"]):
        _assert_usage_error(_run(target, *mode))


@pytest.mark.parametrize("args", [(), ("chicken", "--bogus"), ("chicken", "extra")])
def test_usage_errors_are_one_prefixed_line(args):
    _assert_usage_error(_run(*args))


def test_unwritable_plot_dir_is_one_prefixed_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    _assert_usage_error(_run("chicken", "--plots", str(blocker)))


def _assert_usage_error(proc: subprocess.CompletedProcess) -> None:
    """The user sees exactly one ``ca12.game_theory: error: ...`` line and exit code 2."""
    assert proc.returncode == 2 and proc.stdout == "", proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ca12.game_theory: error: "), proc.stderr


def _pareto_table(stdout: str) -> list[str]:
    """Header and rows of the text output's Pareto table (the indented lines after its title)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Pareto-optimal")) + 1
    table = []
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        table.append(line)
    return table


def _pareto_rows(stdout: str, n_players: int) -> dict[str, list[float]]:
    """Profile label -> payoffs, parsed from the Pareto table (payoffs must be plain numbers)."""
    rows = {}
    for line in _pareto_table(stdout)[1:]:
        profile, *payoffs = line.strip().rsplit(None, n_players)
        rows[profile] = [float(v) for v in payoffs]
    return rows


def _three_player_file(tmp_path) -> tuple[str, np.ndarray]:
    u = np.zeros((3, 2, 2, 2))
    for a in np.ndindex(2, 2, 2):
        u[(slice(None), *a)] = [1 + 2.5 * a[0] - a[1], 10 * a[1] + a[2], 0.125 * a[0] - 3 * a[2]]
    path = tmp_path / "three.json"
    path.write_text(json.dumps({"payoffs": u.tolist()}))
    return str(path), u


def test_pareto_payoffs_are_plain_numbers():
    proc = _run("prisoners_dilemma")
    assert proc.returncode == 0, proc.stderr
    section = "\n".join(_pareto_table(proc.stdout))
    assert "'" not in section and '"' not in section and "[" not in section
    assert _pareto_rows(proc.stdout, 2) == {"(C, C)": [3.0, 3.0], "(C, D)": [0.0, 5.0], "(D, C)": [5.0, 0.0]}


@pytest.mark.parametrize("n_players", [2, 3])
def test_pareto_table_columns_line_up(tmp_path, n_players):
    game = "chicken" if n_players == 2 else _three_player_file(tmp_path)[0]
    proc = _run(game)
    assert proc.returncode == 0, proc.stderr
    header, *rows = _pareto_table(proc.stdout)
    players = [f"player {i}" for i in range(n_players)]
    assert header.split(None, 1)[1].split("  ") == players
    ends = [header.index(p) + len(p) for p in players]
    for row in rows:
        numbers = list(re.finditer(r"\S+", row))[-n_players:]
        assert [m.end() for m in numbers] == ends, "\n".join([header, *rows])
        assert row.index("(") == header.index("profile")
    if n_players == 3:
        u = _three_player_file(tmp_path)[1]
        out = json.loads(_run(game, "--json").stdout)
        expected = {"(" + ", ".join(map(str, p)) + ")": u[(slice(None), *p)].tolist() for p in out["pareto_profiles"]}
        assert _pareto_rows(proc.stdout, 3) == expected and len(rows) == 4


def test_text_output_uses_action_names(tmp_path):
    text = _run("prisoners_dilemma").stdout
    assert "pure Nash equilibria: (D, D)" in text
    assert "follower plays D," in text
    assert set(_pareto_rows(text, 2)) == {"(C, C)", "(C, D)", "(D, C)"}
    assert "strictly dominated (pure): player 0: C; player 1: C" in text
    assert "IESDS survivors: player 0: D; player 1: D" in text
    path = tmp_path / "pd.json"
    path.write_text(json.dumps({"payoffs": [[[3, 0], [5, 1]], [[3, 5], [0, 1]]]}))
    unnamed = _run(str(path)).stdout
    assert "pure Nash equilibria: (1, 1)" in unnamed and "follower plays 1," in unnamed
    assert "IESDS survivors: player 0: 1; player 1: 1" in unnamed
    named, indexed = (json.loads(_run(g, "--json").stdout) for g in ("pd", str(path)))
    assert named["pure_nash"] == indexed["pure_nash"] == [[1, 1]]
    assert named["stackelberg"]["follower_action"] == 1
    assert named["action_names"] == [["C", "D"], ["C", "D"]] and indexed["action_names"] is None


def test_plots_documented_and_written(tmp_path):
    help_text = " ".join(_run("--help").stdout.split())
    assert "--plots DIR" in help_text
    assert "<game>_pareto.png" in help_text and "<game>_equilibria.png" in help_text
    proc = _run("chicken", "--plots", str(tmp_path / "plots"))
    assert proc.returncode == 0, proc.stderr
    written = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert written == ["chicken_equilibria.png", "chicken_pareto.png"]
    assert str(tmp_path / "plots" / "chicken_pareto.png") in proc.stdout
    three = _run(_three_player_file(tmp_path)[0], "--plots", str(tmp_path / "none"))
    assert "plots: skipped (2-player games only)" in three.stdout
    assert not (tmp_path / "none").exists()
