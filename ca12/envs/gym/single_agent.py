"""Single-agent TorchRL envs seen as multi-agent envs with one group of one agent.

ca12's algorithms read TorchRL's multi-agent layout: `(group, "observation")` [*B, n, ...],
`(group, "action")`, `(group, "reward")` [*B, n, 1], env-level done flags, and `env.group_map`.
`AsAgentGroup` puts a single-agent env (root "observation", "action", "reward") in that layout
with n = 1, so the same code trains on Pendulum, CartPole and friends without a special case
(and a single-agent run is a check of the multi-agent machinery against known results).

Layout after the transform, with *B the env's batch dims (possibly none):
    * `(group, "observation")` [*B, 1, *obs]: each moved observation key gets an agent dim.
    * `(group, "action")` [*B, 1, *act]: continuous [*B, 1, act], categorical [*B, 1],
      one-hot [*B, 1, n] -- the env's own action spec kind, with an agent dim; the inverse
      transform strips it and writes the root "action" the env reads.
    * `(group, "reward")` [*B, 1, 1].
    * `done` / `terminated` / `truncated` stay at the root [*B, 1]: one agent, one episode.

`TransformedEnv` forwards unknown attributes to its base env, which has no `group_map`;
`as_agent_group` sets one on the env it returns, and `group_map_of(env)` finds it for an env
built with the transform directly.
"""

from __future__ import annotations

from typing import Sequence

from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey, unravel_key
from torchrl.data import Composite
from torchrl.envs import Compose, EnvBase, RewardSum, Transform, TransformedEnv

_ACTION = "action"
_REWARD = "reward"


def _in_group(group: str, key: NestedKey) -> tuple[str, ...]:
    """`key` moved under `group`: "observation" -> (group, "observation")."""
    key = unravel_key(key)
    return (group, *(key if isinstance(key, tuple) else (key,)))


class AsAgentGroup(Transform):
    """Move a single-agent env's observation, action and reward into a group of one agent.

    Args:
        group: name of the agent group (the key under which the entries go).
        observation_keys: root observation entries to move (others, e.g. a stateless env's
            state such as Pendulum's "th"/"params", stay at the root where the env reads them).

    The action is read from `(group, "action")` and written back to the root "action" before
    the base env steps; the group's entry is left in place (the input tensordict is only
    shallow-cloned by TorchRL, so removing it would edit the caller's data).
    """

    def __init__(self, group: str = "agent", observation_keys: Sequence[NestedKey] = ("observation",)):
        observation_keys = [unravel_key(k) for k in observation_keys]
        super().__init__(
            in_keys=[*observation_keys, _REWARD],
            out_keys=[_in_group(group, k) for k in observation_keys] + [_in_group(group, _REWARD)],
            in_keys_inv=[_ACTION],
            out_keys_inv=[_in_group(group, _ACTION)],
        )
        self.group = group
        self.observation_keys = observation_keys

    @property
    def group_map(self) -> dict[str, list[str]]:
        """TorchRL's group map of the transformed env: one group holding one agent."""
        return {self.group: [self.group]}

    # ---- data ----------------------------------------------------------------------------

    def _move(self, tensordict: TensorDictBase, strict: bool) -> TensorDictBase:
        """Pop each in_key at the root and set it under the group with an agent dim [*B, 1, ...]."""
        dim = tensordict.batch_dims  # where the agent dim goes
        group = tensordict.get(self.group, None)
        if group is None:
            group = TensorDict({}, batch_size=(*tensordict.batch_size, 1), device=tensordict.device)
        for in_key, out_key in zip(self.in_keys, self.out_keys):
            value = tensordict.pop(in_key, None)  # [*B, ...]
            if value is None:
                if strict and not self.missing_tolerance:
                    raise KeyError(f"AsAgentGroup: '{in_key}' not found in {list(tensordict.keys(True))}")
                continue
            group.set(out_key[1:], value.unsqueeze(dim))  # [*B, 1, ...]
        tensordict.set(self.group, group)
        return tensordict

    def _call(self, next_tensordict: TensorDictBase) -> TensorDictBase:
        return self._move(next_tensordict, strict=True)

    forward = _call

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return self._move(tensordict_reset, strict=False)  # no reward at reset

    def _inv_call(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get(self.out_keys_inv[0], None)  # [*B, 1, ...]
        if action is None:
            if self.missing_tolerance:
                return tensordict
            raise KeyError(f"AsAgentGroup: '{self.out_keys_inv[0]}' not found in the input tensordict")
        tensordict.set(_ACTION, action.squeeze(tensordict.batch_dims))  # [*B, ...]
        return tensordict

    # ---- specs ---------------------------------------------------------------------------

    def _move_specs(self, spec: Composite, pairs: Sequence[tuple[NestedKey, NestedKey]]) -> Composite:
        """Move leaves of a Composite spec [*B] under the group Composite [*B, 1], unsqueezed."""
        dim = len(spec.shape)
        for in_key, out_key in pairs:
            if in_key not in spec.keys(True, True):
                continue
            leaf = spec[in_key]
            del spec[in_key]
            if self.group not in spec.keys():
                spec[self.group] = Composite(shape=(*spec.shape, 1), device=spec.device)
            spec[out_key] = leaf.unsqueeze(dim)  # [*B, 1, ...]
        return spec

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        pairs = [(key, _in_group(self.group, key)) for key in self.observation_keys]
        return self._move_specs(observation_spec, pairs)

    def transform_reward_spec(self, reward_spec: Composite) -> Composite:
        return self._move_specs(reward_spec, [(_REWARD, _in_group(self.group, _REWARD))])

    def transform_action_spec(self, action_spec: Composite) -> Composite:
        return self._move_specs(action_spec, [(_ACTION, _in_group(self.group, _ACTION))])


def _find(transform: Transform) -> AsAgentGroup | None:
    if isinstance(transform, AsAgentGroup):
        return transform
    if isinstance(transform, Compose):
        for t in transform.transforms:
            found = _find(t)
            if found is not None:
                return found
    return None


def group_map_of(env: EnvBase) -> dict[str, list[str]]:
    """`env.group_map`, also for an env whose agent group comes from an `AsAgentGroup` transform.

    Returns {} for an env with neither (a plain single-agent env).
    """
    group_map = getattr(env, "group_map", None)
    if group_map:
        return dict(group_map)
    while isinstance(env, TransformedEnv):
        found = _find(env.transform)
        if found is not None:
            return found.group_map
        env = env.base_env
    return {}


def as_agent_group(env: EnvBase, group: str = "agent", observation_keys: Sequence[NestedKey] = ("observation",)) -> TransformedEnv:
    """`env` (single-agent) as a one-group multi-agent env, with a return counter per agent.

    Adds `AsAgentGroup(group)` then `RewardSum` writing `(group, "episode_reward")` [*B, 1, 1],
    as ca12's env families do, and sets `group_map` = {group: [group]} on the returned env.

    Args:
        env: a single-agent TorchRL env (root "observation", "action", "reward", done flags).
        group: the agent group's name.
        observation_keys: root observation entries to move into the group.
    """
    out = TransformedEnv(
        env,
        Compose(
            AsAgentGroup(group, observation_keys),
            RewardSum(in_keys=[(group, _REWARD)], out_keys=[(group, "episode_reward")]),
        ),
        # A TransformedEnv `env` is flattened (its transforms cloned, then ours): a nested one
        # would refuse `rand_action`, since its base env's overridden rand_action has the old spec.
        auto_unwrap=True,
    )
    out.group_map = {group: [group]}
    return out
