"""PettingZoo parallel envs (`--env pettingzoo/<env>`) through TorchRL's `PettingZooWrapper`:
the Multi-Particle Environments of MPE2 (simple_spread, simple_speaker_listener,
simple_reference, simple_adversary, simple_tag, ...), named without their version suffix: a
name maps to the newest version the installed mpe2 has (`simple_spread` -> `simple_spread_v3`).

Layout: TorchRL's default group map, agents named `<kind>_<i>` grouped by kind:
simple_spread {"agent": 3}, simple_reference {"agent": 2}, simple_speaker_listener
{"speaker": 1, "listener": 1}. Per group `(group, "observation")` [B, n, obs], `(group,
"action")` [B, n] (discrete, categorical) or [B, n, 5] (`env.continuous_actions=true`, Box
[0, 1]), `(group, "reward")` [B, n, 1], a `RewardSum` writing `(group, "episode_reward")`, and
env-level `done`/`terminated`/`truncated` [B, 1] (TorchRL's `done_on_any` for parallel envs:
the env is done when any agent is; MPE agents all stop together). The wrapper also writes the
agents' own flags `(group, "done")` ... [B, n, 1]; ca12's algorithms read the env-level ones.
`env.max_steps` is MPE's `max_cycles`: episodes are cut there (`truncated`, not `terminated`).

Task kwargs (env keys that are not common keys) go to the scenario's constructor (`env.N=5`
for simple_spread, `env.local_ratio=0.5`, ...); a name it does not take is refused in one line.

Vectorisation (`env.vectorization`): `env.num_envs` worlds, one `PettingZooWrapper` each, in
TorchRL's `SerialEnv` (default) or `ParallelEnv` (one process per world); PettingZoo has no
vector API. Measured with benchmarks/gym_vectorisation.py (random actions, simple_spread, 8
worlds, two runs on this shared 2-core machine): serial 0.8 k frames/s, parallel 0.54-0.91x of
it and 18-33 s to start, so `serial` is the default. Most of a step is TorchRL's wrapper (one
world: ~1.2 ms a step wrapped, ~0.26 ms for MPE itself), which no batching here removes.
Seeding and checkpoints as for `gym/...`: world i's NumPy generator is seeded through `set_seed`
and registered with `ca12.seeding`.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import os
import pkgutil
import re
from functools import partial
from types import ModuleType

from omegaconf import DictConfig
from torchrl.envs import EnvBase, ParallelEnv, PettingZooWrapper, SerialEnv

from ca12.envs.common import register_numpy_rng, vectorized_kwargs, with_return_counters
from ca12.errors import UsageError

# How `env.num_envs` worlds step together; the first is the default.
VECTORIZATIONS = ("serial", "parallel")
# Keys this family reads besides the common ones (python -m ca12.fit --show-config prints them).
KEY_DOCS = {"vectorization": "TorchRL's batching of the worlds: serial (in process, the fastest measured) or parallel (worker processes)"}
# MPE2's scenarios, listed (and named in the missing-package message) when mpe2 is not installed.
_MPE_TASKS = (
    "collect_treasure", "simple", "simple_adversary", "simple_crypto", "simple_formation", "simple_line",
    "simple_push", "simple_reference", "simple_speaker_listener", "simple_spread", "simple_tag", "simple_world_comm",
)
# Constructor arguments ca12 sets from the common env keys (or never: rendering).
_SET_BY_CA12 = ("max_cycles", "continuous_actions", "render_mode")
_INSTALL = 'needs pettingzoo and mpe2: pip install -e ".[pettingzoo]"'

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # mpe2 imports pygame, which prints a banner


def _installed() -> bool:
    return importlib.util.find_spec("pettingzoo") is not None and importlib.util.find_spec("mpe2") is not None


def _newest_versions() -> dict[str, str]:
    """name -> module of its newest version in the installed mpe2 (found without importing the
    scenarios), e.g. {"simple_spread": "mpe2.simple_spread_v3"}."""
    spec = importlib.util.find_spec("mpe2")
    newest: dict[str, tuple[int, str]] = {}
    for module in pkgutil.iter_modules(spec.submodule_search_locations):
        match = re.fullmatch(r"(\w+)_v(\d+)", module.name)
        if match and int(match[2]) >= newest.get(match[1], (-1, ""))[0]:
            newest[match[1]] = (int(match[2]), f"mpe2.{module.name}")
    return {name: module for name, (_, module) in newest.items()}


def tasks() -> list[str]:
    return sorted(_newest_versions() if _installed() else _MPE_TASKS)


def check_task(task: str) -> None:
    """Refuse, in one line, an env PettingZoo/MPE2 does not have or a missing package.

    Raises:
        UsageError: naming the packages to install, or the unknown env with a close match.
    """
    known = tasks()
    if task not in known:
        close = difflib.get_close_matches(task, known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"choose one of: {', '.join(known)}"
        raise UsageError(f"unknown pettingzoo task '{task}'; {hint}")
    if not _installed():
        raise UsageError(f"pettingzoo/{task} {_INSTALL}")


def _scenario(task: str) -> ModuleType:
    return importlib.import_module(_newest_versions()[task])


def scenario_kwargs(task: str) -> tuple[str, ...]:
    """The constructor arguments of the scenario a user may set (`env.<kwarg>=...`)."""
    parameters = inspect.signature(_scenario(task).raw_env).parameters
    return tuple(name for name in parameters if name not in _SET_BY_CA12)


def one_world(task: str, group_map: dict | None, device: str, kwargs: dict) -> PettingZooWrapper:
    """One world of the scenario (module level, so `ParallelEnv` workers can unpickle a partial)."""
    return PettingZooWrapper(_scenario(task).parallel_env(**kwargs), group_map=group_map, categorical_actions=True, device=device)


def batched_env(task: str, num_envs: int, vectorization: str = VECTORIZATIONS[0], device: str = "cpu", **kwargs) -> EnvBase:
    """`num_envs` worlds of the scenario as one TorchRL env [num_envs], with `group_map` set.

    TorchRL's batched envs build their worlds lazily and cannot say their group map before;
    one world built here gives it, and every world gets it explicitly.
    """
    probe = one_world(task, None, device, kwargs)
    group_map = dict(probe.group_map)
    probe.close()
    batched = SerialEnv if vectorization == "serial" else ParallelEnv
    env = batched(num_envs, partial(one_world, task, group_map, device, kwargs))
    env.group_map = group_map
    return env


def make(cfg: DictConfig, seed: int) -> EnvBase:
    """`cfg.num_envs` worlds of the MPE2 scenario `cfg.task`, seeded, with return counters.

    Raises:
        UsageError: unknown env, missing package, unknown kwarg or vectorisation.
    """
    check_task(cfg.task)
    vectorization, kwargs = vectorized_kwargs(cfg, VECTORIZATIONS, scenario_kwargs(cfg.task))
    env = batched_env(
        cfg.task, cfg.num_envs, vectorization, cfg.device,
        max_cycles=cfg.max_steps, continuous_actions=bool(cfg.continuous_actions), **kwargs,
    )
    env.set_seed(seed)
    register_numpy_rng(env, f"pettingzoo/{cfg.task}/{cfg.device}/{seed}")
    return with_return_counters(env)
