"""Scoring a saved run, or a family's classical baseline, on evaluation episodes: what
`python -m ca12.evaluate`, `Run.evaluate` (ca12/api.py), the notebook and the benchmarks call.

A checkpoint is rebuilt by `ca12.run.rundir.load_module` (the safe loader, the config checked as
data); the episodes are the `Evaluator`'s (ca12/data/evaluator.py), on the seed a run's
evaluation uses, so a baseline and a trained policy are compared on equal terms.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf

from ca12.data.evaluator import EVAL_SEED_OFFSET, Evaluator, check_rollout_fits, save_gif, success_rate
from ca12.envs import family_baselines, family_renders, make_env
from ca12.errors import UsageError
from ca12.run.config import load_config
from ca12.run.rundir import load_module
from ca12.sections import MAX_SEED
from ca12.seeding import isolated_rng


def _episodes(cfg, episodes: int | None) -> int:
    """`--episodes`, or the config's `eval.episodes`; refused unless positive, or when its rollout
    cannot fit in memory (`check_rollout_fits`, one world an episode; not checked up to the
    config's own `eval.episodes`, which runs evaluate with)."""
    if episodes is not None and episodes <= 0:
        raise UsageError(f"--episodes must be positive, got {episodes}")
    if episodes is None or episodes <= cfg.eval.episodes:
        return cfg.eval.episodes if episodes is None else episodes
    check_rollout_fits(cfg.env, episodes, cfg.seed)
    return episodes


def _run(evaluator, policy, video: Path | None, trace: bool = False):
    """`evaluator`'s episodes with `policy`, the first written to `video` as a GIF when asked
    (`trace`: keep the first step by step, `EvalResult.trace`); a video of an env that cannot
    render is refused before any episode runs."""
    family = evaluator.env_cfg.family
    if video is not None and not family_renders(family):
        raise UsageError(f"--video: {family}/{evaluator.env_cfg.task} cannot render (the {family} family draws no frames); leave --video out")
    result = evaluator.run(policy, render=video is not None, trace=trace)
    if video is not None:
        save_gif(result.frames, video)
    return result


def load_policy(path: Path):
    """(module, run config, the checkpoint's ca12 section) of the checkpoint at `path` (file or run
    directory), the module's weights loaded, on the CPU (`ca12.run.rundir.load_module`)."""
    module, cfg, checkpoint = load_module(path)
    return module, cfg, checkpoint["ca12"]


def evaluate(path: Path, episodes: int | None = None, deterministic: bool = True, video: Path | None = None, trace: bool = False):
    """Load the checkpoint at `path` (file or run directory) and run evaluation episodes."""
    module, cfg, saved = load_policy(path)
    evaluator = Evaluator(cfg.env, _episodes(cfg, episodes), cfg.seed, deterministic, cfg.algo.groups, module.env_transforms())
    module.to(evaluator.env.device)
    return _run(evaluator, module.policy, video, trace), saved


def evaluate_against(path: Path, opponent: str, episodes: int | None = None):
    """(match result, the checkpoint's ca12 section) of the run at `path`, a turn-based board
    game's (`pettingzoo/tictactoe`, `pettingzoo/connect_four`), playing `episodes` games against
    the classical player `opponent` (ca12/selfplay/opponents.py), half of them moving first."""
    import numpy as np

    from ca12.selfplay.board_games import GAMES
    from ca12.selfplay.opponents import opponent_player, play_matches

    module, cfg, saved = load_policy(path)
    if cfg.env.family != "pettingzoo" or cfg.env.task not in GAMES:
        raise UsageError(f"--opponent plays the board games ({', '.join(f'pettingzoo/{g}' for g in GAMES)}), not {cfg.env.family}/{cfg.env.task}")
    games = _episodes(cfg, episodes)
    seed = (cfg.seed + EVAL_SEED_OFFSET) % (MAX_SEED + 1)
    game = GAMES[cfg.env.task]
    player = opponent_player(opponent, game, cfg.env.task, np.random.default_rng(seed))
    with isolated_rng():
        env = make_env(OmegaConf.merge(cfg.env, {"num_envs": games, "device": "cpu"}), seed, transforms=module.env_transforms())
        torch.manual_seed(seed)
        return play_matches(module.policy.cpu(), env, "player", game, player, opponent, cfg.env.max_steps), saved


def evaluate_baseline(
    name: str, env: str, overrides: list[str], seed: int = 0, episodes: int | None = None, video: Path | None = None, trace: bool = False
):
    """Run `env`'s baseline policy `name` (its family's `BASELINES`) through the `Evaluator` a
    run with `seed` would use; `overrides` are `env.KEY=VALUE` settings."""
    if "/" not in env:
        raise UsageError(f"--env expects FAMILY/TASK, got {env!r}")
    not_env = [text for text in overrides if not text.startswith("env.")]
    if not_env:
        raise UsageError(f"a baseline takes env settings only (env.KEY=VALUE), got {not_env[0]!r}")
    baselines = family_baselines(env.split("/")[0])
    if name not in baselines:
        offered = ", ".join(sorted(baselines)) or "none"
        raise UsageError(f"unknown baseline {name!r} for {env}; its family offers: {offered}")
    cfg = load_config("mappo", env, overrides, seed)  # the env section as a run of any algorithm composes it
    evaluator = Evaluator(cfg.env, _episodes(cfg, episodes), cfg.seed, deterministic=True)
    return _run(evaluator, baselines[name](evaluator.env), video, trace)


def checkpoint_success_rate(path: str | Path, episodes: int = 500, deterministic: bool = True) -> float:
    """Success rate over `episodes` episodes of a trained run (its run directory or checkpoint
    file) on an env that writes `("stats", "success")` (comm/traffic_junction, comm/predator_prey),
    on the evaluation seed of `ca12.data.evaluator.Evaluator`: every run of a seed plays the
    same episodes."""
    module, cfg, _ = load_module(path)
    with isolated_rng():
        env = make_env(
            OmegaConf.merge(cfg.env, {"num_envs": episodes, "device": "cpu"}), cfg.seed + EVAL_SEED_OFFSET, transforms=module.env_transforms()
        )
        if ("stats", "success") not in env.full_observation_spec.keys(True):
            raise UsageError(f"{path} was trained on {cfg.env.family}/{cfg.env.task}, which reports no success (no ('stats', 'success') entry)")
        torch.manual_seed(cfg.seed + EVAL_SEED_OFFSET)
        return success_rate(module.policy.cpu(), env, deterministic)
