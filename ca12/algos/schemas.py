"""Every algorithm's keys: the typed schemas that `ca12.run.config` checks a run's `algo` section
against and `--show-config` documents, and which schema each `--algo NAME` uses (`SCHEMAS`).

They live here, not in the algorithm's own file (ca12/algos/<name>.py), because that file
imports torch, TorchRL and Lightning: this module imports none of them, so listing, help,
`--show-config` and a refused config answer without loading them (docs/ARCHITECTURE.md, "What may
be imported at start-up"). Values live in conf/algo/ (the YAML is the truth); a schema holds each
key's type, its one-line doc and its bounds (`ca12.schema.key`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ca12.schema import key
from ca12.selfplay.config import LeagueConfig

# A3C's server: the optimisers it can step with and how it applies its workers' gradients (the
# names of ca12/distributed/parameter_server.py's OPTIMISERS and MODES).
A3C_OPTIMISERS = ("adam", "sgd", "rmsprop")
A3C_MODES = ("async", "sync")


@dataclass
class AlgoConfig:
    """Keys every algorithm reads (conf/algo/base/common.yaml)."""

    name: str = key("the algorithm (--algo)")
    max_grad_norm: float = key("gradient-norm clip of every optimiser step", positive=True)
    skip_nonfinite: bool = key("a NaN/inf loss or gradient stops the run (false) or skips that update (true)")
    groups: Optional[list[str]] = key("agent groups to train (null: all); the others act with a fixed random policy")
    anneal_lr: bool = key("decay every learning rate linearly from its value to 0 over collector.total_frames (A2C/PPO's Atari schedule)")
    cudagraphs: bool = key(
        "capture each minibatch update (loss, backward, clip, fused Adam step) as a CUDA graph and replay it (ca12/algos/cuda_graphs.py; CUDA only)"
    )


@dataclass
class OnPolicyConfig(AlgoConfig):
    """What `ca12.algos.on_policy.minibatch_epochs` reads: the on-policy update of PPO and COMA."""

    num_epochs: int = key("passes over each collected batch (COMA: the critic's passes)", positive=True)
    minibatch_size: int = key("frames per minibatch (one Adam step each)", positive=True)


@dataclass
class ReplayConfig(AlgoConfig):
    """What every replay method reads (conf/algo/base/replay.yaml)."""

    updates_per_frame: float = key("Adam steps (of each optimiser) per collected frame", positive=True)
    minibatch_size: int = key("transitions per sampled minibatch", positive=True)
    buffer_size: int = key("replay capacity in transitions (oldest overwritten first)", positive=True)
    buffer_device: str = key("where the buffer's storage lives (cpu, cuda)")
    buffer_storage: str = key("memory (tensors on buffer_device) or memmap (files on the host)", choices=("memory", "memmap"))
    prioritized: bool = key("prioritised replay (Schaul et al. 2016) by |TD error|")
    priority_alpha: float = key("how strongly priorities shape sampling (0 = uniform)", minimum=0.0)
    priority_beta: float = key("importance-weight exponent (1 = full correction)", minimum=0.0)
    warmup_frames: int = key("no updates until the buffer holds this many transitions", minimum=0)
    tau: float = key("soft target update: target <- (1 - tau) target + tau online, every update", minimum=0.0)
    gamma: float = key("discount factor", minimum=0.0, maximum=1.0)


@dataclass
class ActorCriticReplayConfig(ReplayConfig):
    """What the replay actor-critics (MADDPG, MASAC and their I* variants) add."""

    actor_lr: float = key("Adam learning rate of the actors", positive=True)
    critic_lr: float = key("Adam learning rate of the critics", positive=True)
    loss_function: str = key("critic regression loss", choices=("l2", "l1", "smooth_l1"))
    actor_objective: str = key(
        "what actor i ascends (ca12/algos/actor_objective.py): own (MADDPG's paper, its default: its own Q_i, the others' "
        "actions from the buffer; needs critic_model.share_params=false with a centralised critic) or team "
        "(TorchRL/BenchMARL, MASAC's default: the mean of all agents' Q, every action from the current actors)",
        choices=("own", "team"),
    )


@dataclass
class ValueConfig(ReplayConfig):
    """The value-decomposition family's keys (IQL, VDN; conf/algo/base/value.yaml)."""

    lr: float = key("Adam learning rate", positive=True)
    eps_init: float = key("epsilon-greedy: first epsilon", minimum=0.0)
    eps_end: float = key("epsilon-greedy: final epsilon", minimum=0.0)
    annealing_frames: int = key("collected frames over which epsilon falls linearly", positive=True)
    sequence_length: int = key("model=gru|lstm: steps per replayed sequence, burn-in included", positive=True)
    burn_in: int = key("model=gru|lstm: first steps of each sequence that only refresh the stored hidden state (no loss)", minimum=0)


