"""Drives the league of self-play (ca12/selfplay/league.py) between training iterations.

MAPPO/IPPO/PPO return it from `configure_callbacks` when `algo.league.opponents` is set, so it
is not an entry of the `callbacks` config section: it belongs to the algorithm, and a run with a
league always has it. Each iteration:

1. before the batch is collected (`on_train_epoch_start`: Lightning calls it before the
   dataloader collects), every env world draws the snapshot it plays;
2. after the update (`on_train_batch_end`), the batch's finished episodes are match results
   against their worlds' snapshots (summed over DDP ranks), every `snapshot_every` iterations
   the learner's actor joins the league, and `league/...` is logged with the iteration's metrics
   (`league/win_rate`: the learner's score over the batch's episodes, NaN when none ended).

All the state lives in the league (the module's state_dict), so this callback keeps none.
"""

from __future__ import annotations

import lightning as L
import torch

from ca12.selfplay.league import episode_results


class LeagueCallback(L.Callback):
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.league.pick_opponents()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        league = pl_module.league
        results, worlds = episode_results(batch, league.learner, league.opponent_group)
        assignment = league.opponent.assignment.to(worlds.device)
        snapshot = assignment[worlds % assignment.numel()]  # the snapshot each episode was played against
        counts = torch.zeros(3, league.size, dtype=torch.float64, device=results.device)  # wins, draws, games per snapshot
        for row, value in enumerate(((results == 1).double(), (results == 0.5).double(), torch.ones_like(results))):
            counts[row].index_add_(0, snapshot, value)
        wins, draws, games = trainer.strategy.reduce(counts, reduce_op="sum").cpu()
        league.record(wins, draws, games)
        iteration = pl_module.iterations + 1  # the module counts this iteration after its callbacks ran
        if iteration % league.cfg.snapshot_every == 0:
            league.add_snapshot(pl_module.actors[league.learner], iteration)
        total = float(games.sum())
        win_rate = float(wins.sum() + 0.5 * draws.sum()) / total if total else float("nan")
        pl_module.log_metrics({**league.metrics(pl_module.actors[league.learner]), "league/win_rate": win_rate})
