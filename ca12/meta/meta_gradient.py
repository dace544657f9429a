"""Model-agnostic meta-learning (Finn, Abbeel & Levine 2017) with `torch.func`.

MAML learns an initialisation theta from which k gradient steps on a new task's loss give a good
solution for that task. Per task T_i (eq. 1 of the paper, repeated k times):

    theta_i^(0) = theta,    theta_i^(j+1) = theta_i^(j) - alpha grad L_i^(j)(theta_i^(j)),

and the meta-objective is the loss after adaptation, averaged over a batch of tasks (eq. 2/3):

    min_theta  (1/N) sum_i L'_i(theta_i^(k)).

Its gradient runs through the inner steps: d theta^(j+1) / d theta^(j) = I - alpha H_i^(j)
(H the Hessian of L_i^(j)), so the second-order meta-gradient is
(prod_j (I - alpha H_i^(j)))^T grad L'_i(theta_i^(k)); first-order MAML (section 5.2) treats
the inner gradients as constants, which leaves grad L'_i(theta_i^(k)). Here `torch.func.grad`
takes the inner gradients (nested inside the outer one for second order), `vmap` maps the
adaptation over the tasks, and the model is called functionally on a parameter dict
(`functional_call`), so nothing is written by hand but the recursion above.

learn2learn does not build on Python 3.11, and TorchRL has no MAML.

For RL (section 3.2, "MAML-RL"), L is a policy-gradient surrogate on trajectories sampled with the
policy being adapted; sampling is not differentiated, as in the paper: the dependence of the
sampling distribution on theta is dropped, in the inner and the outer loss alike.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch
from torch.func import grad, grad_and_value, vmap
from torchrl.objectives.value.functional import reward2go

Params = dict[str, torch.Tensor]
LossFn = Callable[[Params, Any], torch.Tensor]


class MetaGradient(NamedTuple):
    """What `meta_gradient` returns.

    Attributes:
        grads: d/d theta of the mean post-adaptation loss, one tensor per entry of `params`.
        loss: the mean post-adaptation (outer) loss over the tasks, a scalar.
        task_losses: each task's outer loss [n_tasks].
    """

    grads: Params
    loss: torch.Tensor
    task_losses: torch.Tensor


def inner_step(loss_fn: LossFn, params: Params, batch: Any, inner_lr: float, first_order: bool = False) -> Params:
    """One SGD step theta - alpha grad L(theta; batch) (MAML's eq. 1).

    With `first_order` the gradient is detached, so an enclosing `torch.func.grad` sees the step
    as theta - constant (first-order MAML); otherwise it differentiates through it (the Hessian
    term of the second-order meta-gradient).
    """
    grads = grad(loss_fn)(params, batch)
    if first_order:
        grads = {name: g.detach() for name, g in grads.items()}
    return {name: p - inner_lr * grads[name] for name, p in params.items()}


def _step_batch(batch: Any, step: int) -> Any:
    """Step `step`'s entry of a per-step batch (its leading dim, inside vmap over the tasks): a
    tensor, a TensorDict, or a dict / list / tuple of them."""
    if isinstance(batch, dict):
        return {name: _step_batch(value, step) for name, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_step_batch(value, step) for value in batch)
    return batch[step]


def adapt(loss_fn: LossFn, params: Params, task: Any, inner_lr: float, inner_steps: int, first_order: bool = False, per_step: bool = False) -> Params:
    """theta^(k) for one task: `inner_steps` SGD steps on `loss_fn` (see `inner_step`).

    Args:
        task: what the inner loss reads; with `per_step`, a leading dim of `inner_steps` whose
            entry j is step j's batch (MAML-RL: trajectories sampled with theta^(j)).
    """
    for step in range(inner_steps):
        params = inner_step(loss_fn, params, _step_batch(task, step) if per_step else task, inner_lr, first_order)
    return params


def meta_gradient(
    loss_fn: LossFn,
    params: Params,
    tasks: Any,
    inner_lr: float,
    inner_steps: int = 1,
    first_order: bool = False,
    *,
    query: Any = None,
    outer_loss_fn: LossFn | None = None,
    per_step: bool = False,
) -> MetaGradient:
    """The MAML meta-gradient of (1/N) sum_i L'_i(theta_i^(k)) w.r.t. theta (see the module doc).

    Args:
        loss_fn: `loss_fn(params, task) -> scalar`, the inner loss L_i on one task's batch;
            called functionally (vmapped over tasks), so it must be a pure torch function of
            its arguments (e.g. `torch.func.functional_call(module, params, ...)`).
        params: theta, a dict of tensors (`dict(module.named_parameters())`; detached here).
        tasks: the inner loss's data with a leading task dim N (a tensor, a TensorDict, or a
            dict / list / tuple of them); with `per_step`, a second dim `inner_steps` (step j
            reads [:, j]).
        inner_lr: alpha.
        inner_steps: k (0: no adaptation, the plain gradient of the mean loss).
        first_order: drop the second-order terms (FOMAML).
        query: the outer loss's data, leading dim N (default `tasks`; required with
            `per_step`): MAML's held-out query set, or MAML-RL's trajectories of the adapted policy.
        outer_loss_fn: L'_i (default `loss_fn`).
        per_step: each inner step has its own batch (see `tasks`).

    Returns:
        `MetaGradient(grads, loss, task_losses)`.
    """
    if per_step and query is None:
        raise ValueError("meta_gradient(per_step=True) needs the outer loss's data as query=")
    outer_loss_fn = outer_loss_fn or loss_fn
    query = tasks if query is None else query
    theta = {name: p.detach() for name, p in params.items()}

    def task_loss(p: Params, task: Any, task_query: Any) -> torch.Tensor:
        return outer_loss_fn(adapt(loss_fn, p, task, inner_lr, inner_steps, first_order, per_step), task_query)

    def mean_loss(p: Params) -> tuple[torch.Tensor, torch.Tensor]:
        losses = vmap(task_loss, in_dims=(None, 0, 0))(p, tasks, query)  # [N]
        return losses.mean(), losses

    grads, (loss, task_losses) = grad_and_value(mean_loss, has_aux=True)(theta)
    return MetaGradient(grads, loss.detach(), task_losses.detach())


def adapt_tasks(loss_fn: LossFn, params: Params, batches: Any, inner_lr: float) -> Params:
    """One inner step per task, as values (no meta-gradient): params [N, ...] (one set per task)
    and each task's batch [N, ...] -> the stepped params [N, ...]. What MAML-RL samples with."""
    return vmap(lambda p, b: inner_step(loss_fn, p, b, inner_lr, first_order=True))(params, batches)


