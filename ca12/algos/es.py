"""Evolution strategies (Salimans et al. 2017): the policy's weights searched by perturbation.

Each iteration (a generation) draws `algo.population / 2` noise seeds, evaluates the policy with
weights theta +- sigma eps_i (antithetic pairs, eps_i regenerated from its seed by whoever needs
it) on one episode in each of `env.num_envs` worlds, acting deterministically, and moves theta along the
centred-rank estimate of the search gradient (`ca12.distributed.es_gradient`) with Adam and an L2 weight
decay (OpenAI's `l2coeff`: the step follows g - weight_decay * theta, its norm clipped at
`algo.max_grad_norm`).

Evaluations run on `algo.workers` Ray actors (`ca12.distributed.WorkerPool`, restarted by Ray
when they die; the evaluations of a dead worker run again elsewhere), each holding its own env
and a copy of the policy; they receive the weights and seeds and send back only fitnesses.
`algo.workers=0` evaluates in the training process (no Ray). A generation's seeds come from the
run's seed and the iteration, so a resumed run draws what the uninterrupted run would have.

Frames: an evaluation steps every world for `env.max_steps` steps, so a generation costs
population x num_envs x max_steps env steps; `collector.frames_per_batch` must say so.
"""

from __future__ import annotations

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from tensordict.nn import TensorDictSequential
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters
from torchrl.envs import EnvBase

from ca12.algos.base import RLModule
from ca12.algos.optim import fused_adam
from ca12.data.evaluator import Evaluator
from ca12.data.rollout import one_batch_loader
from ca12.distributed.es_gradient import es_estimate, pair_seeds, perturbation
from ca12.distributed.parameter_server import set_gradients
from ca12.distributed.pool import WorkerPool
from ca12.envs import make_spec_env
from ca12.errors import UsageError
from ca12.nets.policies import FixedRandomPolicy, make_actor

SEED_STRIDE = 1_000_003  # generation g of a run with seed s draws from seed s * SEED_STRIDE + g


class FitnessWorker:
    """Evaluates perturbations of the policy on its own env; runs in a Ray worker process (or
    in the training process with `algo.workers=0`). Built from the run config alone."""

    def __init__(self, run_config: dict, seed: int):
        cfg = OmegaConf.create(run_config)
        self.policy = ES(cfg, make_spec_env(cfg.env, seed)).policy
        self.evaluator = Evaluator(cfg.env, cfg.env.num_envs, seed, deterministic=True, groups=cfg.algo.groups)

    @torch.no_grad()
    def evaluate(self, theta: torch.Tensor, seeds: list[int], sigma: float, episode_seed: int) -> tuple[torch.Tensor, int]:
        """Fitness [len(seeds), 2] of theta +- sigma eps(seed) (mean return over the episodes,
        the same episodes for every evaluation) and the env steps it took."""
        params = list(self.policy.parameters())
        fitness = torch.zeros(len(seeds), 2)
        self.evaluator.seed = episode_seed  # the same episodes for every evaluation
        for i, seed in enumerate(seeds):
            eps = perturbation(seed, theta.numel())
            for j, sign in enumerate((1.0, -1.0)):
                vector_to_parameters(theta + sign * sigma * eps, params)
                fitness[i, j] = self.evaluator.run(self.policy).episode_reward_mean
        return fitness, fitness.numel() * self.evaluator.episodes * self.evaluator.env_cfg.max_steps


class Population:
    """A generation to evaluate: what the data module yields to `training_step`."""

    def __init__(self, datamodule: "PopulationDataModule"):
        self.datamodule = datamodule

    def evaluate(self, theta: torch.Tensor, seeds: list[int], sigma: float, episode_seed: int) -> tuple[torch.Tensor, int]:
        return self.datamodule.evaluate(theta, seeds, sigma, episode_seed)


