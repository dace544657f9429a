"""``python -m ca12.game_theory GAME_NAME_OR_FILE [--json] [--plots DIR]``.

Prints the equilibria (pure, mixed, correlated), the Stackelberg outcome, the Pareto front and
dominance for a named classic or a payoff file (JSON ``{"payoffs": [A, B, ...]}`` or ``.npy``
of shape ``(n_players, *n_actions)``). Pure actions are shown by name when the game has action
names (the classics do), by index otherwise. Bad input prints one line on stderr,
``ca12.game_theory: error: ...``, and exits with 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ca12.errors import UsageError
from ca12.game_theory.classics import CLASSICS, classic
from ca12.game_theory.correlated import correlated_equilibrium
from ca12.game_theory.dominance import dominated_actions, iterated_elimination
from ca12.game_theory.efficiency import pareto_optimal_profiles
from ca12.game_theory.enumeration import vertex_enumeration
from ca12.game_theory.equilibria import pure_nash_equilibria
from ca12.game_theory.games import NormalFormGame
from ca12.game_theory.stackelberg import stackelberg
from ca12.game_theory.zero_sum import solve_zero_sum

PROG = "ca12.game_theory"
EXIT_USAGE = 2
PLOT_SUFFIXES = ("_pareto.png", "_equilibria.png")

Names = Sequence[Sequence[str]] | None


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
        return _file_game(data, spec)
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
    return _file_game(data, spec)


def _file_game(data: np.ndarray, spec: str) -> NormalFormGame:
    """Build the game, naming the file in the error so the user knows which input is wrong."""
    try:
        return NormalFormGame(data, name=Path(spec).stem)
    except ValueError as err:
        raise ValueError(f"{spec}: {err}") from err


def _floats(x: Any) -> Any:
    return np.asarray(x, dtype=float).tolist()


def _distinct(rows: list[list[float]]) -> list[list[float]]:
    out: list[list[float]] = []
    for row in rows:
        if row not in out:
            out.append(row)
    return out


def analyze(game: NormalFormGame) -> dict[str, Any]:
    """Everything the command reports, as JSON-ready Python values.

    Actions are indices throughout; ``action_names`` (``None`` for payoff files) maps them to
    labels, and ``pareto_payoffs`` lines up one-to-one with ``pareto_profiles`` (``pareto``
    holds only the distinct payoff vectors).
    """
    ce = correlated_equilibrium(game, "welfare")
    iesds = iterated_elimination(game)
    pareto_profiles = pareto_optimal_profiles(game)
    pareto_payoffs = [_floats(game.payoff(p)) for p in pareto_profiles]
    report: dict[str, Any] = {
        "game": game.name,
        "n_actions": list(game.n_actions),
        "action_names": game.action_names,
        "symmetric": game.is_symmetric(),
        "constant_sum": game.is_constant_sum(),
        "pure_nash": [list(p) for p in pure_nash_equilibria(game)],
        "correlated": {"distribution": _floats(ce.distribution), "payoffs": _floats(ce.payoffs)},
        "pareto": _distinct(pareto_payoffs),
        "pareto_profiles": [list(p) for p in pareto_profiles],
        "pareto_payoffs": pareto_payoffs,
        "dominance": {
            "strictly_dominated": [dominated_actions(game, i) for i in range(game.n_players)],
            "dominated_by_mixed": [dominated_actions(game, i, mixed=True) for i in range(game.n_players)],
            "iesds_surviving": iesds.surviving,
        },
        "mixed_nash": None,
        "stackelberg": None,
        "zero_sum": None,
    }
    if game.n_players == 2:
        report["mixed_nash"] = [
            {"strategies": [_floats(p), _floats(q)], "payoffs": _floats(game.expected_payoffs([p, q]))} for p, q in vertex_enumeration(game)
        ]
        se = stackelberg(game, leader=0)
        report["stackelberg"] = {
            "leader": se.leader,
            "strategy": _floats(se.strategy),
            "follower_action": se.follower_action,
            "payoffs": _floats(se.payoffs),
        }
        if game.is_constant_sum():
            zs = solve_zero_sum(game)
            report["zero_sum"] = {
                "value": zs.value,
                "strategies": [_floats(zs.row_strategy), _floats(zs.column_strategy)],
            }
    return report


def _num(value: float) -> str:
    """Four significant digits; ``+ 0.0`` turns the -0.0 of negated payoffs into 0."""
    return f"{value + 0.0:.4g}"


def _fmt(values: Any) -> str:
    return "[" + ", ".join(_num(v) for v in np.ravel(values)) + "]"


def _action(names: Names, player: int, action: int) -> str:
    """The action's name when the game has names, else its index."""
    return str(action) if names is None else names[player][action]


def _profile(names: Names, profile: Sequence[int]) -> str:
    return "(" + ", ".join(_action(names, i, a) for i, a in enumerate(profile)) + ")"


