"""The study's figures, drawn from the summary of `summary.summarize` (matplotlib, Agg)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from train.results import replacing
from train.study.config import MODE_LABELS, MODES

MODE_COLOURS = {"bp": "tab:blue", "sideways": "tab:orange"}
PLOT_NAMES = (
    "accuracy_vs_stride",
    "training_curves",
    "accuracy_vs_depth",
    "accuracy_vs_clip_length",
    "reconstructions",
    "fidelity_vs_stride",
)


def _pyplot():
    import matplotlib  # imported here: only the study plots

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    with replacing(path) as tmp:  # an interrupted plot leaves the last one whole
        fig.savefig(tmp, dpi=80, bbox_inches="tight")
    _pyplot().close(fig)
    return path.name


def _stride_axis(ax, strides) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(strides))
    ax.set_xticklabels([str(s) for s in strides])
    ax.set_xlabel("temporal stride (source frames between clip frames)")


def write_plots(results: dict, out_dir: str | os.PathLike, shown: dict) -> dict[str, str]:
    """Writes the study's PNG plots into `out_dir`; returns {plot name: file name}.

    Args:
        results: the results of a finished study with their "summary"
            (`summary.summarize`).
        out_dir: where the PNG files go.
        shown: the arrays of reconstructions.npz: "input", "bp" and "sideways" clips.
    """
    plt = _pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings, summary = results["settings"], results["summary"]
    files = {}
    figures = (
        ("accuracy_vs_stride", _accuracy_vs_stride),
        ("training_curves", _training_curves),
        ("accuracy_vs_depth", _accuracy_vs_depth),
        ("accuracy_vs_clip_length", _accuracy_vs_clip_length),
        ("fidelity_vs_stride", _fidelity_vs_stride),
    )
    for name, draw in figures:
        files[name] = _save(draw(plt, settings, summary), out_dir / f"{name}.png")
    files["reconstructions"] = _save(
        _reconstructions(plt, settings, shown), out_dir / "reconstructions.png"
    )
    if summary.get("fixes"):
        files["stash_depth"] = _save(
            _stash_depth(plt, summary["fixes"]), out_dir / "stash_depth.png"
        )
    realtime = summary.get("realtime") or {}
    if realtime and not np.isnan(realtime["ratio"]):
        files["realtime"] = _save(_realtime(plt, realtime), out_dir / "realtime.png")
    optional = ("stash_depth", "realtime")
    return {name: files[name] for name in (*PLOT_NAMES, *optional) if name in files}


def _realtime(plt, realtime: dict):
    """Test MSE after each pass of the stream against its wall-clock, both methods."""
    pass_seconds = realtime["stream_clips"] * realtime["clip"][1] / realtime["rate"]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for mode in MODES:
        curve = realtime[mode]["curve"]
        mean, std = np.asarray(curve["mean"]), np.asarray(curve["std"])
        seconds = pass_seconds * np.arange(1, len(mean) + 1)
        label = f"{MODE_LABELS[mode]} ({100 * realtime['keep'][mode]:.0f}% of the clips)"
        ax.plot(seconds, mean, marker="o", color=MODE_COLOURS[mode], label=label)
        ax.fill_between(seconds, mean - std, mean + std, color=MODE_COLOURS[mode], alpha=0.2)
    ax.set_xlabel(f"stream wall-clock (s), at {realtime['rate']:.0f} training frames/s")
    ax.set_ylabel("test MSE")
    ax.set_yscale("log")
    ax.set_title("Real time: the slower method skips clips (mean ± std over seeds)", fontsize=9)
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def _stash_depth(plt, fixes: dict):
    """The gap to BP and the memory a stash adds, against the stash depth."""
    memory = fixes["stash_memory"]
    depths = list(next(iter(memory.values())))
    fig, (gaps, sizes) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key, row in fixes["points"].items():
        stride, stages = key.split("/")
        columns = ["sideways" if d == "0" else f"stash {d}" for d in depths]
        (line,) = gaps.plot(
            range(len(depths)),
            [row[c]["gap"] for c in columns],
            marker="o",
            label=f"stride {stride}, {stages} stages",
        )
        drained = [(j, f"stash {d} + drain") for j, d in enumerate(depths)]
        drained = [(j, c) for j, c in drained if c in row]
        if drained:  # the same depths with the drain, dashed (their memory is the same)
            gaps.plot(
                [j for j, _ in drained],
                [row[c]["gap"] for _, c in drained],
                marker="s",
                linestyle="--",
                color=line.get_color(),
            )
    gaps.axhline(0.0, color="grey", linewidth=0.8)
    gaps.set_ylabel("Sideways − BP, test accuracy (points)")
    gaps.set_title("solid: no drain; dashed: with the drain", fontsize=8)
    for ax in (gaps, sizes):
        ax.set_xticks(range(len(depths)))
        ax.set_xticklabels(depths)
        ax.set_xlabel("stash depth")
    gaps.legend(fontsize=7)
    width = 0.8 / len(memory)
    for i, (stages, by_depth) in enumerate(memory.items()):
        sizes.bar(
            [j + (i - (len(memory) - 1) / 2) * width for j in range(len(depths))],
            [by_depth[d] / 2**20 for d in depths],
            width=width,
            label=f"{stages} stages",
        )
    sizes.set_ylabel("memory the stash adds (MiB, one step's batch)")
    sizes.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _errorbars(ax, summary: dict, key: str, xs) -> None:
    for mode in MODES:
        points = [summary[key][str(x)][mode]["accuracy"] for x in xs]
        ax.errorbar(
            xs,
            [p["mean"] for p in points],
            yerr=[p["std"] for p in points],
            marker="o",
            capsize=3,
            color=MODE_COLOURS[mode],
            label=MODE_LABELS[mode],
        )


def _accuracy_vs_stride(plt, settings: dict, summary: dict):
    strides = settings["strides"]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    _errorbars(ax, summary, "stride", strides)
    _stride_axis(ax, strides)
    ax.set_ylabel("test clip accuracy")
    ax.set_title(f"Moving digits, {settings['num_stages']} stages (mean ± std over seeds)")
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def _training_curves(plt, settings: dict, summary: dict):
    strides = settings["strides"]
    fig, axes = plt.subplots(
        2, len(strides), figsize=(2.6 * len(strides), 4.6), sharex=True, sharey="row", squeeze=False
    )
    epochs = np.arange(1, settings["epochs"] + 1)
    rows = (("val_accuracy", "test accuracy"), ("loss", "train loss"))
    for j, s in enumerate(strides):
        for i, (key, label) in enumerate(rows):
            ax = axes[i][j]
            for mode in MODES:
                curve = summary["stride"][str(s)][mode]["curves"][key]
                mean, std = np.asarray(curve["mean"]), np.asarray(curve["std"])
                ax.plot(epochs, mean, color=MODE_COLOURS[mode], label=MODE_LABELS[mode])
                ax.fill_between(epochs, mean - std, mean + std, color=MODE_COLOURS[mode], alpha=0.2)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel(label)
            if i == 0:
                ax.set_title(f"stride {s}")
            else:
                ax.set_xlabel("epoch")
    axes[0][0].legend()
    return fig


def _accuracy_against(plt, summary: dict, key: str, xs, xlabel: str, title: str, log2: bool):
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    _errorbars(ax, summary, key, xs)
    if log2:
        ax.set_xscale("log", base=2)
    ax.set_xticks(list(xs))
    ax.set_xticklabels([str(x) for x in xs])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test clip accuracy")
    ax.set_title(title + " (mean ± std over seeds)", fontsize="medium")
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def _accuracy_vs_depth(plt, settings: dict, summary: dict):
    title = f"Moving digits, stride {settings['depth_stride']}, clips of {settings['clip_length']}"
    return _accuracy_against(
        plt, summary, "depth", settings["depths"], "number of stages L", title, log2=False
    )


def _accuracy_vs_clip_length(plt, settings: dict, summary: dict):
    title = f"Moving digits, stride 1, {settings['num_stages']} stages"
    xlabel = "training clip length T (same frames and steps)"
    return _accuracy_against(
        plt, summary, "clip_length", settings["clip_lengths"], xlabel, title, log2=True
    )


def _fidelity_vs_stride(plt, settings: dict, summary: dict):
    strides = settings["strides"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    for key, ax, label in (
        ("cosine", axes[0], "cosine(Sideways, BP)"),
        ("norm_ratio", axes[1], "||Sideways|| / ||BP||"),
    ):
        table = np.asarray(
            [summary["stride"][str(s)]["fidelity"].get(key, []) for s in strides], np.float64
        )
        for k in range(table.shape[1] if table.ndim == 2 else 0):
            if np.all(np.isnan(table[:, k])):
                continue  # a stage without weights
            colour = plt.cm.viridis(k / max(1, table.shape[1] - 1))
            ax.plot(strides, table[:, k], marker="o", color=colour, label=f"stage {k}")
        means = [
            summary["stride"][str(s)]["fidelity"].get(f"{key}_mean", {}).get("mean", np.nan)
            for s in strides
        ]
        ax.plot(strides, means, color="black", linewidth=2.5, linestyle="--", label="mean")
        _stride_axis(ax, strides)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_title("Cosine per stage (stage k pairs frames 2(L-1-k) apart)")
    axes[1].set_title("Norm ratio per stage (1: same size)")
    axes[1].legend(fontsize="small")
    ax = axes[2]
    for i, x in enumerate(strides):
        by_step = summary["stride"][str(x)]["fidelity_by_step"]
        colour = plt.cm.plasma(i / max(1, len(strides)))
        ax.plot(
            by_step["steps"], by_step["cosine_mean"], marker="o", color=colour, label=f"stride {x}"
        )
    ax.set_xlabel("training step")
    ax.set_ylabel("cosine, mean over stages")
    ax.set_title("Along training (Sideways runs)")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def _reconstructions(plt, settings: dict, shown: dict):
    """Rows: input, BP, Sideways; columns: a few frames of one test clip per video."""
    step = max(1, settings["video_clip_length"] // 4)
    frames = list(range(0, settings["video_clip_length"], step))[:4]
    rows = [("input", "input")] + [(mode, MODE_LABELS[mode]) for mode in MODES]
    num_clips = len(shown["input"])
    height, width = settings["video_size"]
    columns = num_clips * len(frames)
    fig, axes = plt.subplots(
        len(rows),
        columns,
        figsize=(1.5 * columns * width / height * 0.6, 1.5 * len(rows) * 0.6 + 0.4),
        squeeze=False,
    )
    for i, (key, label) in enumerate(rows):
        for c in range(num_clips):
            for f, frame in enumerate(frames):
                ax = axes[i][c * len(frames) + f]
                ax.imshow(np.clip(shown[key][c, frame], 0.0, 1.0), interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_title(f"{settings['videos'][c]} t={frame}", fontsize=7)
                if c == 0 and f == 0:
                    ax.set_ylabel(label, fontsize=8)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return fig
