"""MAML-RL (Finn, Abbeel & Levine 2017, section 3.2 and Algorithm 3): a policy initialisation
that adapts to a new task in k policy-gradient steps.

Each iteration draws `algo.meta_batch` tasks from the env's task family (`--env meta/<task>`,
ca12/meta/tasks.py) and, per task i, with theta_i^(0) = theta:
    1. samples `env.num_envs` episodes D_i^(j) with theta_i^(j) (not differentiated),
    2. steps theta_i^(j+1) = theta_i^(j) - inner_lr grad L(theta_i^(j); D_i^(j)), j < k,
    3. samples D_i^(k) with the adapted theta_i^(k);
then moves theta with Adam along the meta-gradient of (1/N) sum_i L(theta_i^(k); D_i^(k))
(`ca12.meta.meta_gradient.meta_gradient`: through the inner steps, or first order). L is the REINFORCE
surrogate -mean(log pi(a|o) (G_t - b_t)) with a leave-one-out baseline
(`ca12.meta.meta_gradient.reinforce_advantages`). The paper's outer optimiser is TRPO; here it is Adam on
the same meta-gradient (as in its supervised experiments). `algo.inner_steps=0` is plain policy
gradient on random tasks: the paper's "pretrained" multi-task baseline.

Tasks with different agent counts (meta/agents) are grouped by count: the adaptation is vmapped
within a count and the counts are looped over, each weighted by its share of the meta-batch. The
policy is one network shared by every agent, so it fits any count.

Logged per iteration: `rollout/pre_adaptation_return` (episodes of theta),
`rollout/post_adaptation_return` (episodes of theta^(k)), also `rollout/episode_reward_mean`,
and their difference `rollout/adaptation_gain`. Tasks and all sampling come from a generator
seeded by (seed, rank, iteration), so a resumed run draws what the uninterrupted one would.
Episodes are simulated by the family's batched torch code on the training device, where the
meta-gradient needs them (`env.device` only places the TorchRL env that evaluation steps). An
iteration costs meta_batch x (inner_steps + 1) x env.num_envs x env.max_steps env steps, which
`collector.frames_per_batch` must say.
"""

from __future__ import annotations

import math

import lightning as L
import torch
from omegaconf import DictConfig
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torch.distributions import Categorical
from torch.func import functional_call, vmap
from torchrl.envs import EnvBase
from torchrl.modules import MLP, IndependentNormal, ProbabilisticActor

from ca12.algos.base import RLModule
from ca12.algos.optim import fused_adam
from ca12.data.rollout import one_batch_loader
from ca12.envs.layout import Group
from ca12.envs.meta import make_family
from ca12.errors import UsageError
from ca12.meta.meta_gradient import Params, adapt_tasks, meta_gradient, policy_gradient_loss, reinforce_advantages
from ca12.meta.tasks import episode_returns, rollout
from ca12.nets.builder import activation_class

SEED_STRIDE = 1_000_003  # iteration g of rank r in a run with seed s draws from (s + 7919 r) * SEED_STRIDE + g


