"""The schemas of the run config's sections besides `algo` (ca12/algos/schemas.py), `env`
(ca12/envs/catalog.py), `trainer` and `checkpoint` (ca12/run/trainer.py): `model` and `critic_model`
(read by ca12/nets/builder.py), `collector` (ca12/data/collectors.py), `logger` (ca12/run/tracking.py)
and `eval` (ca12/data/evaluator.py), each key with its type, one-line doc and bounds (`ca12.schema.key`).

They live here rather than beside the code that reads them because those modules import torch,
TorchRL or Lightning: this one imports none of them, so `--show-config` and a refused config answer
without loading them (docs/ARCHITECTURE.md, "What may be imported at start-up"). The values live in
conf/ (the YAML is the truth).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import DictConfig

from ca12.schema import key

# NumPy's legacy seeding, torch and Lightning's `seed_everything` all take seeds in 0..2**32-1.
MAX_SEED = 2**32 - 1

# --- model, critic_model (ca12/nets/builder.py) ---------------------------------------------------
# `activation` -> the torch.nn class the builder uses.
ACTIVATIONS = {"tanh": "Tanh", "relu": "ReLU", "elu": "ELU", "gelu": "GELU"}
RECURRENT = ("gru", "lstm")
HIERARCHICAL = "hierarchical"
IC3NET = "ic3net"  # recurrent controllers that talk (ca12/nets/ic3net.py)
COMMUNICATION = ("commnet", "tarmac", "dial", "graph")
CNN = "cnn"  # a convolutional encoder for image observations, then the MLP
# `model=graph`: who hears whom (ca12/nets/communication.py builds them).
GRAPHS = ("ring", "star", "grid", "complete", "random_geometric")


@dataclass
class MLPConfig:
    """conf/model/mlp.yaml."""

    kind: str = key(
        "network kind: mlp, cnn, gru, lstm, commnet, tarmac, dial, graph, hierarchical, ic3net",
        choices=("mlp", CNN, *RECURRENT, *COMMUNICATION, HIERARCHICAL, IC3NET),
    )
    hidden_sizes: list[int] = key(
        "hidden layer widths (recurrent kinds: the encoder before the core; talking kinds: the encoder, its last "
        "width exchanged; hierarchical: the per-agent encoder, its last width also the worker's)"
    )
    activation: str = key("activation between layers", choices=tuple(ACTIVATIONS))
    share_params: bool = key("one set of weights for all agents of a group")


@dataclass
class RecurrentConfig(MLPConfig):
    """conf/model/gru.yaml, lstm.yaml."""

    hidden_size: int = key("width of the recurrent state", positive=True)
    num_layers: int = key("stacked recurrent layers", positive=True)


@dataclass
class IC3NetConfig(RecurrentConfig):
    """conf/model/ic3net.yaml: IC3Net, LSTM controllers that hear the mean of the others' states."""

    gated: bool = key("each agent learns when to speak (IC3Net's gate); false: all always speak (recurrent CommNet)")


@dataclass
class CommunicationConfig(MLPConfig):
    """What every talking kind reads (conf/model/commnet.yaml ... graph.yaml)."""

    rounds: int = key("message exchanges per step (information travels at most this many hops)", positive=True)


@dataclass
class CommNetConfig(CommunicationConfig):
    """conf/model/commnet.yaml: CommNet, each agent hears the mean of the others' features."""


@dataclass
class TarMACConfig(CommunicationConfig):
    """conf/model/tarmac.yaml: TarMAC, signature/value messages read by query attention."""

    message_size: int = key("width of a signature, value and query (split over the heads)", positive=True)
    heads: int = key("attention heads (divide message_size)", positive=True)
    attend_to_self: bool = key("an agent may attend to its own message (false: masked)")


@dataclass
class DIALConfig(CommunicationConfig):
    """conf/model/dial.yaml: DIAL, noisy sigmoid messages while training, bits at evaluation."""

    message_size: int = key("bits per message", positive=True)
    noise: float = key("sigma of the channel noise while training (DIAL's DRU)", minimum=0.0)


@dataclass
class GraphConfig(CommunicationConfig):
    """conf/model/graph.yaml: messages only along a graph's edges."""

    graph: str = key("who hears whom: ring, star, grid, complete, random_geometric", choices=GRAPHS)
    radius: float = key("random_geometric: agents within this distance are neighbours", positive=True)
    position_features: int = key("random_geometric: the first this many observation features are the agent's position", minimum=1)
    message_size: int = key("width of a message (bandwidth)", positive=True)
    top_k: Optional[int] = key("hear at most this many neighbours (null: all)")
    dropout: float = key("probability of losing each received message (training, or noisy_eval)", minimum=0.0)
    noise: float = key("sigma of Gaussian noise on each sent message (training, or noisy_eval)", minimum=0.0)
    noisy_eval: bool = key("keep dropout and noise when evaluating")


