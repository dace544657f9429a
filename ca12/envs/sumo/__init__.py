"""Traffic signal control on SUMO (`--env sumo/<task>`): sumo-rl's bundled networks through
TorchRL's `PettingZooWrapper`, the same task as the torch model of ca12/envs/traffic/ on the
real microscopic simulator (Eclipse SUMO, one `sumo` process per world, driven over TraCI).

Tasks (`TASKS`), as sumo-rl builds them (it counts every green phase of a signal's program):
`grid2x2` (sumo-rl's 2x2grid: 4 signals, 4 green phases, observation 21), `resco_grid4x4`
(RESCO's grid4x4: 16 signals, 8 green phases, observation 33) and `resco_arterial4x4` (RESCO's
arterial4x4: 16 signals, 5 green phases, observation 18); every signal of a task has the same
spaces (checked: a network whose signals differ is refused in one line). RESCO's own episodes
are 3600 s of its route file; here every task runs `env.max_steps` decisions from time 0.

Layout: every traffic light one agent of one group "agents" (sumo-rl's signal ids, in its order).
    ("agents", "observation") [B, n, obs] float in [0, 1]: sumo-rl's default observation, per
        signal the one-hot green phase, a flag "min_green has passed", then per incoming lane its
        density and its queue (halted vehicles), both / the lane's vehicle capacity;
    ("agents", "action") [B, n] int64 categorical: the green phase the signal asks for (sumo-rl
        honours a switch only once yellow_time + min_green seconds have passed since the last one,
        and puts yellow_time seconds of yellow in between);
    ("agents", "reward") [B, n, 1]: sumo-rl's `env.reward_fn` (default diff-waiting-time: the drop
        of the accumulated waiting time on the signal's incoming lanes since its last decision, /
        100 s; `queue`: minus its halted vehicles; also `pressure`, `average-speed`);
    ("agents", "info", "system_*") [B, n]: sumo-rl's system info as it reports it (the same
        values for every agent);
    env-level done / terminated / truncated [B, 1]: one decision is `env.delta_time` simulated
        seconds; sumo-rl runs `num_seconds` = `env.max_steps` x `env.delta_time` and then
        truncates (never terminated).
    ("stats", name) [B, 1], running means over the episode's decisions so far (at its last step,
        the episode's):  waiting_time: sumo-rl's system_mean_waiting_time (s, the mean over the
        vehicles in the network of their current waiting time);  queue: system_total_stopped
        (vehicles halted in the network);  speed: system_mean_speed (m/s).

Worlds: `env.num_envs` worlds in TorchRL's `SerialEnv` (one SUMO process each; nothing batches
SUMO worlds more cheaply, the simulator dominates a step). Every reset restarts SUMO (sumo-rl's
way), and TraCI waits one second before it first connects to the new process, so a reset costs
about 1 s: keep episodes long (the default is 360 decisions, 30 simulated minutes).
`LIBSUMO_AS_TRACI` (in-process libsumo) is refused: it runs one simulation per process, and a
training run builds several envs (the spec env, the training and evaluation envs).

Seeding: `set_seed(seed)` starts the first episode with SUMO seed `seed` and seeds a NumPy
generator that draws each later episode's SUMO seed (sumo-rl would otherwise replay the first
seed's traffic every episode); world i + 1 gets `seed_generator` of world i's seed (SerialEnv).
The generators are registered with `ca12.seeding`, so checkpoints capture them.

Baselines (`BASELINES`), the contract of traffic.py:
    fixed_time: each signal cycles through its green phases in order, holding each for the green
        time of the network's own SUMO program (the tlLogic in the .net.xml), rounded to
        decisions and at least the shortest hold sumo-rl allows;
    max_pressure: each signal asks for the green phase of largest pressure, the sum over the
        phase's green links (incoming lane -> outgoing lane) of the vehicles on the incoming lane
        minus those on the outgoing one (Varaiya 2013 with lane vehicle counts, as RESCO's
        MaxPressure), keeping its phase on a tie. The default observation has no downstream
        lanes, so the policy reads the counts from the live simulation over TraCI, not from
        the observation.

Compatibility: sumo-rl 1.4.5 calls `pettingzoo.utils.agent_selector` as a class, a module since
PettingZoo 1.25; this module points sumo-rl's name at `AgentSelector`. `SUMO_HOME` is set from the
eclipse-sumo package when unset.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import subprocess
import warnings
import xml.etree.ElementTree as ElementTree
from functools import partial
from types import ModuleType
from typing import Callable

import numpy as np
import torch
from omegaconf import DictConfig
from tensordict import TensorDictBase
from torchrl.data import Composite, Unbounded
from torchrl.envs import EnvBase, PettingZooWrapper, SerialEnv, TransformedEnv

from ca12.envs.catalog import SUMO_KEY_DOCS as KEY_DOCS
from ca12.envs.catalog import SUMO_REWARDS as REWARDS
from ca12.envs.catalog import SUMO_TASKS as TASKS
from ca12.envs.catalog import check_sumo_task as check_task  # the tasks and their checks live in the catalog (start-up)
from ca12.envs.common import family_kwargs, register_rng, with_return_counters
from ca12.errors import UsageError

_KWARGS = tuple(KEY_DOCS)
STATS = {"waiting_time": "system_mean_waiting_time", "queue": "system_total_stopped", "speed": "system_mean_speed"}
_RETRY_SECONDS = 0.02
_SUMO_SEEDS = 2**31 - 1


def _sumo_rl() -> ModuleType:
    """sumo_rl, imported with SUMO_HOME set and its PettingZoo incompatibility patched."""
    if "SUMO_HOME" not in os.environ:
        import sumo

        os.environ["SUMO_HOME"] = sumo.SUMO_HOME
    import sumo_rl
    import sumo_rl.environment.env as sumo_env
    from pettingzoo.utils.agent_selector import AgentSelector

    if isinstance(sumo_env.agent_selector, ModuleType):
        sumo_env.agent_selector = AgentSelector
    return sumo_rl


def net_files(task: str) -> tuple[str, str]:
    """The (net, route) files of `task` in the installed sumo-rl."""
    root = os.path.join(os.path.dirname(_sumo_rl().__file__), "nets")
    return tuple(os.path.join(root, name) for name in TASKS[task])


@contextlib.contextmanager
def _quiet():
    """Start SUMO quietly and quickly: TraCI's `init` connects to a new SUMO process retrying
    every second (hard-coded), so each start (every reset) waited one second; inside this block
    it retries every `_RETRY_SECONDS` (for as long in all: 60 s), and its "Retrying" lines are
    swallowed, as is what SUMO prints on its stdout (its errors go to stderr). TraCI's `connect`
    and `start` are restored on leaving."""
    import traci
    import traci.main

    connect, start = traci.main.connect, traci.start

    def quiet_start(cmd, *args, **kwargs):
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        return start(cmd, *args, **kwargs)

    def fast_connect(port, numRetries, host, proc, waitBetweenRetries=1, *args, **kwargs):
        retries = int(numRetries * waitBetweenRetries / _RETRY_SECONDS)
        return connect(port, retries, host, proc, _RETRY_SECONDS, *args, **kwargs)

    traci.main.connect, traci.start = fast_connect, quiet_start
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            # PettingZoo: sumo-rl sets no render_mode; TorchRL: tested with PettingZoo 1.24.3 only.
            warnings.filterwarnings("ignore", message=".*(render_mode|PettingZoo in TorchRL is tested).*", category=UserWarning)
            yield
    finally:
        traci.main.connect, traci.start = connect, start


class SumoWrapper(PettingZooWrapper):
    """One SUMO world of sumo-rl's PettingZoo parallel env as TorchRL's `PettingZooWrapper`, every
    signal in group "agents", with the episode statistics under ("stats", name) and one SUMO seed
    per episode drawn from its own generator (module docstring).

    Args:
        task: a key of `TASKS`.
        max_steps: decisions per episode.
        delta_time, yellow_time, min_green: seconds (sumo-rl's settings).
        reward_fn: one of `REWARDS`.
        device: where the tensors live.
    """

    def __init__(
        self,
        task: str,
        max_steps: int,
        delta_time: int = 5,
        yellow_time: int = 2,
        min_green: int = 5,
        reward_fn: str = "diff-waiting-time",
        device: str = "cpu",
    ):
        net, route = net_files(task)
        self.net_file, self.delta_time, self.yellow_time, self.min_green = net, delta_time, yellow_time, min_green
        self._episode_rng = np.random.default_rng(0)
        self.decisions = 0
        self._sums = dict.fromkeys(STATS, 0.0)
        with _quiet():
            world = _sumo_rl().parallel_env(
                net_file=net,
                route_file=route,
                use_gui=False,
                num_seconds=max_steps * delta_time,
                delta_time=delta_time,
                yellow_time=yellow_time,
                min_green=min_green,
                reward_fn=reward_fn,
                add_system_info=True,
                add_per_agent_info=False,
                sumo_seed=0,
                sumo_warnings=False,
                additional_sumo_cmd="--no-step-log",
            )
            agents = list(world.possible_agents)
            spaces = {(world.observation_space(a).shape, world.action_space(a).n) for a in agents}
            if len(spaces) > 1:
                world.close()
                raise UsageError(f"sumo/{task}: its signals differ in observation or action size ({sorted(spaces)}); ca12 puts them in one group")
            super().__init__(world, group_map={"agents": agents}, categorical_actions=True, device=device)
        self.observation_spec["stats"] = Composite({name: Unbounded(shape=(1,), device=self.device) for name in STATS}, shape=())

    @property
    def simulation(self):
        """sumo-rl's `SumoEnvironment` of this world (its traffic signals, its TraCI connection)."""
        return self._env.aec_env.unwrapped.env

    def _set_seed(self, seed: int | None) -> None:
        self._episode_rng = np.random.default_rng(seed)
        super()._set_seed(seed)

    def _with_stats(self, out: TensorDictBase) -> TensorDictBase:
        steps = max(self.decisions, 1)
        for name in STATS:
            out.set(("stats", name), torch.tensor([self._sums[name] / steps], dtype=torch.float32, device=self.device))
        return out

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        seed = kwargs.get("seed")
        # SUMO takes seeds in [0, 2^31 - 1); TorchRL's seed chain (world i + 1 of a SerialEnv) goes beyond.
        kwargs["seed"] = int(self._episode_rng.integers(_SUMO_SEEDS)) if seed is None else int(seed) % _SUMO_SEEDS
        with _quiet():
            out = super()._reset(tensordict, **kwargs)
        self.decisions, self._sums = 0, dict.fromkeys(STATS, 0.0)
        return self._with_stats(out)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        out = super()._step(tensordict)
        info = out.get(("agents", "info"))
        self.decisions += 1
        for name, key in STATS.items():
            self._sums[name] += float(info.get(key)[0])
        return self._with_stats(out)


def make(cfg: DictConfig, seed: int) -> EnvBase:
    """`cfg.num_envs` SUMO worlds of `cfg.task` in a `SerialEnv`, seeded, with return counters.

    Raises:
        UsageError: unknown task or kwarg, missing packages, continuous actions or a bad value.
    """
    check_task(cfg.task)
    kwargs = family_kwargs(cfg, TASKS, _KWARGS)
    if cfg.continuous_actions:
        raise UsageError(f"sumo/{cfg.task} has discrete actions (the green phase each signal asks for); set env.continuous_actions=false")
    timing = {name: kwargs.get(name, default) for name, default in (("delta_time", 5), ("yellow_time", 2), ("min_green", 5))}
    for name, value in timing.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < (1 if name != "min_green" else 0):
            raise UsageError(f"env.{name} must be a positive integer (seconds), got {value!r}")
    if timing["delta_time"] <= timing["yellow_time"]:
        raise UsageError(f"env.delta_time must exceed env.yellow_time, got {timing['delta_time']} <= {timing['yellow_time']}")
    reward_fn = kwargs.get("reward_fn", REWARDS[0])
    if reward_fn not in REWARDS:
        raise UsageError(f"env.reward_fn must be one of {', '.join(REWARDS)}, got {reward_fn!r}")
    world = partial(SumoWrapper, cfg.task, int(cfg.max_steps), reward_fn=reward_fn, device=cfg.device, **timing)
    env = SerialEnv(cfg.num_envs, world, device=cfg.device)
    env.set_seed(seed)
    env.group_map = dict(worlds(env)[0].group_map)
    register_rng(env, f"sumo/{cfg.task}/{cfg.device}/{seed}", _get_rng_state, _set_rng_state)
    return with_return_counters(env)


def _get_rng_state(env: EnvBase) -> list:
    return [world._episode_rng.bit_generator.state for world in worlds(env)]


def _set_rng_state(env: EnvBase, state: list) -> None:
    for world, world_state in zip(worlds(env), state):
        world._episode_rng.bit_generator.state = world_state


def worlds(env: EnvBase) -> list[SumoWrapper]:
    """The `SumoWrapper` of each world of `env` (a `make` env, or a TransformedEnv of one)."""
    while isinstance(env, TransformedEnv):
        env = env.base_env
    if isinstance(env, SumoWrapper):
        return [env]
    if getattr(env, "is_closed", True):
        env.start()
    return list(env._envs)


# --- baselines -----------------------------------------------------------------------------------------
def _green_phases(net_file: str, signal: str) -> list[float]:
    """The durations of the green phases of `signal`'s own program in `net_file`, in the order and
    by the rule of sumo-rl (a phase is green when it has no yellow and not only red)."""
    for logic in ElementTree.parse(net_file).getroot().iter("tlLogic"):
        if logic.get("id") == signal:
            return [
                float(p.get("duration"))
                for p in logic.iter("phase")
                if "y" not in p.get("state") and p.get("state").count("r") + p.get("state").count("s") != len(p.get("state"))
            ]
    raise ValueError(f"no tlLogic '{signal}' in {net_file}")


class FixedTime:
    """Fixed-time control: each signal cycles through its green phases in order, holding phase k
    for the green time of the network's own program, in decisions (round(duration / delta_time),
    at least ceil((yellow_time + min_green) / delta_time), the shortest hold sumo-rl honours). All
    signals start the cycle at the episode's start (no offsets). Reads each world's decision count.

    Args:
        env: a sumo env (or a TransformedEnv of one).
    """

    def __init__(self, env: EnvBase):
        self.worlds = worlds(env)
        world = self.worlds[0]
        shortest = math.ceil((world.yellow_time + world.min_green) / world.delta_time)
        self.schedules = []  # per agent: the phase asked for at each decision of one cycle
        for signal in world.group_map["agents"]:
            holds = [max(round(d / world.delta_time), shortest) for d in _green_phases(world.net_file, signal)]
            self.schedules.append([k for k, hold in enumerate(holds) for _ in range(hold)])

    def __call__(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = torch.tensor([[schedule[w.decisions % len(schedule)] for schedule in self.schedules] for w in self.worlds])
        return tensordict.set(("agents", "action"), action.to(tensordict.device or "cpu"))


def phase_pressures(world: SumoWrapper) -> list[list[float]]:
    """Per signal of `world`, per green phase, the pressure: over the links the phase gives green
    (state G or g), vehicles on the incoming lane minus vehicles on the outgoing lane, read from
    the live simulation."""
    simulation = world.simulation
    counts: dict[str, int] = {}

    def count(lane: str) -> int:
        if lane not in counts:
            counts[lane] = simulation.sumo.lane.getLastStepVehicleNumber(lane)
        return counts[lane]

    pressures = []
    for signal in world.group_map["agents"]:
        ts = simulation.traffic_signals[signal]
        links = ts.sumo.trafficlight.getControlledLinks(signal)
        pressures.append(
            [sum(count(i) - count(o) for k, state in enumerate(phase.state) if state in "Gg" for i, o, _ in links[k]) for phase in ts.green_phases]
        )
    return pressures


class MaxPressure:
    """Max-pressure control (Varaiya 2013, with lane vehicle counts as RESCO's MaxPressure): each
    signal asks for the green phase of largest `phase_pressures`, keeping its phase on a tie.
    Reads the lane counts over TraCI (the default observation has no downstream lanes); sumo-rl
    adds yellow and min_green."""

    def __init__(self, env: EnvBase):
        self.worlds = worlds(env)

    def __call__(self, tensordict: TensorDictBase) -> TensorDictBase:
        actions = []
        for world in self.worlds:
            row = []
            for signal, pressure in zip(world.group_map["agents"], phase_pressures(world)):
                current = world.simulation.traffic_signals[signal].green_phase
                best = int(np.argmax(pressure))
                row.append(current if pressure[current] >= pressure[best] else best)
            actions.append(row)
        return tensordict.set(("agents", "action"), torch.tensor(actions).to(tensordict.device or "cpu"))


# `python -m ca12.evaluate --baseline NAME --env sumo/...`: name -> factory(env) -> policy.
BASELINES: dict[str, Callable] = {"fixed_time": FixedTime, "max_pressure": MaxPressure}
