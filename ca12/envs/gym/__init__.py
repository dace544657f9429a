"""Single-agent Gymnasium tasks (`--env gym/<id>`, any id in Gymnasium's registry) through
TorchRL's `GymWrapper`, entering ca12 as a team of one (`ca12.envs.gym.single_agent.as_agent_group`:
group "agent" of size 1), so every algorithm, checkpoint, evaluation and metric works on them
unchanged.

Layout: `("agent", "observation")` [B, 1, obs], `("agent", "action")` [B, 1] (discrete spaces,
categorical) or [B, 1, act] (Box spaces, `Bounded` with the task's own bounds), `("agent",
"reward")` [B, 1, 1], env-level `done`/`terminated`/`truncated` [B, 1]. Gymnasium's terminated
and truncated stay apart: `env.max_steps` is the episode's `TimeLimit` (`max_episode_steps`),
and an episode cut by it is `truncated`, never `terminated`, so value targets bootstrap there.
The template's `max_steps` is 500; tasks registered with another limit have their own YAML in
conf/env/gym/ (Pendulum-v1: 200, MountainCarContinuous-v0: 999, LunarLander-v3: 1000), and any
other id takes `env.max_steps=...`.

Vectorisation (`env.vectorization`): `env.num_envs` copies of the task step as one batch [B].
    * `gymnasium` (default): one in-process `gymnasium.vector.SyncVectorEnv` wrapped once by
      `GymWrapper`, with Gymnasium's autoreset *disabled*, so TorchRL resets finished worlds
      itself (a `reset_mask`), exactly as it does for its own batched envs.
    * `gymnasium_async`: the same with `AsyncVectorEnv` (one process per world).
    * `serial` / `parallel`: TorchRL's `SerialEnv` / `ParallelEnv` of one `GymWrapper` per world.
`gymnasium` is the default and the fastest of the four on CartPole and Pendulum, from 8 worlds
on (benchmarks/gym_vectorisation.py prints each one's frames/s as a ratio to `serial`, measured
in the same run; docs/benchmarks.md has the figures): it batches a step's results in NumPy and crosses into TorchRL
once per step, where `SerialEnv` pays TorchRL's per-env TensorDict work B times, and the
process-based ones pay a round trip per step that envs this cheap cannot repay on few cores.
TorchRL's own `GymEnv(num_envs=...)` is not used: it builds an `AsyncVectorEnv` in Gymnasium's
default NEXT_STEP autoreset mode, whose extra reset step TorchRL 0.14 records as a transition
(reward 0, the action ignored), and its worker processes are slow to start.

Seeding: `env.set_seed(seed)` resets world i with seed + i (Gymnasium's vector seeding); the
worlds' NumPy generators are registered with `ca12.seeding` (`register_numpy_rng`), so a
checkpoint captures the training env's reset stream and resume restores it (not for the
process-based vectorisations, whose worlds live in other processes).
"""

from __future__ import annotations

import inspect
from functools import partial
from typing import Callable

from omegaconf import DictConfig
from torchrl.envs import EnvBase, GymWrapper, ParallelEnv, SerialEnv

from ca12.envs.catalog import GYM_EXTRAS
from ca12.envs.catalog import check_gym_task as check_task  # its task list and checks live in the catalog (start-up)
from ca12.envs.common import register_numpy_rng, vectorized_kwargs
from ca12.envs.gym.single_agent import as_agent_group
from ca12.errors import UsageError

# How `env.num_envs` copies step together (see the module docstring); the first is the default.
VECTORIZATIONS = ("gymnasium", "gymnasium_async", "serial", "parallel")


def _missing_dependency(task: str, entry_point: str, error: Exception) -> UsageError:
    """One line naming the package an env whose module failed to import needs."""
    for prefix, (package, _, install) in GYM_EXTRAS.items():
        if entry_point.startswith(prefix):
            return UsageError(f"gym/{task} needs the {package} package: {install}")
    package = getattr(error, "name", None) or str(error).splitlines()[0]
    return UsageError(f"gym/{task} needs the {package} package: pip install {package}")


def _constructor_kwargs(task: str) -> tuple[str, ...] | None:
    """The keyword arguments the task's env class takes (None: any), importing its module.

    Raises:
        UsageError: the module needs a package that is not installed.
    """
    import gymnasium
    from gymnasium.envs.registration import load_env_creator

    entry_point = gymnasium.spec(task).entry_point
    try:
        creator = load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point
    except (ImportError, gymnasium.error.DependencyNotInstalled) as error:
        raise _missing_dependency(task, entry_point, error) from None
    parameters = inspect.signature(creator).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return tuple(p.name for p in parameters if p.name != "render_mode")


# --- the batched env, one builder per vectorisation ---------------------------------------------
def _vector(task: str, num_envs: int, device: str, kwargs: dict, mode: str) -> EnvBase:
    import gymnasium
    from gymnasium.vector import AutoresetMode

    # Autoreset disabled: TorchRL passes the worlds to reset as a mask (GymWrapper, gymnasium>=1.1).
    vector = gymnasium.make_vec(task, num_envs, vectorization_mode=mode, vector_kwargs={"autoreset_mode": AutoresetMode.DISABLED}, **kwargs)
    return GymWrapper(vector, categorical_action_encoding=True, device=device)


def one_world(task: str, device: str, kwargs: dict) -> EnvBase:
    """One `GymWrapper` world (module level, so `ParallelEnv` workers can unpickle a partial)."""
    import gymnasium

    return GymWrapper(gymnasium.make(task, **kwargs), categorical_action_encoding=True, device=device)


BUILDERS: dict[str, Callable[[str, int, str, dict], EnvBase]] = {
    "gymnasium": partial(_vector, mode="sync"),
    "gymnasium_async": partial(_vector, mode="async"),
    "serial": lambda task, n, device, kwargs: SerialEnv(n, partial(one_world, task, device, kwargs)),
    "parallel": lambda task, n, device, kwargs: ParallelEnv(n, partial(one_world, task, device, kwargs)),
}


def batched_env(task: str, num_envs: int, vectorization: str = VECTORIZATIONS[0], device: str = "cpu", **kwargs) -> EnvBase:
    """`num_envs` copies of the Gymnasium task as one TorchRL env [num_envs] (single-agent
    layout), vectorised as `vectorization` says; `kwargs` go to `gymnasium.make`."""
    return BUILDERS[vectorization](task, num_envs, device, kwargs)


def make(cfg: DictConfig, seed: int) -> EnvBase:
    """`cfg.num_envs` copies of the Gymnasium task `cfg.task` as one agent group "agent".

    Task kwargs (env keys that are not common keys) go to the task's constructor, e.g.
    `env.g=9.81` for Pendulum-v1 or `env.continuous=true` for LunarLander-v3.

    Raises:
        UsageError: unknown id, missing package, unknown kwarg or vectorisation.
    """
    check_task(cfg.task)
    vectorization, kwargs = vectorized_kwargs(cfg, VECTORIZATIONS, _constructor_kwargs(cfg.task))
    env = batched_env(cfg.task, cfg.num_envs, vectorization, cfg.device, max_episode_steps=cfg.max_steps, **kwargs)
    env.set_seed(seed)
    register_numpy_rng(env, f"gym/{cfg.task}/{cfg.device}/{seed}")
    return as_agent_group(env, group="agent")
