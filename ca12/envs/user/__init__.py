"""Your own environment: `--env my_package.my_module:make_env` (or `user/my_package.my_module:make_env`),
`ca12.train("mappo", env=make_env)`.

The task is the import path of a factory, `module:attribute`; its keyword arguments are the env
keys that are not common keys (`env.n_agents=4` calls `make_env(n_agents=4)`), and it receives
`num_envs`, `seed`, `device` and `max_steps` when its signature names them. What it returns,
and how ca12 takes it (TorchRL's wrappers, then ca12's layout: agent groups, env-level done flags,
a return counter per group):

* a TorchRL `EnvBase`: multi-agent (`(group, "action")` keys; its `group_map`, or one read from
  the action keys) or single-agent (root "action": a group "agent" of one, as `gym/...`);
* a Gymnasium `Env` (`GymWrapper`, a group "agent" of one) or `VectorEnv` (made with
  `autoreset_mode=AutoresetMode.DISABLED`, so TorchRL resets finished worlds itself);
* a PettingZoo `ParallelEnv` (`PettingZooWrapper`, agents grouped by name prefix, agents may
  leave mid-episode) or `AECEnv` (turn-based: one group per agent, who moves and the legal moves
  marked, ca12/envs/pettingzoo/turn_based.py);
* a VMAS `BaseScenario` (an instance, or the class as the factory itself: VMAS batches its
  worlds, and the env keys go to the scenario's `make_world`, as for `vmas/...`).
A factory that does not take `num_envs` is called once per world and its worlds step as one
batch (Gymnasium's `SyncVectorEnv`, TorchRL's `SerialEnv`). Every env but VMAS's gets TorchRL's
`StepCounter(env.max_steps)`: an episode cut there is `truncated`, not `terminated`, so value
targets bootstrap (an env's own earlier limit stays).

Each way an env can be wrong is one line (`UsageError`) before training starts: a missing
observation, action or reward key, a reward that is not per agent, no env-level done flag,
a batch that is not `env.num_envs`, a keyword the factory does not take.

Trust: building the env imports and calls the factory. A fresh run's factory is the user's own
command; a saved run's is data from whoever wrote it, so loading a run whose env is a factory
needs the command to name it again (`ca12.untrusted.check_env_factory`, docs/ARCHITECTURE.md).
Written by hand: TorchRL wraps each library on its own and no library dispatches over all four.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from functools import partial
from typing import Any, Callable

from omegaconf import DictConfig
from torchrl.envs import EnvBase, SerialEnv, StepCounter, TransformedEnv

from ca12.envs.common import numpy_worlds, register_numpy_rng, task_kwargs, with_return_counters
from ca12.envs.gym.single_agent import as_agent_group
from ca12.envs.pettingzoo.turn_based import batched_games
from ca12.errors import UsageError
from ca12.untrusted import check_env_factory_path, named_env_factory

# What ca12 passes a factory whose signature names it (the env section's common keys and the seed).
IMPLICIT = ("num_envs", "seed", "device", "max_steps")


def load_factory(path: str) -> Callable:
    """The factory `path` ("module:attribute") names: the object given from Python, else imported."""
    check_env_factory_path(path)
    given = named_env_factory(path)
    if given is not None:
        return given
    module_name, _, attribute = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"env factory {path}: cannot import {module_name} ({type(exc).__name__}: {exc})") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise UsageError(f"env factory {path}: {module_name} has no attribute {attribute}")
        target = getattr(target, part)
    if not callable(target):
        raise UsageError(f"env factory {path} is a {type(target).__name__}, not a function or class")
    return target


def _is_vmas_scenario(obj: Any) -> bool:
    try:
        from vmas.simulator.scenario import BaseScenario
    except ImportError:
        return False
    return isinstance(obj, BaseScenario) or (isinstance(obj, type) and issubclass(obj, BaseScenario))


def _arguments(factory: Callable, path: str, kwargs: dict, implicit: dict) -> dict:
    """The keyword arguments to call `factory` with, checked against its signature."""
    try:
        # A class's own __init__: a metaclass's __call__ (TorchRL's envs have one) hides it.
        signature = inspect.signature(factory.__init__ if isinstance(factory, type) else factory)
    except (TypeError, ValueError):  # no signature to read (a builtin): pass the kwargs only
        return kwargs
    if isinstance(factory, type):
        signature = signature.replace(parameters=list(signature.parameters.values())[1:])  # without self
    parameters = signature.parameters
    arguments = {**{k: v for k, v in implicit.items() if k in parameters}, **kwargs}
    try:
        signature.bind(**arguments)
    except TypeError as exc:
        takes = ", ".join(name for name in parameters if name not in IMPLICIT) or "nothing"
        raise UsageError(f"env factory {path}: {exc} (it takes {takes}; give them as env.KEY=VALUE)") from None
    return arguments


def _vmas(scenario: Any, cfg: DictConfig, seed: int, kwargs: dict) -> EnvBase:
    from ca12.envs.vmas import BatchResetVmasEnv

    instance = scenario() if isinstance(scenario, type) else scenario
    env = BatchResetVmasEnv(
        scenario=instance,
        num_envs=cfg.num_envs,
        continuous_actions=cfg.continuous_actions,
        max_steps=cfg.max_steps,
        device=cfg.device,
        seed=seed,
        **kwargs,
    )
    return with_return_counters(env)


def _gym(world: Any, make_world: Callable, cfg: DictConfig, takes_num_envs: bool) -> EnvBase:
    import gymnasium
    from gymnasium.vector import AutoresetMode
    from torchrl.envs import GymWrapper

    if isinstance(world, gymnasium.vector.VectorEnv):
        if world.metadata.get("autoreset_mode") != AutoresetMode.DISABLED:
            raise UsageError(
                "a Gymnasium VectorEnv must be made with autoreset_mode=AutoresetMode.DISABLED (TorchRL resets the finished worlds itself)"
            )
        if world.num_envs != cfg.num_envs:
            raise UsageError(f"the factory's VectorEnv has {world.num_envs} worlds; env.num_envs is {cfg.num_envs}")
        return GymWrapper(world, categorical_action_encoding=True, device=cfg.device)
    if takes_num_envs:
        raise UsageError("the factory takes num_envs but returned one Gymnasium Env: return a VectorEnv, or drop num_envs")
    worlds = [world] + [make_world() for _ in range(cfg.num_envs - 1)]
    vector = gymnasium.vector.SyncVectorEnv([partial(lambda w: w, w) for w in worlds], autoreset_mode=AutoresetMode.DISABLED)
    return GymWrapper(vector, categorical_action_encoding=True, device=cfg.device)


def _pettingzoo(world: Any, make_world: Callable, cfg: DictConfig) -> EnvBase:
    """Parallel or turn-based (AEC): TorchRL's group map, who acts marked (agents may leave
    mid-episode, the seat to move), the legal moves where the env gives them."""
    world.close()
    return batched_games(make_world, cfg.num_envs, None, "serial", cfg.device)


def _torchrl(world: EnvBase, make_world: Callable, cfg: DictConfig, takes_num_envs: bool) -> EnvBase:
    if world.batch_size.numel() == cfg.num_envs and world.batch_dims == 1:
        return world
    if takes_num_envs or world.batch_dims:
        raise UsageError(f"the factory's env has batch size {tuple(world.batch_size)}; env.num_envs is {cfg.num_envs} (or return an unbatched env)")
    group_map = _group_map(world)
    world.close()
    env = SerialEnv(cfg.num_envs, make_world)
    if group_map is not None:
        env.group_map = group_map
    return env


def _group_map(env: EnvBase) -> dict[str, list[str]] | None:
    """The env's groups: its `group_map`, else one read from its `(group, "action")` keys
    (agents `<group>_<i>`); None for a single-agent env (a root "action")."""
    if "action" in env.action_keys:
        return None
    known = getattr(env, "group_map", None)
    if known:
        return {group: list(agents) for group, agents in known.items()}
    groups = {}
    for key in env.action_keys:
        if not (isinstance(key, tuple) and len(key) == 2 and key[1] == "action"):
            raise UsageError(f"action key {key}: ca12 reads a root 'action' (one agent) or (group, 'action') per agent group")
        n = env.full_action_spec_unbatched[key].shape[0] if env.full_action_spec_unbatched[key].ndim else 1
        groups[key[0]] = [f"{key[0]}_{i}" for i in range(n)]
    return groups


def check_layout(env: EnvBase, group_map: dict[str, list[str]]) -> None:
    """One line for each way a multi-agent env's keys can miss ca12's layout."""
    observations, rewards = env.full_observation_spec_unbatched, env.full_reward_spec_unbatched
    if "done" not in env.done_keys or "terminated" not in env.done_keys:
        raise UsageError("the env has no env-level 'done' and 'terminated' flags at the root (TorchRL's multi-agent convention)")
    for group, agents in group_map.items():
        if (group, "observation") not in observations.keys(True, True):
            raise UsageError(f"group '{group}' has no (group, 'observation') entry; it has {list(observations.keys(True, True))}")
        if (group, "reward") not in rewards.keys(True, True):
            found = "a root 'reward', shared" if "reward" in rewards.keys() else f"{list(rewards.keys(True, True))}"
            raise UsageError(f"group '{group}': the reward must be per agent, (group, 'reward') of shape [n_agents, 1]; the env gives {found}")
        shape = tuple(rewards[group, "reward"].shape)
        if shape != (len(agents), 1):
            raise UsageError(f"group '{group}': reward shape {shape}, expected [n_agents, 1] = [{len(agents)}, 1]")


def make(cfg: DictConfig, seed: int) -> EnvBase:
    """`cfg.num_envs` worlds of the env the factory `cfg.task` builds, in ca12's layout, seeded."""
    path = cfg.task
    factory = load_factory(path)
    kwargs = task_kwargs(cfg)
    if _is_vmas_scenario(factory):
        return _vmas(factory, cfg, seed, kwargs)
    implicit = {"num_envs": cfg.num_envs, "seed": seed, "device": cfg.device, "max_steps": cfg.max_steps}
    arguments = _arguments(factory, path, kwargs, implicit)
    takes_num_envs = "num_envs" in arguments
    make_world = partial(factory, **arguments)
    world = make_world()
    env = _adapt(world, make_world, cfg, seed, takes_num_envs, path)
    env.set_seed(seed)
    if all(hasattr(world, "np_random") for world in numpy_worlds(env)):  # Gymnasium's, and PettingZoo envs that keep one
        register_numpy_rng(env, f"user/{path}/{cfg.device}/{seed}")
    return env