@dataclass
class QMIXConfig(ValueConfig):
    """QMIX's keys."""

    mixing_embed_dim: int = key("width of QMIX's state-conditioned mixing network", positive=True)


@dataclass
class MAPPOConfig(OnPolicyConfig):
    """MAPPO's and IPPO's keys (TorchRL's names: they pass straight to MAPPOLoss / GAE)."""

    lr: float = key("Adam learning rate of actor and critic", positive=True)
    gamma: float = key("discount factor", minimum=0.0, maximum=1.0)
    lmbda: float = key("GAE lambda", minimum=0.0, maximum=1.0)
    clip_epsilon: float = key("PPO ratio clip", minimum=0.0)
    entropy_coeff: float = key("weight of the entropy bonus", minimum=0.0)
    critic_coeff: float = key("weight of the value loss", minimum=0.0)
    critic_loss: str = key("value regression loss (TorchRL's names)", choices=("l2", "l1", "smooth_l1"))
    normalize_advantage: bool = key("standardise advantages per minibatch")
    clip_value: Optional[float] = key("clip the value loss: new values within +- this of the collected ones (null: unclipped)", positive=True)
    target_kl: Optional[float] = key(
        "stop a batch's epochs early once an epoch's mean approximate KL (summed over trained groups) exceeds this (null: never)", positive=True
    )
    value_norm: str = key(
        "the critics learn value targets standardised by running statistics, their outputs rescaled to returns for GAE "
        "(MAPPO's ValueNorm, ca12/algos/value_norm.py): none, popart (exponential averages, MAPPO's) or running (exact)",
        choices=("none", "popart", "running"),
    )
    opponent_model: bool = key(
        "each agent predicts the other agents' actions from its observation and its actor reads the prediction (ca12/nets/opponent.py)"
    )
    opponent_model_coeff: float = key("weight of the opponent model's cross-entropy in the loss", minimum=0.0)
    signalling_coeff: float = key(
        "weight of the positive-signalling bonus (Eccles et al. 2019): the loss subtracts this times each "
        "agent's I(action; observation) over the minibatch (0: off)",
        minimum=0.0,
    )
    signalling_groups: Optional[list[str]] = key("trained groups with discrete actions that get the signalling bonus (null: every trained group)")
    league: LeagueConfig = key("self-play against a league of the trained group's snapshots playing the other group (ca12/selfplay/league.py)")


@dataclass
class COMAConfig(OnPolicyConfig):
    """COMA's keys."""

    lr: float = key("Adam learning rate of the actors", positive=True)
    critic_lr: float = key("Adam learning rate of the critic", positive=True)
    actor_epochs: int = key("actor passes over each batch (plain policy gradient: keep it small)", positive=True)
    gamma: float = key("discount factor", minimum=0.0, maximum=1.0)
    lmbda: float = key("TD(lambda) of the critic targets", minimum=0.0, maximum=1.0)
    entropy_coeff: float = key("weight of the entropy bonus", minimum=0.0)
    normalize_advantage: bool = key("divide advantages by their minibatch std (not centred)")
    baseline: str = key(
        "counterfactual: Q(s, u) critic, each agent's counterfactual advantage (COMA); central_v: V(s) critic, "
        "every agent's advantage the team's lambda-return minus V(s) (the paper's central-V ablation)",
        choices=("counterfactual", "central_v"),
    )