@dataclass
class HierarchicalConfig(MLPConfig):
    """conf/model/hierarchical.yaml: team managers set sub-goals for their workers every `period` steps."""

    team_size: int = key("agents per team, consecutive in the group (the last team may be smaller)", positive=True)
    period: int = key("steps between a manager's decisions (a new episode always decides)", positive=True)
    goal_size: int = key("width of the goal a manager gives each worker", positive=True)
    manager_sizes: list[int] = key("hidden widths of the manager MLP (shared by all teams; empty: linear)")


@dataclass
class CNNConfig(MLPConfig):
    """conf/model/cnn.yaml: convolutions over each agent's image observation [C, H, W] (TorchRL's
    MultiAgentConvNet), flattened into the MLP (`hidden_sizes`)."""

    channels: list[int] = key("output channels of each convolution")
    kernel_sizes: list[int] = key("kernel size of each convolution (one per channel entry)")
    strides: list[int] = key("stride of each convolution (one per channel entry)")


_MODEL_SCHEMAS: dict[str, type] = {
    CNN: CNNConfig,
    "gru": RecurrentConfig,
    "lstm": RecurrentConfig,
    "commnet": CommNetConfig,
    "tarmac": TarMACConfig,
    "dial": DIALConfig,
    "graph": GraphConfig,
    HIERARCHICAL: HierarchicalConfig,
    IC3NET: IC3NetConfig,
}


def model_schema(kind: str | None) -> type:
    """The schema of a `model` (or `critic_model`) section of network kind `kind`."""
    return _MODEL_SCHEMAS.get(kind, MLPConfig)


# --- collector (ca12/data/collectors.py) -----------------------------------------------------------
COLLECTOR_KINDS = ("sync", "multisync", "multiasync", "cudagraph")


@dataclass
class CollectorConfig:
    """conf/collector/*.yaml."""

    kind: str = key(
        "sync (in process), multisync or multiasync (worker processes), cudagraph (VMAS on a GPU, the rollout step captured)", choices=COLLECTOR_KINDS
    )
    frames_per_batch: int = key("frames (env steps x envs, over all workers) per iteration", positive=True)
    total_frames: int = key("training stops after this many frames", positive=True)
    workers: int = key("collector processes (multisync, multiasync)", positive=True)


def envs_per_batch(cfg: DictConfig) -> int:
    """Env worlds that step together in one batch: a batch is a whole number of steps of each."""
    return cfg.env.num_envs * (cfg.collector.workers if cfg.collector.kind == "multisync" else 1)


# --- logger (ca12/run/tracking.py) ------------------------------------------------------------------------
WANDB_MODES = ("auto", "online", "offline", "disabled")


@dataclass
class WandbConfig:
    """conf/logger/wandb.yaml."""

    project: str = key("W&B project")
    entity: Optional[str] = key("W&B entity (null: your default)")
    mode: str = key("auto (online when credentials and the server answer, else offline), online, offline, disabled", choices=WANDB_MODES)
    tags: list[str] = key("W&B run tags")


@dataclass
class TensorBoardConfig:
    """conf/logger/tensorboard.yaml (Lightning's TensorBoardLogger under <run-dir>/tensorboard)."""

    log_graph: bool = key("also log the model graph")


@dataclass
class LoggerConfig:
    """The run config's `logger` section: one entry per chosen logger (metrics.csv is always written)."""

    wandb: Optional[WandbConfig] = field(default=None, metadata={"doc": "Weights & Biases (logger=wandb)"})
    tensorboard: Optional[TensorBoardConfig] = field(default=None, metadata={"doc": "TensorBoard (logger=tensorboard)"})


# --- eval (ca12/data/evaluator.py) ------------------------------------------------------------------------
@dataclass
class EvalConfig:
    """The run config's `eval` section."""

    every_n_iters: int = key("evaluation episodes every N iterations and after the last (0: never)", minimum=0)
    episodes: int = key("episodes per evaluation (parallel worlds)", positive=True)
    deterministic: bool = key("act with the policy's mode (true) or sample from it (false)")
    video: bool = key("render the first episode to <run-dir>/videos/iter_<N>.gif (and W&B)")