def _adapt(world: Any, make_world: Callable, cfg: DictConfig, seed: int, takes_num_envs: bool, path: str) -> EnvBase:
    """The batched env in ca12's layout from the factory's first `world`."""
    if _is_vmas_scenario(world):
        return _vmas(world, cfg, seed, {})
    if isinstance(world, EnvBase):
        env = _torchrl(world, make_world, cfg, takes_num_envs)
    elif _is_a(world, "gymnasium", ("Env", "vector.VectorEnv")):
        env = _gym(world, make_world, cfg, takes_num_envs)
    elif _is_a(world, "pettingzoo", ("ParallelEnv", "AECEnv")):
        env = _pettingzoo(world, make_world, cfg)
    else:
        raise UsageError(
            f"env factory {path} returned a {type(world).__name__}: expected a TorchRL EnvBase, a Gymnasium Env or VectorEnv, "
            "a PettingZoo ParallelEnv or AECEnv, or a VMAS BaseScenario"
        )
    env = TransformedEnv(env, StepCounter(max_steps=cfg.max_steps))
    group_map = _group_map(env)
    if group_map is None:
        return as_agent_group(env, group="agent")
    env.group_map = group_map
    check_layout(env, group_map)
    out = with_return_counters(env)
    out.group_map = group_map
    return out


def _is_a(obj: Any, package: str, names: tuple[str, ...]) -> bool:
    """Whether `obj` is an instance of one of `package`'s classes `names`, without importing a
    package the env does not come from."""
    root = sys.modules.get(package)
    if root is None:
        return False
    for name in names:
        target: Any = root
        for part in name.split("."):
            target = getattr(target, part, None)
        if isinstance(target, type) and isinstance(obj, target):
            return True
    return False