def reinforce_advantages(reward: torch.Tensor, gamma: float, normalize: bool) -> torch.Tensor:
    """REINFORCE's advantages G_t - b_t for each task's episodes (Williams 1992).

    Args:
        reward: [*N, W, T, n, 1]: per task, W episodes from the same start, fixed horizon T.
        gamma: discount of the reward-to-go G_t = sum_{t' >= t} gamma^(t'-t) r_t' (TorchRL's
            `reward2go`).
        normalize: scale each task's advantages to mean 0, std 1 (MAML-RL's
            `weighted_normalize`), which keeps the inner step's size comparable across tasks.

    The baseline b_t is the leave-one-out mean of G_t over the task's other W - 1 episodes at the
    same step and agent: it does not depend on the episode's own actions, so the estimate stays
    unbiased (the episodes are exchangeable: same task, same start). Returns [*N, W, T, n].
    """
    by_time = reward.movedim(-3, -2)  # [*N, W, n, T, 1]: reward2go wants time at -2
    returns = reward2go(by_time, torch.zeros_like(by_time, dtype=torch.bool), gamma).movedim(-2, -3).squeeze(-1)  # [*N, W, T, n]
    w = returns.shape[-3]
    baseline = (returns.sum(-3, keepdim=True) - returns) / max(w - 1, 1)
    advantage = returns - baseline
    if normalize:
        mean = advantage.mean((-3, -2, -1), keepdim=True)
        std = advantage.std((-3, -2, -1), keepdim=True)
        advantage = (advantage - mean) / (std + 1e-8)
    return advantage


def policy_gradient_loss(log_prob: torch.Tensor, advantage: torch.Tensor) -> torch.Tensor:
    """The REINFORCE surrogate -mean(log pi(a|o) A): its gradient is the policy-gradient estimate
    (with A from `reinforce_advantages`, not differentiated)."""
    return -(log_prob * advantage.detach()).mean()
