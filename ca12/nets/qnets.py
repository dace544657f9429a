"""Per-agent Q-networks and epsilon-greedy exploration for the value-based methods
(IQL, VDN, QMIX), built from a group's specs by the network builder."""

from __future__ import annotations

from omegaconf import DictConfig
from tensordict.nn import TensorDictSequential
from torchrl.modules import EGreedyModule, QValueModule

from ca12.envs.layout import Group
from ca12.nets.builder import agent_net


def make_qnet(group: Group, model: DictConfig, full_action_spec, device=None) -> TensorDictSequential:
    """Q(o_a, .) for every agent a from its own observation, and the greedy action.

    Writes `(group, "action_value")` [*B, n_agents, n_actions], the greedy `(group, "action")`
    and `(group, "chosen_action_value")` [*B, n_agents, 1].

    Args:
        full_action_spec: the env's unbatched composite action spec (the group dim in its shape,
            so each agent's action is a per-sample scalar).
    """
    g = group.name
    values = agent_net(model, group, group.n_actions, (g, "action_value"), name="qnet", device=device)
    greedy = QValueModule(
        action_value_key=(g, "action_value"),
        out_keys=[(g, "action"), (g, "action_value"), (g, "chosen_action_value")],
        spec=full_action_spec,
        action_space=None,
        # the env's legal actions: the others' values are the dtype's minimum, so neither the greedy
        # action nor a TD target's max picks them
        action_mask_key=(g, "action_mask") if group.action_masked else None,
    )
    return TensorDictSequential(values, greedy)


def make_egreedy(group: Group, *, eps_init: float, eps_end: float, annealing_frames: int) -> EGreedyModule:
    """Epsilon-greedy on `(group, "action")`, epsilon annealed linearly over `annealing_frames`
    collected frames (the caller steps it by the frames of each batch)."""
    return EGreedyModule(
        spec=group.action_spec,
        eps_init=eps_init,
        eps_end=eps_end,
        annealing_num_steps=annealing_frames,
        action_key=group.key("action"),
        action_mask_key=group.key("action_mask") if group.action_masked else None,  # random moves among the legal ones
    )
