"""A comparison's outputs: the markdown report, the files in the output folder (report.md,
summary.json, the plots) and their W&B run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from omegaconf import OmegaConf

from ca12.analysis.plots import write_plots
from ca12.analysis.report import ALL_ENVS, Comparison
from ca12.analysis.statistics import ESTIMATES
from ca12.errors import UsageError
from ca12.paths import conf_dir


def markdown(comparison: Comparison, images: Mapping[str, list[str]] | None = None) -> str:
    """The report: per table its estimates, probabilities of improvement and (given) image
    links; then the runs with their scores."""
    n_runs = len({run for t in comparison.tables if t.name != ALL_ENVS for g in t.groups for run in g.runs})
    lines = [
        "# ca12 comparison",
        "",
        f"{n_runs} runs. Intervals: {comparison.confidence:.0%} stratified bootstrap (rliable), "
        f"{comparison.reps} resamples, NumPy seed {comparison.seed}. IQM: the mean of the middle 50 % of the runs' scores; "
        "median: of the runs' scores in an env, of the envs' mean scores in all envs; optimality gap: mean shortfall below the target.",
        "",
    ]
    lines += [line for note in comparison.notes for line in (f"**Note:** {note}.", "")]
    for table in comparison.tables:
        gap = f"optimality gap (target {table.target:g})" if table.target is not None else "optimality gap"
        lines += [
            f"## {table.name}",
            "",
            f"Score: {table.scoring}.",
            "",
            f"| algorithm | runs | IQM | mean | median | {gap} |",
            "|---|---:|---|---|---|---|",
        ]
        for group in table.groups:
            runs = f"{len(group.scores)} per env" if table.name == ALL_ENVS else str(len(group.scores))
            cells = [str(group.estimates[name]) if name in group.estimates else "n/a (no target)" for name in ESTIMATES]
            lines.append(f"| {group.algo} | {runs} | " + " | ".join(cells) + " |")
        if table.improvements:
            lines += ["", "Probability of improvement:", "", "| X | Y | P(X > Y) |", "|---|---|---|"]
            lines += [f"| {i.x} | {i.y} | {i.probability} |" for i in table.improvements]
        if table.name != ALL_ENVS and not table.frames:
            lines += ["", "No learning curves: the runs share no frame range."]
        if images and images.get(table.name):
            lines += [""] + [f"![{Path(image).stem}]({image})" for image in images[table.name]]
        lines.append("")
    lines += ["## Runs", "", "| env | algorithm | seed | score | run |", "|---|---|---:|---:|---|"]
    for table in comparison.tables:
        if table.name != ALL_ENVS:
            for group in table.groups:
                lines += [
                    f"| {table.name} | {group.algo} | {s} | {score[0]:.4f} | {run} |" for run, s, score in zip(group.runs, group.seeds, group.scores)
                ]
    return "\n".join(lines) + "\n"


def write_outputs(comparison: Comparison, out: str | Path) -> list[Path]:
    """report.md, summary.json and the PNGs in `out` (created); returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images = write_plots(comparison, out)
    (out / "report.md").write_text(markdown(comparison, images))
    (out / "summary.json").write_text(json.dumps(comparison.to_dict(), indent=1))
    return [out / "report.md", out / "summary.json"] + [out / name for names in images.values() for name in names]


def log_to_wandb(comparison: Comparison, files: list[Path], out: Path) -> str | None:
    """Log the table and the plots to a new W&B run (job type `compare`) in the project of the
    runs that logged to W&B, or conf/logger/wandb.yaml's; its mode is resolved as ca12.fit's
    (`ca12.run.tracking.wandb_mode`). Returns the W&B run's folder, None when W&B is disabled."""
    try:
        import wandb
    except ImportError:
        raise UsageError("--wandb needs the wandb package: pip install wandb") from None

    from ca12.run.tracking import wandb_mode

    settings = comparison.wandb or OmegaConf.to_container(OmegaConf.load(conf_dir() / "logger" / "wandb.yaml").wandb)
    mode = wandb_mode(settings.get("mode") or "auto")
    if mode == "disabled":
        return None
    rows = comparison.rows()
    columns = list(rows[0])
    run = wandb.init(
        project=settings["project"],
        entity=settings.get("entity"),
        dir=str(out),
        mode=mode,
        job_type="compare",
        name=f"compare-{out.parent.name}",
        config={"reps": comparison.reps, "seed": comparison.seed, "confidence": comparison.confidence},
        settings=wandb.Settings(silent=True, init_timeout=60),
    )
    run.log(
        {
            "compare/estimates": wandb.Table(columns=columns, data=[[row[c] for c in columns] for row in rows]),
            **{f"compare/{path.stem}": wandb.Image(str(path)) for path in files if path.suffix == ".png"},
        }
    )
    folder = str(Path(run.dir).parent)
    run.finish()
    return folder
