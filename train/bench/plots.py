"""The benchmark's chart: validation accuracy against training seconds (matplotlib, Agg)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from train.bench import summary

RACE_CHART = "time_to_accuracy.png"  # written beside the raw results
COLOURS = {"bp": "tab:blue", "sideways_pipeline": "tab:orange"}
NAMES = {"bp": "BP", "sideways_pipeline": "Sideways (pipeline)"}


def _pyplot():
    import matplotlib  # imported here: only the chart needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def race_chart(race: Mapping, path: str | os.PathLike) -> Path:
    """Draws the race (`raw["race"]`): one panel per image size; returns the PNG's path.

    Each contender's validation accuracy at the end of each epoch against its cumulative
    training seconds; the dashed line is the target (BP's final accuracy minus one
    point), and a cross marks where each contender reaches it.
    """
    plt = _pyplot()
    sizes = race["sizes"]
    fig, axes = plt.subplots(
        1, len(sizes), figsize=(4.2 * len(sizes), 3.4), sharey=True, squeeze=False
    )
    for ax, size, figures in zip(axes[0], sizes, summary.race(sizes)):
        for name, c in size["contenders"].items():
            colour = COLOURS.get(name)
            ax.plot(c["seconds"], c["val_accuracy"], marker="o", color=colour, label=NAMES[name])
            reached = figures["contenders"][name]["time_to_target"]
            if reached is not None:
                ax.plot([reached], [figures["target"]], marker="x", markersize=10, color=colour)
        ax.axhline(figures["target"], color="grey", linestyle="--", linewidth=1)
        ax.set_title(f"{size['image_size']} px")
        ax.set_xlabel("training seconds (validation excluded)")
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("validation clip accuracy")
    axes[0][0].legend(loc="lower right")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # No software version in the file: the same results give the same bytes.
    fig.savefig(path, dpi=80, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path
