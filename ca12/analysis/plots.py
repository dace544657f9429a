"""The comparison's plots, drawn with rliable's plotting functions (matplotlib): per table the
learning curves with interval bands, the interval estimates and the performance profiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ca12.analysis.report import Comparison, Table, slug
from ca12.analysis.statistics import ESTIMATES


def write_plots(comparison: Comparison, out: Path) -> dict[str, list[str]]:
    """Per table, the PNGs (rliable's plotting functions, drawn with matplotlib): learning curves
    with interval bands, interval estimates, performance profiles. Returns table -> file names."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from rliable import plot_utils

    labels = sorted({g.algo for t in comparison.tables for g in t.groups})
    colors = dict(zip(labels, sns.color_palette("colorblind", n_colors=len(labels))))
    written: dict[str, list[str]] = {}

    def save(fig, table: Table, kind: str) -> None:
        name = f"{slug(table.name)}_{kind}.png"
        fig.savefig(out / name, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.setdefault(table.name, []).append(name)

    for table in comparison.tables:
        algos = [g.algo for g in table.groups]
        unit = "normalised score" if table.normalised else "return"
        if table.curves:
            fig, ax = plt.subplots(figsize=(7, 5))
            bands = {c.algo: np.array([c.low, c.high]) if c.low is not None else np.array([c.iqm, c.iqm]) for c in table.curves}
            plot_utils.plot_sample_efficiency_curve(
                np.array(table.frames),
                {c.algo: np.array(c.iqm) for c in table.curves},
                bands,
                algorithms=algos,
                colors=colors,
                ax=ax,
                xlabel="frames",
                ylabel=f"IQM {unit}",
                labelsize="large",
                ticklabelsize="large",
                marker="",
                legend=True,
                legendsize="medium",
            )
            ax.set_title(table.name)
            save(ax.figure, table, "curves")
        names = [n for n in ESTIMATES if n in table.groups[0].estimates]
        points = {g.algo: np.array([g.estimates[n].value for n in names]) for g in table.groups}
        intervals = {
            g.algo: np.array(
                [
                    [
                        g.estimates[n].low if g.estimates[n].low is not None else g.estimates[n].value,
                        g.estimates[n].high if g.estimates[n].high is not None else g.estimates[n].value,
                    ]
                    for n in names
                ]
            ).T
            for g in table.groups
        }
        height = max(1.6, 0.45 * len(algos))  # inches; rliable's default rows are too short for few algorithms
        fig, _ = plot_utils.plot_interval_estimates(
            points,
            intervals,
            metric_names=names,
            algorithms=algos,
            colors=colors,
            row_height=height / len(algos),
            xlabel_y_coordinate=-0.55 / height,
            xlabel=f"{table.name}: {unit}",
        )
        save(fig, table, "intervals")
        fig, ax = plt.subplots(figsize=(7, 5))
        plot_utils.plot_performance_profiles(
            {p.algo: np.array(p.fraction) for p in table.profiles},
            np.array(table.taus),
            {p.algo: np.array([p.low, p.high]) for p in table.profiles if p.low is not None},
            ax=ax,
            colors=colors,
            xlabel=rf"{unit} ($\tau$)",
            legend=True,
            legendsize="medium",
            labelsize="large",
            ticklabelsize="large",
        )
        ax.set_title(table.name)
        save(ax.figure, table, "profile")
    return written
