"""TRPO (Schulman et al. 2015, "Trust Region Policy Optimization"), written here: TorchRL has none.

Each collected batch gives GAE advantages (`ca12.advantages.compute_gae`, normalised), then one
natural-gradient policy step that maximises the surrogate L(theta) = E[pi_theta / pi_old * A]
subject to the mean KL(pi_old || pi_theta) <= max_kl (paper, eq. 14 and appendix C):

    s       = F^-1 g                  conjugate gradient on Fisher-vector products, F = Hessian
                                      of the mean KL at theta_old (double backprop) + damping I,
                                      on a random `fisher_fraction` of the frames
    step    = sqrt(2 max_kl / s^T F s) s
    theta  <- theta_old + backtrack_coeff^k step, the first k whose KL <= max_kl and whose
              surrogate improves; none in line_search_steps: theta stays bit-identical.

The critic is fitted afterwards on the GAE value targets (Adam, `num_epochs` x minibatches, with
the base class's guarded optimiser step); the policy step clips nothing: the trust region bounds it.

On a team (one group of n agents) the actors follow `model.share_params` (shared by default, as
MAPPO's) and the trust region bounds the KL of the *joint* policy pi(u|s) = prod_a pi_a(u_a|o_a),
which is the sum of the agents' KLs (summed over agents, averaged over frames). Each agent keeps
its own advantage (its own reward, MAPPO's centralised critic: every agent's value sees all
observations); the surrogate averages ratio x advantage over frames and agents.

The KL: categorical policies in closed form; TanhNormal policies as the closed-form KL of their
pre-tanh Normals, which equals the squashed policies' KL exactly (tanh and the affine map to the
action bounds are bijections, and KL is invariant under bijections).

Under DDP the policy gradient, the Fisher-vector products and the line search's values are
averaged over processes, so every rank takes the same step (the critic's step leaves the actor
unused: run it with `trainer.strategy=ddp_find_unused_parameters_true`, as COMA needs too).

`HATRPO` (ca12/algos/hatrpo.py) reuses this file's pieces with per-agent steps.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from tensordict import TensorDict, TensorDictBase
from torch import nn
from torch.distributions import Distribution, kl_divergence
from torchrl.envs import EnvBase
from torchrl.modules import TanhNormal

from ca12.advantages import compute_gae
from ca12.algos.base import RLModule
from ca12.algos.on_policy import minibatch_epochs
from ca12.algos.optim import fused_adam
from ca12.errors import NonFiniteError
from ca12.nets.policies import make_actor, make_critic


def conjugate_gradient(Avp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int, tol: float = 1e-10) -> torch.Tensor:
    """Solves A x = b for a symmetric positive-definite A known only through products A v
    (Hestenes & Stiefel 1952; Nocedal & Wright 2006, algorithm 5.2).

    Args:
        Avp: v -> A v (TRPO: a Fisher-vector product).
        b: the right-hand side (TRPO: the policy gradient).
        iters: at most this many iterations (exact after dim(b) in exact arithmetic).
        tol: stop once the residual's norm ||b - A x|| is below it.
    """
    x = torch.zeros_like(b)
    residual, direction = b.clone(), b.clone()
    residual_sq = residual @ residual
    for _ in range(iters):
        if float(residual_sq) < tol**2:
            break
        a_direction = Avp(direction)
        alpha = residual_sq / (direction @ a_direction)
        x = x + alpha * direction
        residual = residual - alpha * a_direction
        new_residual_sq = residual @ residual
        direction = residual + (new_residual_sq / residual_sq) * direction
        residual_sq = new_residual_sq
    return x


def flat_grad(y: torch.Tensor, params: list[nn.Parameter], **kwargs) -> torch.Tensor:
    """dy/dparams as one flat vector (zeros where y does not depend on a parameter)."""
    grads = torch.autograd.grad(y, params, allow_unused=True, **kwargs)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)])


@torch.no_grad()
def set_params(params: list[nn.Parameter], start: list[torch.Tensor], step: torch.Tensor | None = None) -> None:
    """params <- start (+ step, a flat vector): with no step, an exact copy back."""
    offset = 0
    for p, p0 in zip(params, start):
        p.copy_(p0 if step is None else p0 + step[offset : offset + p.numel()].view_as(p))
        offset += p.numel()


def mean_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The mean over DDP processes (each holds its own batch), so that every rank computes the
    same direction and takes the same step; the tensor itself outside DDP."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()) or torch.distributed.get_world_size() == 1:
        return tensor
    tensor = tensor.clone()
    torch.distributed.all_reduce(tensor)
    return tensor / torch.distributed.get_world_size()


def policy_kl(old: Distribution, new: Distribution) -> torch.Tensor:
    """KL(old || new) per agent [*, n_agents]; TanhNormal through its pre-tanh Normals (exact)."""
    if isinstance(new, TanhNormal):
        return kl_divergence(old.base_dist, new.base_dist)
    return kl_divergence(old, new)


class TRPO(RLModule):
    """TRPO as a LightningModule; `training_step` consumes one on-policy collector batch [B, T]."""

    def __init__(self, cfg: DictConfig, env: EnvBase):
        super().__init__(cfg, env)
        group = self.groups[0]
        self.actor = make_actor(group, self.model_cfg, device=env.device)
        self.critic = make_critic(group, self.critic_model_cfg, centralised=True, device=env.device)

    @property
    def policy(self) -> nn.Module:
        return self.actor

    def configure_optimizers(self):
        return fused_adam(self.critic.parameters(), lr=self.cfg.critic_lr)

    def critic_optimiser(self):
        """The critic's optimiser (TRPO's only one: its policy moves by natural-gradient steps)."""
        return self.optimizers()

    @torch.no_grad()
    def compute_advantage(self, batch: TensorDictBase) -> None:
        """Writes `(group, "advantage")` (normalised if asked) and `(group, "value_target")`
        into `batch` [B, T], both [B, T, n_agents, 1]."""
        g = self.group
        value = self.critic(batch.select((g, "observation")))[g, "state_value"]  # [B, T, n_agents, 1]
        next_value = self.critic(batch["next"].select((g, "observation")))[g, "state_value"]
        reward = batch["next", g, "reward"]
        done, terminated = batch["next", "done"].unsqueeze(-2), batch["next", "terminated"].unsqueeze(-2)  # [B, T, 1, 1]
        advantage, target = compute_gae(
            reward,
            value,
            next_value,
            terminated.expand_as(reward),
            (done & ~terminated).expand_as(reward),
            self.cfg.gamma,
            self.cfg.lmbda,
            time_dim=-3,
        )
        if self.cfg.normalize_advantage:
            advantage = (advantage - advantage.mean()) / advantage.std().clamp(min=1e-8)
        batch.set((g, "advantage"), advantage)
        batch.set((g, "value_target"), target)

    def policy_terms(self, frames: TensorDictBase) -> tuple[Distribution, torch.Tensor]:
        """The current policy on `frames` [N]: its distribution and the log-probability of the
        frames' actions [N, n_agents]."""
        g = self.group
        dist = self.actor.get_dist(frames.select((g, "observation")))
        return dist, dist.log_prob(frames[g, "action"])

    def ratio_and_kl(self, frames: TensorDictBase, old: tuple[Distribution, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """pi/pi_old of the frames' actions and KL(pi_old || pi), both per agent [N, n_agents]."""
        old_dist, old_log_prob = old
        dist, log_prob = self.policy_terms(frames)
        return torch.exp(log_prob - old_log_prob), policy_kl(old_dist, dist)

    def fisher_kl(self, frames: TensorDictBase) -> Callable[[], torch.Tensor]:
        """() -> KL(pi_now || pi) per agent [n, n_agents] on a random `fisher_fraction` of
        `frames`, differentiable in its second argument only: its Hessian at the current
        parameters is the Fisher matrix. (Schulman et al. compute the Fisher-vector products,
        most of an update's cost, on 10% of the data.)"""
        n = max(1, round(self.cfg.fisher_fraction * frames.shape[0]))
        subset = frames[torch.randperm(frames.shape[0], device=frames.device)[:n]]
        with torch.no_grad():
            now = self.policy_terms(subset)[0]
        return lambda: policy_kl(now, self.policy_terms(subset)[0])

    def policy_update(self, frames: TensorDictBase) -> dict:
        """One trust-region step of the (joint) policy on the flattened batch [N]."""
        advantage = frames[self.group, "advantage"].squeeze(-1)  # [N, n_agents]
        with torch.no_grad():
            old = self.policy_terms(frames)
        fisher_kl = self.fisher_kl(frames)

        def evaluate():
            ratio, kl = self.ratio_and_kl(frames, old)
            return (ratio * advantage).mean(), kl.sum(-1).mean()  # joint KL: summed over agents

        stats = self.natural_gradient_step(list(self.actor.parameters()), evaluate, lambda: fisher_kl().sum(-1).mean())
        return {f"train/{name}": value for name, value in stats.items()}

    def natural_gradient_step(
        self, params: list[nn.Parameter], evaluate: Callable[[], tuple[torch.Tensor, torch.Tensor]], fisher_kl: Callable[[], torch.Tensor]
    ) -> dict:
        """The trust-region step on `params` (in place), or none at all.

        Args:
            params: the parameters to move.
            evaluate: () -> (surrogate, mean KL from the old policy) on the batch, differentiable,
                at the parameters' current values.
            fisher_kl: () -> the same mean KL on the Fisher frames (see `fisher_kl`).

        Returns:
            kl and surrogate_improvement of the step taken (0 when rejected), step_accepted,
            line_search_steps (step sizes tried), grad_norm of the surrogate, loss_objective
            (minus the surrogate after the step).
        """
        cfg = self.cfg
        surrogate, _ = evaluate()
        grad = mean_over_ranks(flat_grad(surrogate, params))
        surrogate = mean_over_ranks(surrogate.detach())
        stats = {
            "kl": 0.0,
            "surrogate_improvement": 0.0,
            "step_accepted": 0.0,
            "line_search_steps": 0.0,
            "grad_norm": float(grad.norm()),
            "loss_objective": -float(surrogate),
        }
        if not math.isfinite(stats["grad_norm"]):
            self.refuse_nonfinite(f"the policy gradient is not finite (surrogate {float(surrogate)})")
            return stats
        grad_kl = flat_grad(fisher_kl(), params, create_graph=True)

        def fisher_vector_product(v: torch.Tensor) -> torch.Tensor:
            return mean_over_ranks(flat_grad(grad_kl @ v, params, retain_graph=True)) + cfg.damping * v

        direction = conjugate_gradient(fisher_vector_product, grad, cfg.cg_iters)
        curvature = float(direction @ fisher_vector_product(direction))  # s^T F s
        if not curvature > 0:  # a zero gradient (nothing to improve) or a non-finite direction
            return stats
        full_step = math.sqrt(2 * cfg.max_kl / curvature) * direction
        start = [p.detach().clone() for p in params]
        with torch.no_grad():
            for k in range(cfg.line_search_steps):
                set_params(params, start, cfg.backtrack_coeff**k * full_step)
                new_surrogate, new_kl = mean_over_ranks(torch.stack(evaluate())).tolist()
                improvement = new_surrogate - float(surrogate)
                stats["line_search_steps"] = float(k + 1)
                if new_kl <= cfg.max_kl and improvement > 0:
                    stats.update(kl=new_kl, surrogate_improvement=improvement, step_accepted=1.0, loss_objective=-new_surrogate)
                    return stats
            set_params(params, start)  # rejected: back to the exact old values
        return stats

    def refuse_nonfinite(self, what: str) -> None:
        """A non-finite policy step: stop, or skip it with `algo.skip_nonfinite` (as the base
        class's guarded optimiser step does for the critic)."""
        if not self.cfg.skip_nonfinite:
            raise NonFiniteError(f"iteration {self.iterations + 1}: {what}; stopped (set algo.skip_nonfinite=true to skip such updates)")
        self.skipped_updates += 1

    def loss_critic(self, minibatch: TensorDictBase) -> tuple[torch.Tensor, TensorDictBase]:
        """Regression of V on the GAE value targets."""
        g = self.group
        value = self.critic(minibatch.select((g, "observation")))[g, "state_value"]
        loss = F.mse_loss(value, minibatch[g, "value_target"])
        return loss, TensorDict({"loss": loss}, [])  # logged as train/loss_critic

    def training_step(self, batch: TensorDictBase, batch_idx: int) -> dict:
        """Advantages with the critic as it stands, one policy step, then the critic's fit."""
        self.compute_advantage(batch)
        metrics = self.policy_update(batch.reshape(-1))
        metrics.update(minibatch_epochs(self, batch, self.loss_critic, suffix="_critic", optimiser=self.critic_optimiser()))
        metrics["rollout/episode_reward_mean"] = self.episode_reward_mean(batch)
        return metrics


ALGORITHM = TRPO
