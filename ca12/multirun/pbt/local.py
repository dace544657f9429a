"""The local backend: a population trained round by round in this process.

Each round trains every member in turn for `ready` frames (`ca12.multirun.pbt.members.train_member`),
scores them, and applies `ca12.multirun.pbt.core.pbt_step`: a member in the bottom quantile gets a
top member's checkpoint and explored hyperparameters. `<pbt_dir>/state.json` (written
atomically) holds the finished rounds, each member's hyperparameters, the table rows and the
generator's state; a ready step's decisions are saved *before* any checkpoint is copied, so an
interrupted population resumes exactly: finished rounds are not redone, a member half-way
through a round resumes from its own last checkpoint, and a half-applied ready step is applied
again (copying the same donor checkpoint twice gives the same file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ca12.errors import UsageError
from ca12.multirun.pbt.core import generator_state, pbt_step, restore_generator
from ca12.multirun.pbt.members import PopulationSpec, install_checkpoint, member_dir, member_score, summary, train_member, write_atomic, write_tables
from ca12.untrusted import check_plain_config, read_json_file

STATE_FILE = "state.json"


def load_state(spec: PopulationSpec, pbt_dir: Path) -> dict:
    """The population's state file, or the state of a new population (hyperparameters drawn)."""
    path = pbt_dir / STATE_FILE
    if path.is_file():
        return _checked_state(read_json_file(path, "population state"), spec, path)
    return {
        "round": 0,
        "decided": 0,
        "hparams": spec.initial_hparams(),
        "started_from": list(range(spec.population)),
        "operations": [{}] * spec.population,
        "pending": [],
        "rows": [],
        "rng": generator_state(np.random.default_rng([spec.seed, 2])),
    }


def _checked_state(state: Any, spec: PopulationSpec, path: Path) -> dict:
    """A saved state file is data from anyone (ca12/untrusted.py): its hyperparameters become
    members' overrides, so each member's must be the searched keys with plain values (no
    interpolation, no class), and member numbers must be members of the population."""
    check_plain_config(state, str(path))
    members, keys = range(spec.population), set(spec.space.keys)
    hparams = state.get("hparams")
    if not isinstance(hparams, list) or len(hparams) != spec.population or any(not isinstance(h, dict) or set(h) != keys for h in hparams):
        raise UsageError(f"{path}: 'hparams' must hold {spec.population} members' values of the searched keys {sorted(keys)}")
    pending = state.get("pending", [])
    if not isinstance(pending, list) or any(
        not isinstance(p, list) or len(p) != 2 or any(type(i) is not int or i not in members for i in p) for p in pending
    ):
        raise UsageError(f"{path}: 'pending' must list [member, donor] pairs of members 0..{spec.population - 1}")
    return state


def run_local(spec: PopulationSpec, pbt_dir: Path) -> list[dict]:
    """Train the population in `pbt_dir` to `spec.frames` (continuing what is there); returns
    the members table's rows."""
    state = load_state(spec, pbt_dir)
    keys = spec.space.keys

    def save() -> None:
        write_atomic(pbt_dir / STATE_FILE, json.dumps(state))

    _apply_copies(state, pbt_dir, save)
    while state["round"] < spec.rounds:
        if 0 < state["round"] != state["decided"]:  # after every round but the last (or after it, when --frames grew)
            _ready_step(state, spec, save)
            _apply_copies(state, pbt_dir, save)
        round_ = state["round"] + 1
        after, until = state["round"] * spec.ready, round_ * spec.ready
        ok = [train_member(spec, member_dir(pbt_dir, i), spec.seed + i, state["hparams"][i], until) for i in range(spec.population)]
        for i in range(spec.population):
            score = member_score(member_dir(pbt_dir, i), after, until, spec.score) if ok[i] else float("-inf")
            ops = {f"{k}:op": op for k, op in state["operations"][i].items()}
            state["rows"].append(
                {
                    "round": round_,
                    "member": i,
                    "frames": until,
                    "score": score,
                    "started_from": state["started_from"][i],
                    **state["hparams"][i],
                    **ops,
                }
            )
        state["round"] = round_
        save()
        write_tables(pbt_dir, keys, state["rows"])
    print(summary(state["rows"], keys))
    return state["rows"]


def _ready_step(state: dict, spec: PopulationSpec, save) -> None:
    """Exploit and explore on the scores of the last finished round; the decisions (and the
    copies they need, `pending`) are saved before any checkpoint is copied."""
    scores = [r["score"] for r in sorted((r for r in state["rows"] if r["round"] == state["round"]), key=lambda r: r["member"])]
    rng = restore_generator(state["rng"])
    decisions = pbt_step(scores, state["hparams"], rng, spec.space.explore, spec.quantile)
    state.update(
        hparams=[d.hparams for d in decisions],
        started_from=[i if d.donor is None else d.donor for i, d in enumerate(decisions)],
        operations=[d.operations for d in decisions],
        pending=[[d.member, d.donor] for d in decisions if d.donor is not None],
        rng=generator_state(rng),
        decided=state["round"],
    )
    save()
    for d in decisions:
        if d.donor is not None:
            print(
                f"ca12.pbt: after round {state['round']}: member {d.member} ({scores[d.member]:.4g}) "
                f"copies member {d.donor} ({scores[d.donor]:.4g}), "
                + ", ".join(f"{k} -> {d.hparams[k]!r} ({d.operations.get(k, 'copied')})" for k in spec.space.keys)
            )


def _apply_copies(state: dict, pbt_dir: Path, save) -> None:
    """Exploit: copy each pending donor's checkpoint over its member's, then clear the list."""
    for member, donor in state["pending"]:
        install_checkpoint(member_dir(pbt_dir, donor) / "checkpoints" / "last.ckpt", member_dir(pbt_dir, member))
    if state["pending"]:
        state["pending"] = []
        save()
