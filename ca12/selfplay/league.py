"""Self-play against a league of the learner's past snapshots (`algo.league`, PPO family).

One agent group learns (`algo.groups=[NAME]`); the env's other group, its opponent, acts with
frozen copies of the learner's actor taken at earlier iterations. Every `snapshot_every`
iterations the learner's actor joins the league (the oldest leaves beyond `max_size`). Before
each batch every env world draws its opponent from the league, so a batch plays many snapshots
at once, one per world (with episode-aligned batches: one per episode), as AlphaStar's actors
each play their own match (Vinyals et al. 2019). The draw follows `opponents`: `uniform` is
fictitious self-play (Heinrich et al. 2015), `latest` naive self-play, `pfsp` AlphaStar's
prioritised fictitious self-play, weight f(P[learner beats snapshot]) = (1 - P)^p.

Match results are the episodes of the training batches (a win is a higher episode return of
the learner's group, averaged over its agents; a draw an equal one). They give each snapshot
its win statistics (AlphaStar's payoff table, decayed by `stats_decay` at each update) and the
Elo ratings (Elo 1978): a batch is worth one K-factor, split over its episodes, each a game
between the learner and that world's snapshot rated before the batch.

The opponent wears the learner's network, so the game must be symmetric: both groups with the
same agent count, observation size and action spec, and observations that mean the same from
either seat. VMAS football mirrors the red team's view and actions itself; matrix games
(`env.group_per_player=true`) order the players' last actions and ids by seat, so the opponent
sees its observation with the two seats swapped (`matrix_seat_swap`), and their payoffs must be
symmetric. Asymmetric games (MPE's predators and prey) are refused: they need one league per
role, which is not built here.

On matrix games the league reports the exploitability (`ca12.game_theory.exploitability`) of
its mixture: the snapshots' action distributions at an episode's first play, averaged with the
league's sampling probabilities (the meta-strategy the learner plays against: the plain average
of fictitious play with `uniform`), played by both seats of the normal-form stage game (exact
for one-shot games, `env.max_steps=1`).

The league is a submodule of the algorithm: the snapshots are a buffer of the opponent (so
collectors that keep their own copy of the policy receive them with the weights), and the
ratings, statistics and the sampling generator are its `get_extra_state`; a checkpoint holds
them all and a resumed run continues bit for bit. `ca12/selfplay/callback.py` calls it between
iterations. Written here: TorchRL has no league or self-play machinery.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase, TensorDictSequential
from torch import nn
from torch.nn.utils import parameters_to_vector
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from ca12.envs.layout import Group
from ca12.errors import UsageError
from ca12.game_theory import NormalFormGame, exploitability
from ca12.nets.builder import is_recurrent
from ca12.nets.policies import make_actor
from ca12.schema import check
from ca12.seeding import isolated_rng
from ca12.selfplay.config import LeagueConfig

# The league's generator is seeded apart from the run's other streams.
LEAGUE_SEED_OFFSET = 7_919


# --- pure functions -----------------------------------------------------------------------------
def elo_expected(rating: torch.Tensor | float, other: torch.Tensor | float) -> torch.Tensor:
    """Expected score of a player rated `rating` against one rated `other` (Elo 1978):
    E = 1 / (1 + 10^((other - rating) / 400))."""
    return 1.0 / (1.0 + 10.0 ** ((torch.as_tensor(other, dtype=torch.float64) - rating) / 400.0))


def elo_deltas(rating: float, others: torch.Tensor, scores: torch.Tensor, weights: torch.Tensor, k: float) -> torch.Tensor:
    """Rating changes of games the player rated `rating` played against `others` [n] at the same
    time (all expectations from the ratings before them; Elo 1978): it scored `scores` [n] in
    [0, 1] (win 1, draw 0.5) and game i counts `weights[i]` of a K-factor `k`. Returns
    delta_i = k w_i (S_i - E_i) [n]: the player gains their sum, opponent i loses delta_i."""
    return k * weights * (scores - elo_expected(rating, others))


def pfsp_weights(win_rates: torch.Tensor, power: float) -> torch.Tensor:
    """Prioritised fictitious self-play sampling probabilities (Vinyals et al. 2019, AlphaStar's
    `pfsp` with f(x) = (1 - x)^p): snapshots the learner beats less often are drawn more often.
    Uniform when every weight is zero (the learner beats them all)."""
    weights = (1.0 - win_rates).clamp(min=0.0) ** power
    total = weights.sum()
    return weights / total if total > 0 else torch.full_like(weights, 1.0 / len(weights))


def episode_results(batch: TensorDictBase, learner: str, opponent: str, tol: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """The learner's result in every episode that ended in `batch` [B, T]: 1 when its group's
    return (the `RewardSum` counter, averaged over its agents) beats the opponent group's by more
    than `tol`, 0 when it is beaten, 0.5 for a draw. Returns (results [n_episodes], the env world
    each episode was played in [n_episodes])."""
    done = batch["next", "done"].squeeze(-1)  # [B, T]
    mine = batch["next", learner, "episode_reward"].mean(-2).squeeze(-1)  # [B, T]
    theirs = batch["next", opponent, "episode_reward"].mean(-2).squeeze(-1)
    world = torch.arange(done.shape[0], device=done.device).unsqueeze(-1).expand_as(done)  # [B, T]
    margin = (mine - theirs)[done]
    return (margin > tol).double() + 0.5 * (margin.abs() <= tol).double(), world[done]


def matrix_seat_swap(n_players: int, n_actions: int, seat: int, other: int) -> torch.Tensor:
    """Feature order that shows seat `other`'s matrix-game observation from seat `seat`.

    A matrix-game observation (ca12/envs/matrix/) is `[one-hot a_0 | ... | one-hot a_{n-1} |
    one-hot id (n) | t]`; swapping the two seats' action blocks and id entries gives a player in
    seat `other` exactly what it would see in seat `seat` of the same (symmetric) game.
    Returns indices [n A + n + 1] for `obs[..., index]`.
    """
    index = torch.arange(n_players * n_actions + n_players + 1)
    blocks = index[: n_players * n_actions].view(n_players, n_actions).clone()
    blocks[[seat, other]] = blocks[[other, seat]]
    ids = index[n_players * n_actions : n_players * (n_actions + 1)].clone()
    ids[[seat, other]] = ids[[other, seat]]
    return torch.cat([blocks.flatten(), ids, index[-1:]])


def flat_parameters(module: nn.Module) -> torch.Tensor:
    """All of `module`'s parameters as one detached vector, in `parameters()` order."""
    return parameters_to_vector(module.parameters()).detach()


