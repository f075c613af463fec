"""The benchmark's chart: validation accuracy against training seconds (matplotlib, Agg)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from train.bench import summary

RACE_CHART = "time_to_accuracy.png"  # written beside the raw results
COLOURS = {"bp": "tab:blue", "sideways_pipeline": "tab:orange"}
NAMES = {"bp": "BP", "sideways_pipeline": "Sideways (pipeline)"}
MARKERS = ("o", "s", "^", "D", "v")  # one per seed


def _pyplot():
    import matplotlib  # imported here: only the chart needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def race_chart(race: Mapping, path: str | os.PathLike) -> Path:
    """Draws the race (`raw["race"]`): one panel per image size; returns the PNG's path.

    Each contender's validation accuracy at the end of each epoch against its cumulative
    training seconds, one line per seed (a marker shape per seed); the dashed lines are
    the seeds' targets (BP's final accuracy minus one point), and a cross marks where a
    contender reaches its seed's target.
    """
    plt = _pyplot()
    sizes = race["sizes"]
    fig, axes = plt.subplots(
        1, len(sizes), figsize=(4.2 * len(sizes), 3.4), sharey=True, squeeze=False
    )
    for ax, size, figures in zip(axes[0], sizes, summary.race(sizes)):
        for i, (run, seed) in enumerate(zip(summary.race_runs(size), figures["seeds"])):
            marker = MARKERS[i % len(MARKERS)]
            for name, c in run["contenders"].items():
                colour = COLOURS.get(name)
                label = f"{NAMES[name]}, seed {run['seed']}"
                ax.plot(c["seconds"], c["val_accuracy"], marker=marker, color=colour, label=label)
                reached = seed["contenders"][name]["time_to_target"]
                if reached is not None:
                    ax.plot([reached], [seed["target"]], marker="x", markersize=10, color=colour)
            ax.axhline(seed["target"], color="grey", linestyle="--", linewidth=1)
        ax.set_title(f"{size['image_size']} px")
        ax.set_xlabel("training seconds (validation excluded)")
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("validation clip accuracy")
    axes[0][0].legend(loc="lower right", fontsize="small")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # No software version in the file: the same results give the same bytes.
    fig.savefig(path, dpi=80, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path
