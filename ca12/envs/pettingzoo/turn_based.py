"""Turn-based PettingZoo games (AEC envs): `pettingzoo/tictactoe`, `pettingzoo/connect_four`, and a
user's own AEC env (ca12/envs/user/).

TorchRL's `PettingZooWrapper` steps an AEC env one move at a time with `use_mask=True`: at each
step `(group, "mask")` [n_agents] marks the agent whose turn it is (`Group.masked`: the PPO
family trains each agent's policy on its own moves only) and `(group, "action_mask")`
[n_agents, n_actions] its legal moves (`Group.action_masked`: every discrete policy samples
only those). The games' observations are dicts, `{"observation": board planes, "action_mask":
...}`; the wrapper moves the mask out and leaves the board under `(group, "observation",
"observation")`, which `FlatObservation` makes ca12's flat float `(group, "observation")`.

The classic games are played by one group "player" holding both seats, so one network plays
both sides: self-play, each seat's observation drawn from its own side (PettingZoo's planes are
"mine" then "theirs"). A game ends by itself (win, loss or a full board: `terminated`), within
`env.max_steps` = the most moves it can last (9, 42). The reward, +1 win, -1 loss, 0 draw, comes
to both seats at the final move (the loser's on a step it did not play). `env.num_envs` games
step together in TorchRL's `SerialEnv`.
"""

from __future__ import annotations

import importlib
import math
from functools import partial
from typing import Any, Callable

from omegaconf import DictConfig
from tensordict import TensorDictBase
from torchrl.data import Composite, Unbounded
from torchrl.envs import EnvBase, ParallelEnv, PettingZooWrapper, SerialEnv, Transform, TransformedEnv

from ca12.envs.catalog import PETTINGZOO_CLASSIC
from ca12.envs.common import numpy_worlds, register_numpy_rng, vectorized_kwargs, with_return_counters

VECTORIZATIONS = ("serial", "parallel")


class FlatObservation(Transform):
    """`(group, "observation", "observation")` [*B, n, *planes] (a dict observation's board, any
    dtype) -> `(group, "observation")` [*B, n, prod(planes)] float32, for each group that has it."""

    def __init__(self, groups: list[str]):
        super().__init__(in_keys=[(g, "observation", "observation") for g in groups], out_keys=[(g, "observation") for g in groups])
        self.groups = groups

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        for group in self.groups:
            board = tensordict.pop((group, "observation", "observation"), None)
            if board is None:
                continue
            tensordict.pop((group, "observation"))
            agents = tensordict.batch_dims + 1  # [*B, n_agents] lead the board's planes
            tensordict.set((group, "observation"), board.reshape(*board.shape[:agents], -1).float())
        return tensordict

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return self._call(tensordict_reset)

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        for group in self.groups:
            board = observation_spec[group, "observation", "observation"]
            agents = observation_spec[group].shape  # [*B, n]
            size = math.prod(board.shape[len(agents) :])
            observation_spec[group]["observation"] = Unbounded(shape=(*agents, size), device=board.device)
        return observation_spec


def nested_observation_groups(env: EnvBase) -> list[str]:
    """The groups whose observation is a dict's board, `(group, "observation", "observation")`."""
    keys = env.full_observation_spec_unbatched.keys(True, True)
    return [group for group in env.group_map if (group, "observation", "observation") in keys]


def flat_observations(env: EnvBase) -> EnvBase:
    """`env` with `FlatObservation` on the groups that need it (itself when none does)."""
    groups = nested_observation_groups(env)
    return TransformedEnv(env, FlatObservation(groups)) if groups else env


def one_world(make_game: Callable, group_map: dict | None, device: str) -> PettingZooWrapper:
    """One world (module level, so `ParallelEnv` workers can unpickle a partial): `use_mask` marks
    who acts, and `done_on_any=False` ends a parallel env's episode when every agent has left, not
    the first (an AEC env's default already)."""
    return PettingZooWrapper(make_game(), group_map=group_map, use_mask=True, done_on_any=False, categorical_actions=True, device=device)


def batched_games(make_game: Callable, num_envs: int, group_map: dict | None, vectorization: str = "serial", device: str = "cpu") -> EnvBase:
    """`num_envs` worlds of `make_game` (a raw PettingZoo AEC or parallel env) as one env
    [num_envs] in ca12's layout (flat observations, `group_map` set); `group_map` None: TorchRL's
    (AEC: one group per agent; parallel: agents grouped by name prefix)."""
    probe = one_world(make_game, group_map, device)
    group_map = {group: list(agents) for group, agents in probe.group_map.items()}
    probe.close()
    batched = SerialEnv if vectorization == "serial" else ParallelEnv
    env = batched(num_envs, partial(one_world, make_game, group_map, device))
    env.group_map = group_map
    out = flat_observations(env)
    out.group_map = group_map
    return out


def make(cfg: DictConfig, seed: int) -> EnvBase:
    """`cfg.num_envs` games of the classic game `cfg.task`, both seats in one group "player"."""
    module: Any = importlib.import_module(PETTINGZOO_CLASSIC[cfg.task])
    vectorization, kwargs = vectorized_kwargs(cfg, VECTORIZATIONS, ())  # the games take no kwargs but render_mode
    agents = list(module.env().possible_agents)
    env = batched_games(partial(module.env, **kwargs), cfg.num_envs, {"player": agents}, vectorization, cfg.device)
    env.set_seed(seed)
    if all(hasattr(world, "np_random") for world in numpy_worlds(env)):
        register_numpy_rng(env, f"pettingzoo/{cfg.task}/{cfg.device}/{seed}")
    out = with_return_counters(env)
    out.group_map = env.group_map
    return out