class MetaPolicy(nn.Module):
    """pi(a|o) of one agent, shared by all: an MLP (`model.hidden_sizes`, `model.activation`)
    giving Categorical logits, or the mean of a Gaussian whose state-independent log-std is a
    parameter adapted with the rest (MAML-RL's policy). Applied to the last dim, so one set of
    weights serves any number of agents (TorchRL's `MultiAgentMLP` fixes the count)."""

    def __init__(self, group: Group, model: DictConfig, init_std: float, device=None):
        super().__init__()
        self.discrete = group.discrete
        self.net = MLP(
            in_features=group.obs_dim,
            out_features=group.action_dim,
            num_cells=list(model.hidden_sizes),
            activation_class=activation_class(model.activation),
            device=device,
        )
        if not self.discrete:
            self.log_std = nn.Parameter(torch.full((group.action_dim,), math.log(init_std), device=device))

    def forward(self, observation: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits [*, n, A], or (mean, std) [*, n, d]."""
        out = self.net(observation)
        return out if self.discrete else (out, self.log_std.exp().expand_as(out))

    def distribution(self, out) -> torch.distributions.Distribution:
        """The action distribution of `forward`'s output (no argument checks: usable under vmap)."""
        return Categorical(logits=out, validate_args=False) if self.discrete else IndependentNormal(*out, validate_args=False)

    def sample(self, out, generator: torch.Generator) -> torch.Tensor:
        """Actions drawn from `generator` (torch.distributions cannot take one)."""
        if self.discrete:
            return torch.multinomial(out.softmax(-1).flatten(0, -2), 1, generator=generator).view(out.shape[:-1])
        mean, std = out
        return mean + std * torch.randn(mean.shape, generator=generator, device=mean.device)


class MetaBatch:
    """An iteration's tasks (grouped by agent count, [n_c] each) and the generator its episodes
    are sampled from: what the data module yields to `training_step`."""

    def __init__(self, tasks: list[TensorDict], generator: torch.Generator):
        self.tasks, self.generator = tasks, generator


class TaskDataModule(L.LightningDataModule):
    """Yields one `MetaBatch` per iteration, drawn on the training device from (seed, rank,
    iteration): nothing to checkpoint, and a resumed run continues the same stream."""

    def __init__(self, cfg: DictConfig):
        super().__init__()
        self.cfg, self.family = cfg, make_family(cfg.env)

    def train_dataloader(self):
        return one_batch_loader(self)

    def next_batch(self) -> MetaBatch:
        module = self.trainer.lightning_module
        seed = (self.cfg.seed + 7919 * self.trainer.global_rank) * SEED_STRIDE + module.iterations
        generator = torch.Generator(module.device).manual_seed(seed)
        return MetaBatch(self.family.sample(self.cfg.algo.meta_batch, generator), generator)


class MAML(RLModule):
    """MAML-RL as a LightningModule: `training_step` adapts to a batch of tasks and takes one
    meta-step (see the module doc)."""

    @classmethod
    def make_datamodule(cls, cfg: DictConfig, make_env) -> L.LightningDataModule:
        return TaskDataModule(cfg)

    def __init__(self, cfg: DictConfig, env: EnvBase):
        if cfg.env.family != "meta":
            raise UsageError(
                f"maml meta-learns over a task family: use --env meta/navigation, meta/agents or meta/opponent (got {cfg.env.family}/{cfg.env.task})"
            )
        super().__init__(cfg, env)
        if cfg.model.kind != "mlp" or not cfg.model.share_params:
            raise UsageError("maml's policy is one MLP shared by every agent (tasks vary the agent count): use model=mlp, model.share_params=true")
        self.family, self.worlds = make_family(cfg.env), cfg.env.num_envs
        cost = self.cfg.meta_batch * (self.cfg.inner_steps + 1) * self.worlds * cfg.env.max_steps
        if cfg.collector.frames_per_batch != cost:
            raise UsageError(
                f"an iteration of maml costs algo.meta_batch x (algo.inner_steps + 1) x env.num_envs x env.max_steps = {cost} "
                f"env steps: set collector.frames_per_batch={cost}"
            )
        self._frames_per_iteration = cost
        group = self.groups[0]
        self.actor = MetaPolicy(group, self.model_cfg, self.cfg.init_std, device=env.device)
        out_keys = [group.key("logits")] if group.discrete else [group.key("loc"), group.key("scale")]
        self._policy = ProbabilisticActor(
            TensorDictModule(self.actor, in_keys=[group.key("observation")], out_keys=out_keys),
            in_keys=out_keys,
            out_keys=[group.key("action")],
            spec=group.action_spec,
            distribution_class=Categorical if group.discrete else IndependentNormal,
        )

    @property
    def policy(self) -> nn.Module:
        return self._policy

    def configure_optimizers(self):
        return fused_adam(self.actor.parameters(), lr=self.cfg.lr)

    def frames_in(self, batch) -> int:
        return self._frames_per_iteration

    # --- the inner loop ---------------------------------------------------------------------------
    def surrogate(self, params: Params, episodes: TensorDict) -> torch.Tensor:
        """The inner and outer loss on one task's episodes [W, T] (a pure function of `params`)."""
        out = functional_call(self.actor, params, (episodes["observation"],))
        return policy_gradient_loss(self.actor.distribution(out).log_prob(episodes["action"]), episodes["advantage"])

    @torch.no_grad()
    def sample(self, params: Params, tasks: TensorDict, generator: torch.Generator) -> TensorDict:
        """`env.num_envs` episodes [N, W, T] of each task in `tasks` [N], task i acting with
        params[name][i], with their advantages."""

        def act(observation: torch.Tensor) -> torch.Tensor:  # [N, W, n, obs_dim]
            return self.actor.sample(vmap(lambda p, o: functional_call(self.actor, p, (o,)))(params, observation), generator)

        episodes = rollout(self.family, tasks, self.worlds, act, generator)
        episodes["advantage"] = reinforce_advantages(episodes["reward"], self.cfg.gamma, self.cfg.normalize_advantage)
        return episodes

    def adapt_by_sampling(
        self, params: Params, tasks: TensorDict, generator: torch.Generator, steps: int | None = None
    ) -> tuple[list[TensorDict], TensorDict]:
        """Steps 1-3 of the module doc for tasks [N] of one agent count: the episodes of each
        inner step (a list of k [N, W, T]) and those of the adapted policies."""
        theta = {name: p.detach().expand(len(tasks), *p.shape) for name, p in params.items()}
        inner = []
        for _ in range(self.cfg.inner_steps if steps is None else steps):
            inner.append(self.sample(theta, tasks, generator))
            theta = adapt_tasks(self.surrogate, theta, inner[-1], self.cfg.inner_lr)
        return inner, self.sample(theta, tasks, generator)

    @torch.no_grad()
    def adaptation_returns(
        self, tasks: list[TensorDict], generator: torch.Generator, steps: int | None = None, params: Params | None = None
    ) -> torch.Tensor:
        """Mean episode return [k + 1] over `tasks` (grouped by agent count) before adaptation and
        after each inner step, starting from `params` (default: the module's)."""
        params = dict(self.actor.named_parameters()) if params is None else params
        n = sum(len(group) for group in tasks)
        returns = 0.0
        for group in tasks:
            inner, outer = self.adapt_by_sampling(params, group, generator, steps)
            returns = returns + len(group) / n * torch.stack([episode_returns(e).mean() for e in (*inner, outer)])
        return returns

    # --- the meta-update --------------------------------------------------------------------------
    def training_step(self, batch: MetaBatch, batch_idx: int) -> dict:
        params = {name: p.detach() for name, p in self.actor.named_parameters()}
        grads = {name: torch.zeros_like(p) for name, p in params.items()}
        n, loss, pre, post = sum(len(tasks) for tasks in batch.tasks), 0.0, 0.0, 0.0
        for tasks in batch.tasks:  # one agent count at a time; vmapped over its tasks
            inner, outer = self.adapt_by_sampling(params, tasks, batch.generator)
            stacked = torch.stack(inner, 1) if inner else outer.unsqueeze(1)[:, :0]  # [N, k, W, T]
            result = meta_gradient(
                self.surrogate, params, stacked, self.cfg.inner_lr, self.cfg.inner_steps, self.cfg.first_order, query=outer, per_step=True
            )
            share = len(tasks) / n
            for name in grads:
                grads[name] += share * result.grads[name]
            loss = loss + share * result.loss
            pre = pre + share * episode_returns(inner[0] if inner else outer).mean()
            post = post + share * episode_returns(outer).mean()
        # <theta, g> has gradient g: the base class's guarded step (DDP all-reduce, NaN check,
        # clipping) applies the meta-gradient as if backpropagated.
        linear = sum((p * grads[name]).sum() for name, p in self.actor.named_parameters())
        grad_norm = self.stepper.step(self.optimizers(), linear, {"loss_outer": loss})
        return {
            "rollout/episode_reward_mean": post,
            "rollout/pre_adaptation_return": pre,
            "rollout/post_adaptation_return": post,
            "rollout/adaptation_gain": post - pre,
            "train/loss": loss,
            "train/grad_norm": grad_norm,
        }


ALGORITHM = MAML
