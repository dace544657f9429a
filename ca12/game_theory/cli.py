"""``python -m ca12.game_theory GAME_NAME_OR_FILE [--json] [--plots DIR]``.

Prints the equilibria (pure, mixed, correlated), the Stackelberg outcome, the Pareto front and
dominance for a named classic or a payoff file (JSON ``{"payoffs": [A, B, ...]}`` or ``.npy``
of shape ``(n_players, *n_actions)``). Bad input prints one line on stderr and exits with 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ca12.game_theory.classics import CLASSICS, classic
from ca12.game_theory.correlated import correlated_equilibrium
from ca12.game_theory.dominance import dominated_actions, iterated_elimination
from ca12.game_theory.efficiency import pareto_optimal_profiles
from ca12.game_theory.enumeration import vertex_enumeration
from ca12.game_theory.equilibria import pure_nash_equilibria
from ca12.game_theory.games import NormalFormGame
from ca12.game_theory.stackelberg import stackelberg
from ca12.game_theory.zero_sum import solve_zero_sum

EXIT_USAGE = 2


def load_game(spec: str) -> NormalFormGame:
    """A classic by name, or a game from a ``.json`` / ``.npy`` payoff file.

    Raises:
        ValueError: unknown name, missing or unreadable file, malformed content, bad shapes.
    """
    path = Path(spec)
    if path.suffix.lower() not in (".json", ".npy") and not path.exists():
        return classic(spec)
    if not path.is_file():
        raise ValueError(f"payoff file not found: {spec}")
    if path.suffix.lower() == ".npy":
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise ValueError(f"cannot read {spec} as .npy: {err}") from err
        return NormalFormGame(data, name=path.stem)
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {spec} as JSON: {err}") from err
    if not isinstance(content, dict) or not isinstance(content.get("payoffs"), list):
        raise ValueError(f'{spec}: expected a JSON object {{"payoffs": [A, B, ...]}}')
    try:
        data = np.array(content["payoffs"], dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{spec}: payoffs must be equally shaped numeric arrays ({err})") from err
    return NormalFormGame(data, name=path.stem)


def _floats(x: Any) -> Any:
    return np.asarray(x, dtype=float).tolist()


def _distinct(rows: list[list[float]]) -> list[list[float]]:
    out: list[list[float]] = []
    for row in rows:
        if row not in out:
            out.append(row)
    return out


def analyze(game: NormalFormGame) -> dict[str, Any]:
    """Everything the command reports, as JSON-ready Python values."""
    ce = correlated_equilibrium(game, "welfare")
    iesds = iterated_elimination(game)
    report: dict[str, Any] = {
        "game": game.name,
        "n_actions": list(game.n_actions),
        "symmetric": game.is_symmetric(),
        "constant_sum": game.is_constant_sum(),
        "pure_nash": [list(p) for p in pure_nash_equilibria(game)],
        "correlated": {"distribution": _floats(ce.distribution), "payoffs": _floats(ce.payoffs)},
        "pareto": _distinct([_floats(game.payoff(p)) for p in pareto_optimal_profiles(game)]),
        "pareto_profiles": [list(p) for p in pareto_optimal_profiles(game)],
        "dominance": {
            "strictly_dominated": [dominated_actions(game, i) for i in range(game.n_players)],
            "dominated_by_mixed": [
                dominated_actions(game, i, mixed=True) for i in range(game.n_players)
            ],
            "iesds_surviving": iesds.surviving,
        },
        "mixed_nash": None,
        "stackelberg": None,
        "zero_sum": None,
    }
    if game.n_players == 2:
        report["mixed_nash"] = [
            {"strategies": [_floats(p), _floats(q)], "payoffs": _floats(game.expected_payoffs([p, q]))}
            for p, q in vertex_enumeration(game)
        ]
        se = stackelberg(game, leader=0)
        report["stackelberg"] = {
            "leader": se.leader, "strategy": _floats(se.strategy),
            "follower_action": se.follower_action, "payoffs": _floats(se.payoffs),
        }
        if game.is_constant_sum():
            zs = solve_zero_sum(game)
            report["zero_sum"] = {
                "value": zs.value, "strategies": [_floats(zs.row_strategy), _floats(zs.column_strategy)],
            }
    return report


def _fmt(values: Any) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in np.ravel(values)) + "]"


def format_report(report: dict[str, Any]) -> str:
    """Human-readable summary of :func:`analyze`'s output."""
    lines = [f"game: {report['game']}  actions: {report['n_actions']}  "
             f"symmetric: {report['symmetric']}  constant-sum: {report['constant_sum']}"]
    lines.append(f"pure Nash equilibria: {report['pure_nash'] or 'none'}")
    if report["mixed_nash"] is not None:
        lines.append(f"all (extreme) Nash equilibria: {len(report['mixed_nash'])}")
        for eq in report["mixed_nash"]:
            p, q = eq["strategies"]
            lines.append(f"  p={_fmt(p)} q={_fmt(q)} payoffs={_fmt(eq['payoffs'])}")
    ce = report["correlated"]
    lines.append(f"max-welfare correlated equilibrium: payoffs={_fmt(ce['payoffs'])}")
    lines.append(f"  distribution={_fmt(ce['distribution'])}")
    if report["stackelberg"] is not None:
        se = report["stackelberg"]
        lines.append(f"Stackelberg (row leads): commit {_fmt(se['strategy'])}, follower plays "
                     f"{se['follower_action']}, payoffs={_fmt(se['payoffs'])}")
    if report["zero_sum"] is not None:
        zs = report["zero_sum"]
        lines.append(f"zero-sum value {zs['value']:.6g}, maximin {_fmt(zs['strategies'][0])}, "
                     f"minimax {_fmt(zs['strategies'][1])}")
    lines.append(f"Pareto-optimal pure outcomes: {report['pareto_profiles']} "
                 f"payoffs {[_fmt(p) for p in report['pareto']]}")
    dom = report["dominance"]
    lines.append(f"strictly dominated (pure): {dom['strictly_dominated']}; "
                 f"by mixtures: {dom['dominated_by_mixed']}; IESDS survivors: {dom['iesds_surviving']}")
    return "\n".join(lines)


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def main(argv: list[str] | None = None) -> int:
    parser = _OneLineParser(
        prog="python -m ca12.game_theory",
        description="Equilibria, Stackelberg, Pareto and dominance of a normal-form game.",
        epilog=f"named games: {', '.join(sorted(CLASSICS))}",
    )
    parser.add_argument("game", help="a named classic or a .json / .npy payoff file")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plots", metavar="DIR", help="also save PNG plots (2 players) to DIR")
    args = parser.parse_args(argv)
    try:
        game = load_game(args.game)
        report = analyze(game)
        if args.plots and game.n_players == 2:
            _save_plots(game, report, Path(args.plots))
    except (ValueError, OSError) as err:
        print("error: " + " ".join(str(err).split()), file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(report) if args.json else format_report(report))
    return 0


def _save_plots(game: NormalFormGame, report: dict[str, Any], out: Path) -> None:
    from ca12.game_theory.plots import plot_equilibrium_payoffs, plot_pareto_front

    plot_pareto_front(game, out / f"{game.name}_pareto.png")
    points = {
        "mixed Nash": [eq["payoffs"] for eq in report["mixed_nash"]],
        "max-welfare CE": report["correlated"]["payoffs"],
        "Stackelberg": report["stackelberg"]["payoffs"],
    }
    plot_equilibrium_payoffs(game, points, out / f"{game.name}_equilibria.png")