@dataclass
class ESConfig(AlgoConfig):
    """OpenAI ES's keys."""

    lr: float = key("Adam learning rate on the search gradient", positive=True)
    sigma: float = key("noise scale of the perturbations", positive=True)
    population: int = key("evaluations per generation (even: antithetic pairs)", positive=True)
    weight_decay: float = key("L2 coefficient: the step follows g - weight_decay * theta", minimum=0.0)
    workers: int = key("Ray workers evaluating the population (0: in the training process, no Ray)", minimum=0)
    max_restarts: int = key("times Ray restarts a dead worker before the pool drops it", minimum=0)


@dataclass
class IMPALAConfig(OnPolicyConfig):
    """IMPALA's keys (the paper's names: rho-bar, c-bar, baseline cost)."""

    lr: float = key("Adam learning rate of actors and critics", positive=True)
    gamma: float = key("discount factor", minimum=0.0, maximum=1.0)
    clip_rho: Optional[float] = key("rho-bar: clip of the importance weights in the value targets (null: none)", positive=True)
    clip_pg_rho: Optional[float] = key("clip of the importance weights in the policy-gradient advantages (null: none)", positive=True)
    clip_c: Optional[float] = key("c-bar: clip of the trace-cutting weights (null: none)", positive=True)
    lmbda: float = key(
        "lambda: every trace weight c_s is lambda min(c-bar, rho_s) (1: the paper's V-trace; on-policy the targets are GAE's lambda-returns)",
        minimum=0.0,
        maximum=1.0,
    )
    entropy_coeff: float = key("weight of the entropy bonus", minimum=0.0)
    baseline_coeff: float = key("weight of the value loss 1/2 (v_s - V(x_s))^2", minimum=0.0)
    centralised_critic: bool = key("every agent's value sees all agents' observations (false: its own)")
    normalize_advantage: bool = key("standardise the V-trace advantages per batch")


@dataclass
class MADDPGConfig(ActorCriticReplayConfig):
    """MADDPG's and IDDPG's keys."""

    sigma_init: float = key("exploration: first std of the Gaussian action noise (unit actions)", minimum=0.0)
    sigma_end: float = key("exploration: final noise std", minimum=0.0)
    annealing_frames: int = key("collected frames over which the noise std falls linearly", positive=True)
    gumbel_temperature: float = key("discrete actions: straight-through Gumbel-softmax temperature", positive=True)


@dataclass
class MAMLConfig(AlgoConfig):
    """MAML-RL's keys."""

    meta_batch: int = key("tasks per iteration (the paper: 20)", positive=True)
    inner_steps: int = key("policy-gradient steps of the adaptation, k (0: multi-task policy gradient, no adaptation)", minimum=0)
    inner_lr: float = key("step size alpha of the inner steps (the paper: 0.1)", positive=True)
    first_order: bool = key("first-order MAML: treat the inner gradients as constants (no Hessian terms)")
    lr: float = key("Adam learning rate of the meta-update", positive=True)
    gamma: float = key("discount of the reward-to-go", positive=True, maximum=1.0)
    normalize_advantage: bool = key("scale each task's advantages to mean 0, std 1")
    init_std: float = key("initial std of the Gaussian policy (continuous actions), a learnt parameter", positive=True)


@dataclass
class MASACConfig(ActorCriticReplayConfig):
    """MASAC's and ISAC's keys."""

    alpha_lr: float = key("Adam learning rate of log(alpha), the entropy temperature", positive=True)
    alpha_init: float = key("first entropy temperature", positive=True)
    num_qvalue_nets: int = key("critics per agent (2: clipped double Q)", positive=True)