@torch.no_grad()
def load_flat_parameters(module: nn.Module, vector: torch.Tensor) -> None:
    """Copy `vector` (as `flat_parameters` lays it out) into `module`'s parameters. (Not
    `torch.nn.utils.vector_to_parameters`: that makes the parameters views of `vector`.)"""
    offset = 0
    for p in module.parameters():
        p.copy_(vector[offset : offset + p.numel()].view_as(p))
        offset += p.numel()


class SnapshotOpponent(TensorDictModuleBase):
    """The opponent group's policy: every env world acts with the snapshot `assignment` gives it.

    Holds an actor shaped like the learner's (frozen), the league's snapshots as one buffer
    `bank` [max_size, n_parameters] and `assignment` [num_envs] (world b plays snapshot
    `assignment[b mod num_envs]`, so an env of another size, e.g. evaluation's, still has one).
    Each snapshot's worlds act through the actor loaded with its weights, on their observation
    seen from the learner's seat (`seat`: a feature order, or None when the env's observations are
    egocentric already). Writes only the opponent's action: the batch's observations stay as the
    env gave them.
    """

    def __init__(self, group: Group, model: DictConfig, seat: torch.Tensor | None, max_size: int, num_envs: int, device=None):
        super().__init__()
        self.actor = make_actor(group, model, device=device).requires_grad_(False)
        self.register_buffer("seat", seat.to(device) if seat is not None else None)
        self.register_buffer("bank", torch.zeros(max_size, sum(p.numel() for p in self.actor.parameters()), device=device))
        self.register_buffer("assignment", torch.zeros(num_envs, dtype=torch.long, device=device))
        self.observation_key, self.action_key = group.key("observation"), group.key("action")
        self.in_keys, self.out_keys = list(self.actor.in_keys), [self.action_key]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # One line instead of PyTorch's size-mismatch report when a resumed run changed max_size.
        saved = state_dict.get(prefix + "bank")
        if saved is not None and saved.shape[0] != self.bank.shape[0]:
            raise UsageError(
                f"algo.league.max_size cannot change when a run resumes: the checkpoint's league has {saved.shape[0]} places, "
                f"the config {self.bank.shape[0]}"
            )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        view = tensordict.select(*self.in_keys)
        if self.seat is not None:
            view.set(self.observation_key, view.get(self.observation_key)[..., self.seat])
        worlds = torch.arange(view.shape[0], device=self.assignment.device)
        owner = self.assignment[worlds % self.assignment.numel()].to(view.device)  # [B]
        # make_actor's ProbabilisticActor is [network module, distribution module]: the network
        # runs once per snapshot on its worlds' tensors (no TensorDict work in the loop), the
        # distribution samples once for all worlds.
        network, distribution = self.actor.module[0], self.actor.module[-1]
        inputs = [view.get(k) for k in network.in_keys]  # [B, n_agents, ...] each
        outputs = None
        for snapshot in torch.unique(owner).tolist():
            mask = owner == snapshot
            load_flat_parameters(self.actor, self.bank[snapshot])
            out = network.module(*(x[mask] for x in inputs))
            out = out if isinstance(out, tuple) else (out,)
            if outputs is None:
                outputs = [o.new_empty(view.shape[0], *o.shape[1:]) for o in out]
            for full, part in zip(outputs, out):
                full[mask] = part
        for k, value in zip(network.out_keys, outputs):
            view.set(k, value)
        tensordict.set(self.action_key, distribution(view).get(self.action_key))
        return tensordict