class PopulationDataModule(L.LightningDataModule):
    """Owns the fitness workers (a Ray pool, or one in-process worker) and yields one
    `Population` per iteration."""

    def __init__(self, cfg: DictConfig):
        super().__init__()
        self.cfg = cfg
        self.pool: WorkerPool | None = None
        self.local: FitnessWorker | None = None

    def setup(self, stage: str) -> None:
        run_config, workers = OmegaConf.to_container(self.cfg, resolve=True), self.cfg.algo.workers
        seed = self.cfg.seed + 7919 * self.trainer.global_rank
        if workers == 0 and self.local is None:
            self.local = FitnessWorker(run_config, seed)
        elif workers and self.pool is None:
            self.pool = WorkerPool(FitnessWorker, workers, lambda i: ((run_config, seed + i), {}), max_restarts=self.cfg.algo.max_restarts)

    def train_dataloader(self):
        return one_batch_loader(self)

    def next_batch(self) -> Population:
        return Population(self)

    def evaluate(self, theta: torch.Tensor, seeds: list[int], sigma: float, episode_seed: int) -> tuple[torch.Tensor, int]:
        if self.pool is None:
            return self.local.evaluate(theta, seeds, sigma, episode_seed)
        chunks = [seeds[i :: len(self.pool)] for i in range(len(self.pool))]
        results = self.pool.map("evaluate", [((theta, chunk, sigma, episode_seed), {}) for chunk in chunks if chunk])
        fitness = torch.zeros(len(seeds), 2)
        for i, (part, _) in enumerate(results):
            fitness[i :: len(self.pool)] = part
        return fitness, sum(steps for _, steps in results)

    def teardown(self, stage: str) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None


class ES(RLModule):
    """OpenAI ES as a LightningModule; `training_step` evaluates one generation and steps Adam."""

    multi_group = True

    @classmethod
    def make_datamodule(cls, cfg: DictConfig, make_env) -> L.LightningDataModule:
        return PopulationDataModule(cfg)

    def __init__(self, cfg: DictConfig, env: EnvBase):
        super().__init__(cfg, env)
        if self.cfg.population % 2:
            raise UsageError(f"algo.population must be even (antithetic pairs), got {self.cfg.population}")
        cost = self.cfg.population * cfg.env.num_envs * cfg.env.max_steps
        if cfg.collector.frames_per_batch != cost:
            raise UsageError(
                f"a generation of es costs algo.population x env.num_envs x env.max_steps = {cost} env steps: set collector.frames_per_batch={cost}"
            )
        self.actors = nn.ModuleDict({group.name: make_actor(group, self.model_cfg, device=env.device) for group in self.groups})
        others = [FixedRandomPolicy(group) for name, group in self.layout.groups.items() if name not in self.actors]
        self._policy = TensorDictSequential(*self.actors.values(), *others)
        self._frames_in_batch = 0

    @property
    def policy(self) -> nn.Module:
        return self._policy

    def configure_optimizers(self):
        return fused_adam(self.actors.parameters(), lr=self.cfg.lr)

    def frames_in(self, batch) -> int:
        return self._frames_in_batch

    def training_step(self, population: Population, batch_idx: int) -> dict:
        params = list(self.actors.parameters())
        theta = parameters_to_vector(params).detach().cpu()
        generation = self.run_config["seed"] * SEED_STRIDE + self.iterations
        seeds = pair_seeds(generation, self.cfg.population // 2)
        fitness, self._frames_in_batch = population.evaluate(theta, seeds, self.cfg.sigma, episode_seed=generation)
        grad = es_estimate(seeds, fitness, self.cfg.sigma, theta.numel()) - self.cfg.weight_decay * theta
        optimiser = self.optimizers()
        optimiser.zero_grad(set_to_none=True)
        set_gradients(params, -grad)  # descend on -g: ascend the fitness
        self.clip_gradients(optimiser, gradient_clip_val=self.cfg.max_grad_norm, gradient_clip_algorithm="norm")
        optimiser.step()
        return {
            "rollout/episode_reward_mean": fitness.mean(),
            "train/fitness_max": fitness.max(),
            "train/fitness_min": fitness.min(),
            "train/grad_norm": grad.norm(),
        }


ALGORITHM = ES
