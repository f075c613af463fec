"""The race's chart: validation accuracy against training seconds (matplotlib, Agg)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from train.results import replacing

MARKERS = ("o", "s", "^", "D", "v")  # one per seed
TARGET_RACE_CHART = "race.png"  # `python -m train.race`'s, beside its raw results
TARGET_COLOURS = {"bp": "tab:blue", "sideways": "tab:orange", "sideways_paper": "tab:green"}


def _pyplot():
    import matplotlib  # imported here: only the chart needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def target_race_chart(raw: Mapping, path: str | os.PathLike) -> Path:
    """Draws the race to a fixed accuracy (`race.json`): a panel per point (image sizes
    across, depths down); returns the PNG's path.

    For each contender and seed, the run that counts (`race_summary.choose_budget`): its
    validation accuracy at the end of each epoch against its cumulative training seconds
    (a marker shape per seed); the dashed line is the target, and a cross marks where a
    run reaches it.
    """
    from train.bench import race_summary

    plt = _pyplot()
    points = race_summary.race(raw)
    sizes, depths = raw["points"]["image_sizes"], raw["points"]["stages"]
    fig, axes = plt.subplots(
        len(depths),
        len(sizes),
        figsize=(4.2 * len(sizes), 3.4 * len(depths)),
        sharey=True,
        squeeze=False,
    )
    target = raw["workload"]["target"]
    for point in points:
        ax = axes[depths.index(point["num_stages"])][sizes.index(point["image_size"])]
        for i, (seed, contenders) in enumerate(point["seeds"].items()):
            for name, c in contenders.items():
                run, colour = c["run"], TARGET_COLOURS.get(name)
                label = f"{race_summary.NAMES.get(name, name)}, seed {seed}"
                marker = MARKERS[i % len(MARKERS)]
                ax.plot(
                    run["seconds"], run["val_accuracy"], marker=marker, color=colour, label=label
                )
                if c["time_to_target"] is not None:
                    reached = [c["time_to_target"]], [target]
                    ax.plot(*reached, marker="x", markersize=10, color=colour)
        ax.axhline(target, color="grey", linestyle="--", linewidth=1)
        ax.set_title(f"{point['image_size']} px, {point['num_stages']} stages")
        ax.set_xlabel("training seconds (validation excluded)")
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel("validation clip accuracy")
    axes[0][0].legend(loc="lower right", fontsize="x-small")
    path = Path(path)
    with replacing(path) as tmp:  # an interrupted chart leaves the last one whole
        # No software version in the file: the same results give the same bytes.
        fig.savefig(tmp, dpi=80, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path