class League(nn.Module):
    """The learner's snapshots, their ratings and statistics, and the opponent they act through.

    Build it with `League.build(cfg, module)` (None when `algo.league.opponents` is null).

    Args:
        cfg: the `algo.league` section.
        learner, opponent: the trained group and the group the snapshots play.
        model: the actors' `model` section.
        actor: the learner's actor (its weights now are the first snapshot).
        seed: the run's seed (the sampling generator's is `seed + LEAGUE_SEED_OFFSET`).
        num_envs: env worlds per collector env (each draws its own opponent).
        seat: feature order showing the opponent's observation from the learner's seat (or None).
        game, first_observation: a matrix game's normal-form stage game and the learner's
            observation at an episode's first play, for exploitability (None elsewhere).
    """

    def __init__(
        self,
        cfg: DictConfig,
        learner: Group,
        opponent: Group,
        model: DictConfig,
        actor: nn.Module,
        seed: int,
        num_envs: int,
        seat: torch.Tensor | None = None,
        game: NormalFormGame | None = None,
        first_observation: torch.Tensor | None = None,
        device=None,
    ):
        super().__init__()
        self.cfg, self.learner, self.opponent_group = cfg, learner.name, opponent.name
        self.opponent = SnapshotOpponent(opponent, model, seat, cfg.max_size, num_envs, device=device)
        self.game, self.first_observation = game, first_observation
        self.generator = torch.Generator().manual_seed(seed + LEAGUE_SEED_OFFSET)
        self.size = 0
        self.born: list[int] = []  # the iteration each snapshot was taken after (0: the initial weights)
        self.elo: list[float] = []
        self.wins: list[float] = []  # decayed counts per snapshot, from the learner's side
        self.draws: list[float] = []
        self.games: list[float] = []
        self.first_play: list[list[float]] = []  # matrix games: each snapshot's first-play distribution
        self.learner_elo = float(cfg.elo_initial)
        self.add_snapshot(actor, iteration=0)

    @classmethod
    def build(cls, cfg: DictConfig, module) -> "League | None":
        """The league of `module` (MAPPO/IPPO/PPO, after its actors are built) as `cfg.algo.league`
        says, or None when it is off. One-line `UsageError`s for a setting it cannot play."""
        section = cfg.algo.league
        if section.opponents is None:
            return None
        check(LeagueConfig, section, "algo.league")
        setting = f"algo.league.opponents={section.opponents}"
        layout, env_cfg = module.layout, cfg.env
        if len(layout.groups) != 2:
            hint = " (matrix games: env.group_per_player=true)" if env_cfg.family == "matrix" else ""
            raise UsageError(
                f"{setting} needs an env with two agent groups (the learner's and its opponent's); "
                f"{env_cfg.family}/{env_cfg.task} has {len(layout.groups)}: {', '.join(layout.names)}{hint}"
            )
        if len(module.groups) != 1:
            raise UsageError(
                f"{setting}: train one group and let the league's snapshots play the other: set algo.groups=[NAME] "
                f"(the env's groups: {', '.join(layout.names)})"
            )
        learner = module.groups[0]
        opponent = next(g for g in layout.groups.values() if g.name != learner.name)
        _check_symmetric(learner, opponent, setting)
        if is_recurrent(cfg.model):
            raise UsageError(f"{setting}: a league of recurrent actors (model={cfg.model.kind}) is not supported; use a feed-forward model")
        seat = game = first = None
        if env_cfg.family == "matrix":
            seat, game, first = _matrix_setting(env_cfg, learner, opponent, setting)
        actor = module.actors[learner.name]
        device = next(actor.parameters()).device
        return cls(section, learner, opponent, cfg.model, actor, cfg.seed, cfg.env.num_envs, seat, game, first, device=device)

    # --- the league's life --------------------------------------------------------------------------
    @torch.no_grad()
    def add_snapshot(self, actor: nn.Module, iteration: int) -> None:
        """The learner's actor joins the league, rated as the learner is now; in a full league
        the oldest snapshot leaves first."""
        bank = self.opponent.bank
        if self.size == bank.shape[0]:
            bank[:-1] = bank[1:].clone()
            for entries in (self.born, self.elo, self.wins, self.draws, self.games, self.first_play):
                if entries:
                    entries.pop(0)
            self.size -= 1
            self.opponent.assignment.sub_(1).clamp_(min=0)  # worlds keep their snapshot (the evicted one's play the next oldest)
        bank[self.size] = flat_parameters(actor).to(bank.device)
        self.size += 1
        self.born.append(iteration)
        self.elo.append(self.learner_elo)
        self.wins.append(0.0)
        self.draws.append(0.0)
        self.games.append(0.0)
        if self.game is not None:
            self.first_play.append(self.first_play_probs(actor).tolist())

    def win_rates(self) -> torch.Tensor:
        """P[learner beats snapshot] per snapshot [size]: (wins + draws / 2) / games of the
        decayed counts, 1/2 before any game (AlphaStar's payoff table)."""
        wins, draws, games = (torch.tensor(x, dtype=torch.float64) for x in (self.wins, self.draws, self.games))
        return torch.where(games > 0, (wins + 0.5 * draws) / games.clamp(min=1e-12), torch.full_like(games, 0.5))

    def sampling_probabilities(self) -> torch.Tensor:
        """The probability of each snapshot being a world's next opponent [size] (float64)."""
        if self.cfg.opponents == "latest":
            return torch.nn.functional.one_hot(torch.tensor(self.size - 1), self.size).double()
        if self.cfg.opponents == "pfsp":
            return pfsp_weights(self.win_rates(), self.cfg.pfsp_power)
        return torch.full((self.size,), 1.0 / self.size, dtype=torch.float64)

    @torch.no_grad()
    def pick_opponents(self) -> torch.Tensor:
        """Draw every env world's next opponent with the league's own generator; returns the
        assignment [num_envs] (snapshot indices)."""
        assignment = self.opponent.assignment
        drawn = torch.multinomial(self.sampling_probabilities(), assignment.numel(), replacement=True, generator=self.generator)
        assignment.copy_(drawn.to(assignment.device))
        return drawn

    def record(self, wins: torch.Tensor, draws: torch.Tensor, games: torch.Tensor) -> None:
        """A batch's results per snapshot [size] (the learner's wins, draws and games against
        each): decay and add the win statistics of the snapshots that played, and rate the batch
        (`elo_deltas`: each episode a game worth K / episodes)."""
        total = float(games.sum())
        if total == 0:
            return
        played = (games > 0).nonzero().flatten().tolist()
        decay = self.cfg.stats_decay
        for i in played:
            self.wins[i] = decay * self.wins[i] + float(wins[i])
            self.draws[i] = decay * self.draws[i] + float(draws[i])
            self.games[i] = decay * self.games[i] + float(games[i])
        scores = (wins[played] + 0.5 * draws[played]) / games[played]
        deltas = elo_deltas(
            self.learner_elo, torch.tensor([self.elo[i] for i in played], dtype=torch.float64), scores, games[played] / total, self.cfg.elo_k
        )
        self.learner_elo += float(deltas.sum())
        for i, delta in zip(played, deltas.tolist()):
            self.elo[i] -= delta

    # --- exploitability (matrix games) --------------------------------------------------------------
    @torch.no_grad()
    def first_play_probs(self, actor: nn.Module) -> torch.Tensor:
        """`actor`'s action distribution at an episode's first play [n_actions] (its mode is taken,
        so no random number is drawn)."""
        device = next(actor.parameters()).device
        td = TensorDict({(self.learner, "observation"): self.first_observation.to(device)}, batch_size=[1], device=device)
        with set_exploration_type(ExplorationType.DETERMINISTIC):
            logits = actor(td).get((self.learner, "logits"))  # [1, 1, n_actions]
        return torch.softmax(logits.reshape(-1, logits.shape[-1])[0].double(), -1).cpu()

    def mixture(self) -> torch.Tensor:
        """The league's mixed strategy at the first play: the snapshots' distributions averaged
        with the sampling probabilities [n_actions]."""
        return self.sampling_probabilities() @ torch.tensor(self.first_play, dtype=torch.float64)

    def exploitability(self, strategy: torch.Tensor) -> float:
        """Exploitability of both seats playing `strategy` in the stage game (zero at a symmetric
        Nash equilibrium)."""
        return exploitability(self.game, [strategy.numpy(), strategy.numpy()])

    # --- reporting ---------------------------------------------------------------------------------
    def metrics(self, actor: nn.Module) -> dict[str, float]:
        """`league/...` values to log after a batch: the learner's rating, the league's size and
        mean rating, and on matrix games both exploitabilities (the mixture's, the learner's)."""
        out = {"league/elo_learner": self.learner_elo, "league/size": float(self.size), "league/elo_mean": sum(self.elo) / self.size}
        if self.game is not None:
            out["league/exploitability"] = self.exploitability(self.mixture())
            out["league/exploitability_latest"] = self.exploitability(self.first_play_probs(actor))
        return out

    @torch.no_grad()
    def match(self, env: EnvBase, actor: nn.Module, first: int, second: int, steps: int, seed: int, deterministic: bool = True) -> torch.Tensor:
        """Snapshot `first` in the learner's seat against snapshot `second` in the opponent's on
        `env` for `steps` steps (every world restarts when its episode ends); returns the first's
        result in each episode that ended (`episode_results`). Runs in `isolated_rng`, and puts
        the actor's weights and the worlds' opponents back after."""
        saved, assignment = flat_parameters(actor), self.opponent.assignment.clone()
        exploration = ExplorationType.DETERMINISTIC if deterministic else ExplorationType.RANDOM
        try:
            load_flat_parameters(actor, self.opponent.bank[first])
            self.opponent.assignment.fill_(second)
            with isolated_rng(), set_exploration_type(exploration):
                env.set_seed(seed)
                torch.manual_seed(seed)
                td = env.rollout(steps, policy=TensorDictSequential(actor, self.opponent), break_when_any_done=False)
        finally:
            load_flat_parameters(actor, saved)
            self.opponent.assignment.copy_(assignment)
        return episode_results(td, self.learner, self.opponent_group)[0]

    # --- checkpointed state (the snapshots are the opponent's `bank` buffer) -----------------------
    def get_extra_state(self) -> dict:
        return {
            "size": self.size,
            "born": list(self.born),
            "elo": list(self.elo),
            "wins": list(self.wins),
            "draws": list(self.draws),
            "games": list(self.games),
            "first_play": [list(p) for p in self.first_play],
            "learner_elo": self.learner_elo,
            "generator": self.generator.get_state(),
        }

    def set_extra_state(self, state: dict) -> None:
        self.size = state["size"]
        for name in ("born", "elo", "wins", "draws", "games"):
            setattr(self, name, list(state[name]))
        self.first_play = [list(p) for p in state["first_play"]]
        self.learner_elo = state["learner_elo"]
        self.generator.set_state(state["generator"])