@dataclass
class CentralCriticConfig(OnPolicyConfig):
    """What TRPO, HATRPO and HAPPO share: GAE advantages from a centralised critic fitted by Adam."""

    gamma: float = key("discount factor", minimum=0.0, maximum=1.0)
    lmbda: float = key("GAE lambda", minimum=0.0, maximum=1.0)
    normalize_advantage: bool = key("standardise advantages over the batch")
    critic_lr: float = key("Adam learning rate of the critic", positive=True)
    num_epochs: int = key("critic passes over each batch", positive=True)
    minibatch_size: int = key("frames per minibatch (one Adam step each; happo: the actors' too)", positive=True)


@dataclass
class TRPOConfig(CentralCriticConfig):
    """TRPO's and HATRPO's keys."""

    max_kl: float = key(
        "trust region: largest mean KL(old || new) a policy step may reach (trpo: the joint policy's, summed over agents; hatrpo: each agent's)",
        positive=True,
    )
    damping: float = key("added to the Fisher matrix (F + damping I) so conjugate gradient stays well posed", minimum=0.0)
    cg_iters: int = key("conjugate-gradient iterations for the natural-gradient direction", positive=True)
    fisher_fraction: float = key("share of the batch's frames (drawn at random) the Fisher-vector products use", positive=True, maximum=1.0)
    line_search_steps: int = key("step sizes tried (each backtrack_coeff times the last) before the step is rejected", positive=True)
    backtrack_coeff: float = key("factor shrinking the step at each line-search try", positive=True, below=1.0)


@dataclass
class HAPPOConfig(CentralCriticConfig):
    """HAPPO's keys: HATRPO's sequential scheme with PPO's clipped step per agent."""

    lr: float = key("Adam learning rate of each agent's policy", positive=True)
    clip_epsilon: float = key("PPO clip of each agent's probability ratio", positive=True)
    actor_epochs: int = key("passes over the batch for each agent's policy, in minibatches of minibatch_size", positive=True)
    entropy_coeff: float = key("weight of each agent's entropy bonus", minimum=0.0)


@dataclass
class A3CConfig(AlgoConfig):
    """A3C's keys (the paper's names where it has them)."""

    lr: float = key("learning rate of the server's optimiser", positive=True)
    optimizer: str = key("the server's optimiser", choices=A3C_OPTIMISERS)
    gamma: float = key("discount factor", minimum=0.0, maximum=1.0)
    entropy_coeff: float = key("weight of the entropy bonus", minimum=0.0)
    baseline_coeff: float = key("weight of the value loss 1/2 (R_t - V(x_t))^2", minimum=0.0)
    centralised_critic: bool = key("every agent's value sees all agents' observations (false: its own)")
    normalize_advantage: bool = key("standardise the advantages of each worker's batch")
    workers: int = key("Ray actor-learners (0: one in the training process, no Ray)", minimum=0)
    mode: str = key("async: apply each gradient on arrival (A3C); sync: average one per worker, then step", choices=A3C_MODES)
    max_staleness: Optional[int] = key("drop gradients more than this many server steps old (null: keep all)", minimum=0)
    max_restarts: int = key("times Ray restarts a dead worker before it is dropped", minimum=0)


# --algo NAME (conf/algo/NAME.yaml) -> the schema of its `algo` section.
SCHEMAS: dict[str, type] = {
    "a3c": A3CConfig,
    "coma": COMAConfig,
    "es": ESConfig,
    "impala": IMPALAConfig,
    "maml": MAMLConfig,
    "mappo": MAPPOConfig,
    "ippo": MAPPOConfig,
    "ppo": MAPPOConfig,
    "trpo": TRPOConfig,
    "hatrpo": TRPOConfig,
    "happo": HAPPOConfig,
    "maddpg": MADDPGConfig,
    "iddpg": MADDPGConfig,
    "masac": MASACConfig,
    "isac": MASACConfig,
    "sac": MASACConfig,
    "qmix": QMIXConfig,
    "vdn": ValueConfig,
    "iql": ValueConfig,  # VDN and IQL have no mixer to size
}
