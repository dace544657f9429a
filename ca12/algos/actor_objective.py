"""What the actors of MADDPG and MASAC maximise: `algo.actor_objective = own | team`.

* `own` (the MADDPG paper, Lowe et al. 2017, eq. 6, and openai/maddpg): actor i ascends its own
  critic, Q_i(x, a_1, ..., a_N) with a_i = mu_i(o_i) from the current actor and every other
  agent's action a_j as stored in the replay buffer; Q_i is fitted to agent i's own reward. So
  each agent needs its own critic: with a centralised critic whose parameters are shared
  (`critic_model.share_params=true`), every agent's input is the same joint observation and
  action, every Q_i the same number, and the critic fits the agents' mean reward; that
  combination is refused.
* `team` (TorchRL's `DDPGLoss` / `SACLoss` as BenchMARL wires them): every action comes from the
  current actors and the actors ascend the mean over agents of Q_j, so actor i also climbs the
  other agents' Q-values; with the default shared critic they are one value, fitted to the
  team's mean reward. A cooperative objective, whatever the task's rewards.

On independent critics (IDDPG, ISAC: Q_i reads agent i's observation and action only) the two
are the same objective: no other agent's action enters Q_i. Discrete MASAC's critic Q_i(x, .)
takes no action input (the expectation over the agent's own policy is exact), so there too only
the critic's sharing differs. The losses here are TorchRL's with their actor term replaced;
TorchRL has no per-agent ("own") form, hence these few lines.
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives import DDPGLoss, SACLoss
from torchrl.objectives.sac import compute_rsample_log_prob

from ca12.errors import UsageError


def check_actor_objective(cfg, name: str, centralised: bool) -> None:
    """Refuse, in one line, `algo.actor_objective=own` with one shared centralised critic."""
    if cfg.algo.actor_objective == "own" and centralised and cfg.critic_model.share_params:
        raise UsageError(
            f"{name} with algo.actor_objective=own trains each actor on its own agent's Q_i: set "
            "critic_model.share_params=false (a shared centralised critic gives every agent the same Q)"
        )


def own_action_batch(tensordict: TensorDictBase, action_key, action: torch.Tensor) -> TensorDictBase:
    """N copies of `tensordict` [*B] stacked in front, [N, *B]: in copy i agent i's action is
    `action[..., i, :]` (the current actor's) and every other agent's the stored one.

    `action` and the stored `tensordict[action_key]` are [*B, N, A].
    """
    stored = tensordict.get(action_key)
    n = stored.shape[-2]
    mine = torch.eye(n, dtype=torch.bool, device=stored.device).view(n, *([1] * (stored.dim() - 2)), n, 1)
    joint = torch.where(mine, action.unsqueeze(0), stored.unsqueeze(0))  # [N, *B, N, A]
    copies = tensordict.expand(n, *tensordict.shape).clone(recurse=False)
    copies.set(action_key, joint)
    return copies


def own_values(values: torch.Tensor) -> torch.Tensor:
    """Q_i read in copy i: values [N(copies), *B, N(agents), 1] -> [*B, N]."""
    return values.squeeze(-1).movedim(0, -1).diagonal(dim1=-2, dim2=-1)


class OwnDDPGLoss(DDPGLoss):
    """TorchRL's `DDPGLoss` with the paper's actor term: actor i ascends Q_i(x, mu_i(o_i), a_-i).
    `action_key` is the action entry the critic reads (the one-hot for discrete actions)."""

    def __init__(self, *args, action_key, **kwargs):
        super().__init__(*args, **kwargs)
        self.own_action_key = action_key

    def loss_actor(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, dict]:
        weights = self._maybe_get_priority_weight(tensordict)
        td = tensordict.select(*self.actor_in_keys, *self.value_network.in_keys, strict=False).detach()
        with self.actor_network_params.to_module(self.actor_network, preserve_module_state=False):
            action = self.actor_network(td.clone(False)).get(self.own_action_key)
        copies = own_action_batch(td, self.own_action_key, action)
        with self._cached_detached_value_params.to_module(self.value_network, preserve_module_state=False):
            values = self.value_network(copies).get(self.tensor_keys.state_action_value)
        loss = self._reduce_loss(-own_values(values), tensordict=tensordict, weights=weights)
        return loss, {}


class OwnSACLoss(SACLoss):
    """TorchRL's `SACLoss` (continuous actions) with the per-agent actor term: actor i minimises
    alpha log pi_i(a_i | o_i) - min_k Q_i^k(x, a_i, a_-i), a_i reparameterised from the current
    actor and a_-i as stored."""

    def actor_loss(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        weights = self._maybe_get_priority_weight(tensordict)
        with set_exploration_type(ExplorationType.RANDOM), self.actor_network_params.to_module(self.actor_network, preserve_module_state=False):
            action, log_prob = compute_rsample_log_prob(self.actor_network.get_dist(tensordict))
        td = tensordict.select(*self.qvalue_network.in_keys, strict=False)
        copies = own_action_batch(td, self.tensor_keys.action, action)
        values = self._vmap_qnetworkN0(copies, self._cached_detached_qvalue_params).get(self.tensor_keys.state_action_value)
        min_q = own_values(values.min(0)[0])  # [*B, N]
        loss = self._reduce_loss(self._alpha * log_prob - min_q, tensordict=tensordict, weights=weights)
        return loss, {"log_prob": log_prob.detach()}