def _check_symmetric(learner: Group, opponent: Group, setting: str) -> None:
    """The opponent wears the learner's network: both groups must have its shapes."""
    differs = [
        (what, a, b)
        for what, a, b in (
            ("agent counts", learner.n_agents, opponent.n_agents),
            ("observation sizes", learner.obs_dim, opponent.obs_dim),
            ("action kinds", learner.action_kind, opponent.action_kind),
            ("action sizes", learner.action_dim, opponent.action_dim),
            ("action specs", type(learner.action_spec).__name__, type(opponent.action_spec).__name__),
        )
        if a != b
    ]
    if differs:
        what, a, b = differs[0]
        raise UsageError(
            f"{setting} plays snapshots of {learner.name} as {opponent.name}, which needs a symmetric game: "
            f"their {what} differ ({a} vs {b}); asymmetric games need a league per role (not built)"
        )


def _matrix_setting(env_cfg: DictConfig, learner: Group, opponent: Group, setting: str):
    """A two-player matrix game's seat swap, normal-form stage game and the learner's first
    observation; refuses payoffs that are not symmetric (u_1(a, b) = u_0(b, a))."""
    from ca12.envs.matrix import MatrixGameEnv, payoff_tensor

    payoffs = payoff_tensor(OmegaConf.to_container(env_cfg.payoffs))  # [2, A, A]
    if not torch.equal(payoffs[1], payoffs[0].T):
        raise UsageError(
            f"{setting} needs a symmetric game; matrix/{env_cfg.task}'s payoffs differ between the seats (payoffs[1] must be payoffs[0] transposed)"
        )
    n_players, n_actions = payoffs.shape[0], payoffs.shape[1]
    seats = {f"player_{i}": i for i in range(n_players)}
    seat = matrix_seat_swap(n_players, n_actions, seats[learner.name], seats[opponent.name])
    env = MatrixGameEnv(payoffs, num_envs=1, max_steps=env_cfg.max_steps, group_per_player=True)
    first = env.reset().get((learner.name, "observation"))  # [1, 1, obs_dim]
    return seat, NormalFormGame(payoffs, name=env_cfg.task), first
