"""Per-agent Q-networks and epsilon-greedy exploration for the value-based methods
(IQL, VDN, QMIX), built from an env's specs."""

from __future__ import annotations

from typing import Sequence

from tensordict.nn import TensorDictModule, TensorDictSequential
from torchrl.envs import EnvBase
from torchrl.modules import EGreedyModule, QValueModule

from ca12.nets.policies import _group_shapes, _mlp


def make_qnet(env: EnvBase, group: str, *, share_params: bool, hidden_sizes: Sequence[int], activation: str) -> TensorDictSequential:
    """Q(o_a, .) for every agent a from its own observation, and the greedy action.

    Writes `(group, "action_value")` [*B, n_agents, n_actions], the greedy `(group, "action")`
    and `(group, "chosen_action_value")` [*B, n_agents, 1].
    """
    n_agents, obs_dim = _group_shapes(env, group)
    action_spec = env.full_action_spec_unbatched[group, "action"]
    net = _mlp(obs_dim, action_spec.space.n, n_agents, False, share_params, hidden_sizes, activation, env.device)
    values = TensorDictModule(net, in_keys=[(group, "observation")], out_keys=[(group, "action_value")])
    greedy = QValueModule(
        action_value_key=(group, "action_value"),
        out_keys=[(group, "action"), (group, "action_value"), (group, "chosen_action_value")],
        # The composite (group dim in its shape) so each agent's action is a per-sample scalar.
        spec=env.full_action_spec_unbatched,
        action_space=None,
    )
    return TensorDictSequential(values, greedy)


def make_egreedy(env: EnvBase, group: str, *, eps_init: float, eps_end: float, annealing_frames: int) -> EGreedyModule:
    """Epsilon-greedy on `(group, "action")`, epsilon annealed linearly over `annealing_frames`
    collected frames (the caller steps it by the frames of each batch)."""
    return EGreedyModule(
        spec=env.full_action_spec_unbatched[group, "action"],
        eps_init=eps_init,
        eps_end=eps_end,
        annealing_num_steps=annealing_frames,
        action_key=(group, "action"),
    )
