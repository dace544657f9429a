"""What ca12 knows of each env family before building one: the env section's common keys
(`EnvConfig`), each family's tasks, the docs of the keys it reads besides the common ones, and the
one-line refusal of a task it cannot build (`FAMILIES`).

Kept apart from the families' modules (ca12/envs/<family>.py), which import torch, TorchRL and the
env libraries, so `--list`, `--show-config` and a refused `--env` answer without them
(docs/ARCHITECTURE.md, "What may be imported at start-up"): this module imports the standard
library and ca12's light modules only, and finds the libraries' own tasks without importing them
(their files, or Gymnasium's registry, which imports quickly). A family module takes its tables
from here.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import os
import pkgutil
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from ca12.errors import UsageError
from ca12.schema import key
from ca12.untrusted import check_env_factory_path


@dataclass
class EnvConfig:
    """Keys every env family reads (conf/env/<family>/*.yaml); the rest are the task's own
    kwargs, whose names the family checks when it builds the env."""

    family: str = key("env family (the part of --env before the slash)")
    task: str = key("task of the family (after the slash)")
    num_envs: int = key("parallel env worlds per collector", positive=True)
    max_steps: int = key("episode length (steps)", positive=True)
    device: str = key("where the env steps and the collector samples (cpu, cuda)")
    continuous_actions: bool = key("continuous (true) or discrete (false) actions, where the family has both")
    # The one common key with a default (null): an ablation switch no task YAML needs to name.
    hide_observation: Optional[Dict[str, List[int]]] = dataclasses.field(
        default=None,
        metadata={"doc": "{group: [feature indices]} zeroed in that group's observation, an ablation (e.g. cut a message channel); null: none"},
    )
    curriculum: Optional[Dict[str, List[Any]]] = dataclasses.field(
        default=None,
        metadata={
            "doc": "{parameter: [start value, first frame, last frame]}: the training envs' parameter moves linearly from the start "
            "value to its configured one over those frames (ca12/envs/curriculum.py); evaluation plays the configured one; null: none"
        },
    )
    reward_scale: float = dataclasses.field(
        default=1.0,
        metadata={"doc": "multiplies the rewards the learner trains on (a critic fits returns of order 1 faster); returns are reported unscaled"},
    )


# Keys of an env config that are not passed to the env's own constructor as kwargs.
COMMON_KEYS = tuple(f.name for f in dataclasses.fields(EnvConfig))


def _package_dir(name: str) -> Path | None:
    """Where the installed package `name` lives, found without importing it (None: not installed)."""
    spec = importlib.util.find_spec(name)
    return Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None


# --- vmas (ca12/envs/vmas/) -------------------------------------------------------------------
# ca12's own VMAS scenarios (ca12/envs/vmas/tasks.py: SCENARIOS maps these names to their classes).
VMAS_OWN_SCENARIOS = ("speaker_listener",)


def vmas_tasks() -> list[str]:
    """VMAS's own scenarios (its scenarios/*.py), its vectorised ports of MPE's (scenarios/mpe/*.py)
    and ca12's (`VMAS_OWN_SCENARIOS`); none when VMAS is not installed. The files are VMAS's
    `vmas.scenarios` and `vmas.mpe_scenarios`, listed without importing VMAS (and torch)."""
    root = _package_dir("vmas")
    if root is None:
        return []
    files = [*(root / "scenarios").glob("*.py"), *(root / "scenarios" / "mpe").glob("*.py")]
    return sorted([path.stem for path in files if path.stem != "__init__"] + list(VMAS_OWN_SCENARIOS))


# --- matrix (ca12/envs/matrix/) ----------------------------------------------------------------
# Named games: each has conf/env/matrix/<name>.yaml with its payoff tensor.
MATRIX_GAMES = ("climbing", "coordination", "matching_pennies", "penalty", "prisoners_dilemma", "rock_paper_scissors")
# The named games, the generic template conf/env/matrix/scenario.yaml ("custom": the user gives env.payoffs)
# and the QMIX paper's two-step game (ca12/envs/matrix/two_step.py: two states in sequence, no payoff table).
MATRIX_TASKS = (*MATRIX_GAMES, "custom", "two_step")
MATRIX_KEY_DOCS = {
    "history": "past joint actions in each observation, newest first (1: the last play only)",
    "opponent_strategies": "null: every player is an agent; a list: player 1 is scripted by these strategies "
    "(each a list of action probabilities, or cycle | copy | counter), one drawn per episode",
    "opponent_period": "with opponent_strategies: also draw a new strategy every this many plays (null: at episode starts only)",
}

# --- generic, memory, market (ca12/envs/generic/, memory.py, market.py) ------------------------
GENERIC_TASKS = {"coop": True, "coop_discrete": False, "pixels": False}  # task -> continuous actions (pixels: images)
MEMORY_TASKS = ("cue",)
MARKET_TASKS = ("allocation",)

# --- comm (ca12/envs/comm/) ---------------------------------------------------------------------
COMM_TASKS = ("referential", "traffic_junction", "predator_prey")
# One-line docs of the task kwargs (`--show-config`).
COMM_KEY_DOCS = {
    "n_targets": "referential: possible targets, also the number of actions",
    "difficulty": "traffic_junction: easy | medium | hard (the grid, its routes and the presets)",
    "dim": "traffic_junction: grid side (null: 7 / 14 / 18 by difficulty); predator_prey: grid side",
    "n_max": "traffic_junction: most cars at once, the agent slots (null: 5 / 10 / 20)",
    "arrival_prob": "traffic_junction: probability an entry admits a car each step (null: 0.3 / 0.2 / 0.05)",
    "vision": "traffic_junction, predator_prey: an agent sees the (2 vision + 1)^2 square around it",
    "n_agents": "predator_prey: predators searching the grid",
}

# --- meta (ca12/envs/meta/) ---------------------------------------------------------------------
_NAVIGATION = ("goal_range", "max_speed", "agent_counts", "start_radius", "crowd_radius", "crowd_penalty")
# task -> the kwargs it takes (everything else in the env section is refused).
META_TASKS = {"navigation": _NAVIGATION, "agents": _NAVIGATION, "opponent": ("game",)}
META_KEY_DOCS = {
    "goal_range": "navigation: goals are uniform in [-goal_range, goal_range]^2",
    "max_speed": "navigation: distance moved per step by a unit action",
    "agent_counts": "navigation: agent counts a task may have (uniformly drawn); the TorchRL env plays the largest",
    "start_radius": "navigation: the agents start evenly on a circle of this radius about the origin",
    "crowd_radius": "navigation: teammates closer than this crowd each other",
    "crowd_penalty": "navigation: reward lost per crowding teammate per step",
    "game": "opponent: the ca12.game_theory classic played as the row player",
}

# --- grid (ca12/envs/grid/) -----------------------------------------------------------------------
# task -> the pandapower.networks function that builds its feeder
GRID_FEEDERS = {"cigre_lv": "create_cigre_network_lv", "kerber_landnetz": "create_kerber_landnetz_kabel_2"}
# One-line docs of the task kwargs (`--show-config`).
GRID_KEY_DOCS = {
    "n_buildings": "agents: the first n of the feeder's loads (null: all); the others stay as passive loads",
    "battery_hours": "battery capacity in hours of the building's peak load (kWh per kW), > 0",
    "battery_power": "battery power limit as a fraction of the building's peak load, > 0",
    "efficiency": "battery round-trip efficiency in (0, 1] (its square root each way)",
    "initial_soc": "state of charge at the start of a day, in [0, 1]",
    "pv_size": "PV peak power as a fraction of the building's peak load, >= 0",
    "max_cloud_cover": "PV output is scaled by 1 - U(0, max_cloud_cover) per world and day, in [0, 1]",
    "load_noise": "standard deviation of the multiplicative load noise per building and step, >= 0",
    "flexible_share": "share of a building's expected daily load energy that is deferrable, in [0, 1] (0: none, 1-D actions)",
    "flexible_window": "[start, end] hours of the day in which the flexible load may run (a step: its middle); it must be done by end",
    "flexible_power": "flexible load's power limit as a fraction of the building's peak load, > 0; must serve the energy in the window",
    "tariff": "[off-peak (23-7 h), day, peak (17-21 h)] prices in EUR/kWh, non-decreasing",
    "feed_in_price": "EUR/kWh earned for exported energy, >= 0",
    "voltage_band": "allowed |v - 1| in pu",
    "voltage_penalty": "EUR per percentage point outside the voltage band, per bus and step (shared)",
    "overload_penalty": "EUR per percentage point of loading above 100 %, per branch and step (shared)",
    "shared_reward": "every agent is charged the mean cost over buildings instead of its own",
}

# --- traffic (ca12/envs/traffic/) ---------------------------------------------------------------
TRAFFIC_TASKS = ("arterial1x4", "grid2x2", "grid4x4")
# One-line docs of the task kwargs (`--show-config`).
TRAFFIC_KEY_DOCS = {
    "rows": "intersections per column of the grid (the task's size)",
    "cols": "intersections per row of the grid",
    "arrival_rate": "Poisson mean of the vehicles arriving per step at each entry: one number, or a list (entries row-major, sides N, E, S, W)",
    "turn_ratios": "[through, right, left] probabilities of a vehicle's movement at each stop line",
    "travel_time": "cells per link = its free-flow travel time in steps (>= 2: moving cells, then the stop line)",
    "cell_capacity": "vehicles a cell holds (a link holds travel_time x cell_capacity)",
    "saturation_flow": "vehicles per step that leave a cell or a movement's queue, or enter a link",
    "min_green": "steps a phase stays green before a switch is allowed (each switch costs one all-red step)",
    "shared_reward": "every agent gets the network's mean reward instead of its own intersection's",
}

# --- sumo (ca12/envs/sumo/) ---------------------------------------------------------------------
# task -> (net file, route file) under sumo_rl/nets.
SUMO_TASKS = {
    "grid2x2": ("2x2grid/2x2.net.xml", "2x2grid/2x2.rou.xml"),
    "resco_grid4x4": ("RESCO/grid4x4/grid4x4.net.xml", "RESCO/grid4x4/grid4x4_1.rou.xml"),
    "resco_arterial4x4": ("RESCO/arterial4x4/arterial4x4.net.xml", "RESCO/arterial4x4/arterial4x4_1.rou.xml"),
}
SUMO_REWARDS = ("diff-waiting-time", "queue", "pressure", "average-speed")
# Task kwargs this family takes (everything else in the env section is refused), with their docs.
SUMO_KEY_DOCS = {
    "delta_time": "simulated seconds per decision (episode = max_steps x delta_time seconds); > yellow_time",
    "yellow_time": "seconds of yellow between two green phases",
    "min_green": "seconds a green phase lasts at least (after its yellow) before a switch is honoured",
    "reward_fn": f"sumo-rl's reward per signal: {', '.join(SUMO_REWARDS)}",
}
_SUMO_INSTALL = 'needs eclipse-sumo and sumo-rl: pip install -e ".[sumo]"'


def sumo_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("sumo", "sumo_rl", "pettingzoo"))


def check_sumo_task(task: str) -> None:
    """Refuse, in one line, an unknown task or missing packages.

    Raises:
        UsageError: naming the tasks, or the packages to install.
    """
    if task not in SUMO_TASKS:
        raise UsageError(f"unknown sumo task '{task}'; choose one of: {', '.join(sorted(SUMO_TASKS))}")
    if not sumo_installed():
        raise UsageError(f"sumo/{task} {_SUMO_INSTALL}")
    if "LIBSUMO_AS_TRACI" in os.environ:
        raise UsageError("sumo/ runs SUMO over TraCI (several simulations per process); unset LIBSUMO_AS_TRACI")


# --- gym (ca12/envs/gym/) -------------------------------------------------------------------------
GYM_KEY_DOCS = {
    "vectorization": "one Gymnasium vector env in process (gymnasium, the fastest measured), gymnasium_async (worker processes), "
    "or TorchRL's serial / parallel batching"
}
# Registry entries that wrap *another* library's env (Shimmy's compatibility layers), not tasks.
_NOT_TASKS = ("GymV21Environment-v0", "GymV26Environment-v0")
# Namespaces a plugin package registers when imported: namespace -> (module, pip package).
_PLUGINS = {"ALE": ("ale_py", "ale-py")}
# Gymnasium sub-packages whose envs need an optional dependency: prefix -> (package, module it
# installs, install command).
GYM_EXTRAS = {
    "gymnasium.envs.box2d": ("box2d", "Box2D", 'pip install "gymnasium[box2d]"'),
    "gymnasium.envs.mujoco": ("mujoco", "mujoco", 'pip install "gymnasium[mujoco]"'),
    "gymnasium.envs.phys2d": ("jax", "jax", 'pip install "gymnasium[jax]"'),
    "gymnasium.envs.tabular": ("jax", "jax", 'pip install "gymnasium[jax]"'),
}
_GYM_INSTALL = "gym/... envs need the gymnasium package: pip install gymnasium"


def gymnasium_with_plugins():
    """Gymnasium with the installed plugins' envs registered, or None when it is missing."""
    if importlib.util.find_spec("gymnasium") is None:
        return None
    import gymnasium

    for module, _ in _PLUGINS.values():
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)  # registers its namespace's ids
    return gymnasium


def _gym_registered() -> list[str]:
    """Every id in Gymnasium's registry that names a task, buildable here or not."""
    gymnasium = gymnasium_with_plugins()
    if gymnasium is None:  # the family is listed without tasks
        return []
    return sorted(task for task in gymnasium.registry if task not in _NOT_TASKS)


def gym_tasks() -> list[str]:
    """The ids that can be built here (`--list` shows these): not the removed versions Gymnasium
    keeps registered, nor those whose optional package is missing (see `_gym_unbuildable`)."""
    return [task for task in _gym_registered() if _gym_unbuildable(task) is None]


def _gym_unbuildable(task: str) -> str | None:
    """Why Gymnasium's registered id `task` cannot be built here, in one line (None: it can).

    Gymnasium keeps the ids of envs it removed (Ant-v2 and the other mujoco-py versions) with an
    entry point that only raises, to say where they went; other ids need an optional package
    (box2d, mujoco, jax) that a cheap look-up finds missing without importing the env.
    """
    import gymnasium

    spec = gymnasium.spec(task)
    if not isinstance(spec.entry_point, str):
        if not getattr(spec.entry_point, "__name__", "").startswith("_raise"):
            return None  # an env class or factory a plugin registered
        newest = gymnasium.envs.registration.find_highest_version(spec.namespace, spec.name)
        newer = gymnasium.envs.registration.get_env_id(spec.namespace, spec.name, newest) if newest and newest > (spec.version or 0) else None
        if newer is None:
            return f"gym/{task} is a removed version this Gymnasium no longer builds"
        why = _gym_unbuildable(newer)
        return f"gym/{task} is a removed version this Gymnasium no longer builds; use gym/{newer}" + (
            f" (which {why.removeprefix(f'gym/{newer} ')})" if why else ""
        )
    for prefix, (package, module, install) in GYM_EXTRAS.items():
        if spec.entry_point.startswith(prefix) and importlib.util.find_spec(module) is None:
            return f"gym/{task} needs the {package} package: {install}"
    return None


def check_gym_task(task: str) -> None:
    """Refuse, in one line, an id Gymnasium does not know or cannot build here.

    Raises:
        UsageError: naming the missing package (gymnasium, a plugin's such as ale-py, an env's
            such as mujoco), the removed version (with the newest one to use instead) or the
            unknown id, with a close match when there is one.
    """
    namespace, slash, _ = task.partition("/")
    if slash and namespace in _PLUGINS and importlib.util.find_spec(_PLUGINS[namespace][0]) is None:
        package = _PLUGINS[namespace][1]
        raise UsageError(f"gym/{task} needs the {package} package: pip install {package}")
    if gymnasium_with_plugins() is None:
        raise UsageError(_GYM_INSTALL)
    if task not in _gym_registered():
        close = difflib.get_close_matches(task, gym_tasks(), n=1)
        hint = f"did you mean '{close[0]}'?" if close else "python -m ca12.fit --list shows them"
        raise UsageError(f"unknown gym task '{task}'; {hint}")
    why = _gym_unbuildable(task)
    if why:
        raise UsageError(why)


# --- pettingzoo (ca12/envs/pettingzoo/) -------------------------------------------------------
PETTINGZOO_KEY_DOCS = {
    "vectorization": "how the worlds step together: batched (one loop, one batch of tensors: the fastest measured), serial "
    "(TorchRL's SerialEnv) or parallel (worker processes)"
}
# MPE2's scenarios, listed (and named in the missing-package message) when mpe2 is not installed.
_MPE_TASKS = (
    "collect_treasure",
    "simple",
    "simple_adversary",
    "simple_crypto",
    "simple_formation",
    "simple_line",
    "simple_push",
    "simple_reference",
    "simple_speaker_listener",
    "simple_spread",
    "simple_tag",
    "simple_world_comm",
)
# PettingZoo's turn-based classic games ca12 plays (ca12/envs/pettingzoo/turn_based.py): name -> module.
PETTINGZOO_CLASSIC = {"tictactoe": "pettingzoo.classic.tictactoe_v3", "connect_four": "pettingzoo.classic.connect_four_v3"}
_PETTINGZOO_INSTALL = 'needs pettingzoo and mpe2: pip install -e ".[pettingzoo]"'


def pettingzoo_installed() -> bool:
    return importlib.util.find_spec("pettingzoo") is not None and importlib.util.find_spec("mpe2") is not None


def mpe_newest_versions() -> dict[str, str]:
    """name -> module of its newest version in the installed mpe2 (found without importing the
    scenarios), e.g. {"simple_spread": "mpe2.simple_spread_v3"}."""
    spec = importlib.util.find_spec("mpe2")
    newest: dict[str, tuple[int, str]] = {}
    for module in pkgutil.iter_modules(spec.submodule_search_locations):
        match = re.fullmatch(r"(\w+)_v(\d+)", module.name)
        if match and int(match[2]) >= newest.get(match[1], (-1, ""))[0]:
            newest[match[1]] = (int(match[2]), f"mpe2.{module.name}")
    return {name: module for name, (_, module) in newest.items()}


def pettingzoo_tasks() -> list[str]:
    return sorted([*(mpe_newest_versions() if pettingzoo_installed() else _MPE_TASKS), *PETTINGZOO_CLASSIC])


def check_pettingzoo_task(task: str) -> None:
    """Refuse, in one line, an env PettingZoo/MPE2 does not have or a missing package.

    Raises:
        UsageError: naming the packages to install, or the unknown env with a close match.
    """
    known = pettingzoo_tasks()
    if task not in known:
        close = difflib.get_close_matches(task, known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"choose one of: {', '.join(known)}"
        raise UsageError(f"unknown pettingzoo task '{task}'; {hint}")
    if not pettingzoo_installed():
        raise UsageError(f"pettingzoo/{task} {_PETTINGZOO_INSTALL}")


# --- the registry ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Family:
    """An env family as the registry (ca12/envs/__init__.py) sees it before building one."""

    module: str  # defines `make(cfg, seed) -> EnvBase` (imports torch, TorchRL, the env library)
    tasks: Callable[[], Sequence[str]]  # its tasks, sorted
    key_docs: dict[str, str] = dataclasses.field(default_factory=dict)  # the keys it reads besides the common ones
    check_task: Callable[[str], None] | None = None  # its own refusal (a missing package, a close id); else its task list's


def _fixed(names) -> Callable[[], list[str]]:
    return lambda: sorted(names)


FAMILIES: dict[str, Family] = {
    "vmas": Family("ca12.envs.vmas", vmas_tasks),
    "matrix": Family("ca12.envs.matrix", _fixed(MATRIX_TASKS), MATRIX_KEY_DOCS),
    "generic": Family("ca12.envs.generic", _fixed(GENERIC_TASKS)),
    "memory": Family("ca12.envs.memory", _fixed(MEMORY_TASKS)),
    "gym": Family("ca12.envs.gym", gym_tasks, GYM_KEY_DOCS, check_gym_task),
    "pettingzoo": Family("ca12.envs.pettingzoo", pettingzoo_tasks, PETTINGZOO_KEY_DOCS, check_pettingzoo_task),
    "comm": Family("ca12.envs.comm", _fixed(COMM_TASKS), COMM_KEY_DOCS),
    "market": Family("ca12.envs.market", _fixed(MARKET_TASKS)),
    "meta": Family("ca12.envs.meta", _fixed(META_TASKS), META_KEY_DOCS),
    "grid": Family("ca12.envs.grid", _fixed(GRID_FEEDERS), GRID_KEY_DOCS),
    "traffic": Family("ca12.envs.traffic", _fixed(TRAFFIC_TASKS), TRAFFIC_KEY_DOCS),
    "sumo": Family("ca12.envs.sumo", _fixed(SUMO_TASKS), SUMO_KEY_DOCS, check_sumo_task),
    # Your own env: the task is a factory's import path, MODULE:ATTRIBUTE (checked here, imported when built).
    "user": Family("ca12.envs.user", _fixed(()), check_task=check_env_factory_path),
}
