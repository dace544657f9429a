"""The agent layout of an env, read from its specs: what every algorithm, network builder,
evaluator and data module asks instead of assuming one `"agents"` group.

TorchRL's multi-agent convention groups agents of one kind under a key: `(group, "observation")`
[*B, n_agents, ...], `(group, "action")`, `(group, "reward")` [*B, n_agents, 1], with env-level
`done`/`terminated` [*B, 1]. A single-agent env enters ca12 as a group of one
(`ca12.envs.gym.single_agent.as_agent_group`); an env with several groups (teams, speaker and
listener, two players) has one `Group` each.
"""

from __future__ import annotations

from dataclasses import dataclass

from torchrl.data import Categorical, OneHot, TensorSpec
from torchrl.envs import EnvBase

from ca12.errors import UsageError


@dataclass(frozen=True)
class Group:
    """One agent group of an env, from its unbatched specs.

    Attributes:
        name: the group's key in the env's TensorDicts.
        n_agents: agents in the group (the spec's first dimension).
        obs_dim: size of each agent's flat observation (an image's C x H x W).
        image: (C, H, W) when each agent's observation is an image (`model=cnn` reads it as one;
            an MLP reads it flattened), else None.
        observation_spec, action_spec: unbatched specs, [n_agents, ...].
        discrete: Categorical / OneHot actions (else continuous, Bounded or Unbounded).
        n_actions: number of choices of a discrete action (None for continuous).
        action_dim: what a network outputs per agent: n_actions, or the continuous action size.
        masked: the env marks which agents act at each step, `(name, "mask")` [n_agents] (TorchRL's
            PettingZoo convention: agents that leave mid-episode, turn-based games); algorithms
            that can (`RLModule.masks_agents`) leave the unmarked steps out of their losses.
        action_masked: the env gives the legal actions, `(name, "action_mask")` [n_agents, n_actions]
            (discrete actions; PettingZoo's classic games): every discrete policy samples only those.
    """

    name: str
    n_agents: int
    obs_dim: int
    observation_spec: TensorSpec
    action_spec: TensorSpec
    discrete: bool
    n_actions: int | None
    action_dim: int
    masked: bool = False
    action_masked: bool = False
    image: tuple[int, int, int] | None = None

    def key(self, *entry: str) -> tuple[str, ...]:
        """`group.key("observation")` -> `(name, "observation")`."""
        return (self.name, *entry)

    @property
    def action_kind(self) -> str:
        return "discrete" if self.discrete else "continuous"


class AgentLayout:
    """The agent groups of an env, in the env's order, each a `Group`."""

    def __init__(self, groups: dict[str, Group]):
        if not groups:
            raise UsageError("the env has no agent groups (wrap a single-agent env with ca12.envs.gym.single_agent.as_agent_group)")
        self.groups = groups

    @classmethod
    def from_env(cls, env: EnvBase) -> "AgentLayout":
        group_map = getattr(env, "group_map", None) or {}
        groups = {}
        observed = set(env.full_observation_spec_unbatched.keys(True, True))
        for name in group_map:
            obs_spec = env.full_observation_spec_unbatched[name, "observation"]
            action_spec = env.full_action_spec_unbatched[name, "action"]
            if obs_spec.ndim not in (2, 4):
                raise UsageError(
                    f"group '{name}': expected flat per-agent observations [n_agents, dim] or images [n_agents, C, H, W], "
                    f"got shape {tuple(obs_spec.shape)}"
                )
            discrete = isinstance(action_spec, (Categorical, OneHot))
            n_actions = int(action_spec.space.n) if discrete else None
            groups[name] = Group(
                name=name,
                n_agents=int(obs_spec.shape[0]),
                obs_dim=int(obs_spec.shape[1:].numel()),
                image=tuple(int(x) for x in obs_spec.shape[1:]) if obs_spec.ndim == 4 else None,
                observation_spec=obs_spec,
                action_spec=action_spec,
                discrete=discrete,
                n_actions=n_actions,
                action_dim=n_actions if discrete else int(action_spec.shape[-1]),
                masked=(name, "mask") in observed,
                action_masked=discrete and (name, "action_mask") in observed,
            )
        return cls(groups)

    @property
    def names(self) -> list[str]:
        return list(self.groups)

    def select(self, names: list[str] | None) -> list[Group]:
        """The groups to train: `names` (algo.groups) or, when None, all of them."""
        if names is None:
            return list(self.groups.values())
        unknown = [n for n in names if n not in self.groups]
        if unknown or not names:
            raise UsageError(f"algo.groups: unknown group '{unknown[0] if unknown else ''}'; the env has groups {self.names}")
        return [self.groups[n] for n in names]

    def only(self, algorithm: str, names: list[str] | None = None) -> Group:
        """The single group an algorithm that trains one group works on; more are refused."""
        chosen = self.select(names)
        if len(chosen) != 1:
            raise UsageError(f"{algorithm} trains one agent group; the env has groups {self.names}: name one with algo.groups=[NAME]")
        return chosen[0]