def _per_player(names: Names, actions: Sequence[Sequence[int]]) -> str:
    """``player 0: C, D; player 1: none``: one action set per player, by name."""
    return "; ".join(f"player {i}: " + (", ".join(_action(names, i, a) for a in acts) or "none") for i, acts in enumerate(actions))


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    """Align columns: the first (labels) to the left, the others (numbers) to the right."""
    widths = [max(len(cell) for cell in column) for column in zip(*rows)]

    def line(row: list[str]) -> str:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        return indent + "  ".join(cells)

    return [line(row) for row in rows]


def _pareto_lines(report: dict[str, Any]) -> list[str]:
    """One row per Pareto-optimal profile with its payoff to each player, for any N."""
    names = report["action_names"]
    header = ["profile"] + [f"player {i}" for i in range(len(report["n_actions"]))]
    rows = [[_profile(names, p)] + [_num(v) for v in u] for p, u in zip(report["pareto_profiles"], report["pareto_payoffs"])]
    return ["Pareto-optimal pure outcomes (payoff to each player):", *_table([header, *rows])]


def _equilibrium_lines(report: dict[str, Any]) -> list[str]:
    names = report["action_names"]
    pure = ", ".join(_profile(names, p) for p in report["pure_nash"]) or "none"
    lines = [f"pure Nash equilibria: {pure}"]
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
        follower = _action(names, 1, se["follower_action"])
        lines.append(f"Stackelberg (row leads): commit {_fmt(se['strategy'])}, follower plays {follower}, payoffs={_fmt(se['payoffs'])}")
    if report["zero_sum"] is not None:
        zs = report["zero_sum"]
        lines.append(f"zero-sum value {zs['value']:.6g}, maximin {_fmt(zs['strategies'][0])}, minimax {_fmt(zs['strategies'][1])}")
    return lines


def _dominance_lines(report: dict[str, Any]) -> list[str]:
    names, dom = report["action_names"], report["dominance"]
    return [
        f"strictly dominated (pure): {_per_player(names, dom['strictly_dominated'])}",
        f"strictly dominated by mixtures: {_per_player(names, dom['dominated_by_mixed'])}",
        f"IESDS survivors: {_per_player(names, dom['iesds_surviving'])}",
    ]


def format_report(report: dict[str, Any]) -> str:
    """Human-readable summary of :func:`analyze`'s output.

    Pure actions appear by name when the game has names; mixed strategies and the correlated
    distribution stay probability vectors, in the action order printed in the header.
    """
    lines = [f"game: {report['game']}  actions: {report['n_actions']}  symmetric: {report['symmetric']}  constant-sum: {report['constant_sum']}"]
    if report["action_names"] is not None:
        order = [range(n) for n in report["n_actions"]]
        lines.append(f"action order: {_per_player(report['action_names'], order)}")
    lines += _equilibrium_lines(report) + _pareto_lines(report) + _dominance_lines(report)
    return "\n".join(lines)


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        """Hand usage errors to :func:`main` so they print like every other error."""
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog=f"python -m {PROG}",
        description="Equilibria, Stackelberg, Pareto and dominance of a normal-form game.",
        epilog=f"named games: {', '.join(sorted(CLASSICS))}",
    )
    parser.add_argument("game", help="a named classic or a .json / .npy payoff file")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--plots",
        metavar="DIR",
        help="also write two PNGs to DIR (created if missing), named after the game: "
        "<game>_pareto.png (pure and sampled mixed payoff profiles with the Pareto front) "
        "and <game>_equilibria.png (payoffs of the Nash, max-welfare correlated and "
        "Stackelberg equilibria); 2-player games only, skipped otherwise",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        game = load_game(args.game)
        report = analyze(game)
        plots = _save_plots(game, report, Path(args.plots)) if args.plots else None
    except (ValueError, OSError) as err:
        print(f"{PROG}: error: " + " ".join(str(err).split()), file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(report))
    else:
        print(format_report(report) + ("" if plots is None else "\n" + _plots_line(plots)))
    return 0


def _plots_line(paths: list[Path]) -> str:
    if not paths:
        return "plots: skipped (2-player games only)"
    return "plots: " + ", ".join(str(p) for p in paths)


def _save_plots(game: NormalFormGame, report: dict[str, Any], out: Path) -> list[Path]:
    """Write the two PNGs of a 2-player game (see ``--plots``); nothing for other games.

    Raises:
        ValueError: DIR cannot be created or written, with the reason.
    """
    if game.n_players != 2:
        return []
    from ca12.game_theory.plots import plot_equilibrium_payoffs, plot_pareto_front

    pareto, equilibria = (out / f"{game.name}{suffix}" for suffix in PLOT_SUFFIXES)
    points = {
        "mixed Nash": [eq["payoffs"] for eq in report["mixed_nash"]],
        "max-welfare CE": report["correlated"]["payoffs"],
        "Stackelberg": report["stackelberg"]["payoffs"],
    }
    try:
        return [plot_pareto_front(game, pareto), plot_equilibrium_payoffs(game, points, equilibria)]
    except OSError as err:
        raise ValueError(f"cannot write plots to {out}: {err}") from err
