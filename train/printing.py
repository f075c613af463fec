"""What the training commands print about a run: its closing lines, a comparison table,
and the line on its thread pools (also written to TensorBoard by `train.recipe`).

They read the summary `train.recipe.train_and_evaluate` returns (or writes to
`summary.json`).
"""

from __future__ import annotations

from typing import Any

from keras_sideways import threads

COUNTERS = ("skipped_updates", "loss_scale_skips")  # fit's counts of skipped steps, not scores


def threads_text(record: dict[str, Any]) -> str:
    """One line on the thread pools of `builders.apply_threads`' record (logs, summaries)."""
    used = threads.Threads(record["inter"], record["intra"])
    engine = "BP" if record["engine"] == "bp" else f"the {record['engine']} engine"
    line = f"{used.describe()} (config.threads {record['setting']!r}, {engine}"
    line += f", {record['cores']} cores"
    if str(used) != record["resolved"]:
        line += f"; it asked for {record['resolved']}, but TensorFlow was already running"
    return line + ")"


def comparison_table(summaries: dict[str, dict]) -> str:
    """Validation figures of several runs side by side, one column per run."""
    first = next(iter(summaries.values()))
    metrics = [k for k in first["validation"] if k not in COUNTERS]
    lines = [f"{'validation':<12}" + "".join(f"{name:>12}" for name in summaries)]
    for metric in metrics:
        values = "".join(f"{s['validation'][metric]:>12.4f}" for s in summaries.values())
        lines.append(f"{metric:<12}" + values)
    return "\n".join(lines)


def settings_text(settings: dict) -> str:
    """Sideways' stash, drain and delay lines in words, with their costs
    (`recipe._sideways_settings`)."""
    stash = settings["stash"]
    if settings["exact"]:
        what = "full stash and drain (BP's gradient, pipelined)"
    elif not any(stash):
        what = "no stash (the paper's Sideways)" + (", drained" if settings["drain"] else "")
    else:
        what = f"stash {stash}" + (", drained" if settings["drain"] else "")
    costs = []
    if any(stash):
        costs.append(f"stash {size(settings['stash_bytes'])} when run tick by tick")
    if settings["drain"]:
        costs.append(
            f"+{count(settings['tail_ticks'], 'tick')} per clip of {settings['clip_length']}"
        )
    relays = settings.get("relays", 0)  # summaries written before delay lines have none
    if relays:
        costs.append(f"{count(relays, 'relay')} holding the skips (delay lines)")
    return what + (f"; {', '.join(costs)}" if costs else "")


def count(number: int, noun: str) -> str:
    """`number` `noun`s, in the singular for 1: "1 epoch", "3 epochs"."""
    return f"{number} {noun}{'s' * (number != 1)}"


def size(num_bytes: int) -> str:
    """Bytes in KiB below a MiB, else in MiB: "40.0 KiB", "3.5 MiB" (not "0.0 MiB")."""
    if num_bytes < 2**20:
        return f"{num_bytes / 2**10:.1f} KiB"
    return f"{num_bytes / 2**20:.1f} MiB"


def summary_lines(summary: dict) -> list[str]:
    """The closing lines of a run: headline figures and where everything went."""
    scores = ", ".join(
        f"{k} {v:.4f}" for k, v in summary["validation"].items() if k not in COUNTERS
    )
    how = summary["mode"] if summary["mode"] == "bp" else f"sideways ({summary['engine']} engine)"
    if summary.get("engine") == "pipeline":
        chunk = summary.get("pipeline_chunk")
        how = how[:-1] + (
            ", tick by tick)" if chunk is None else f", blocks of {count(chunk, 'tick')})"
        )
    if summary.get("precision", "float32") != "float32":
        how = f"{how}, {summary['precision']}"
    epochs = count(summary["epochs"], "epoch")
    first = summary.get("first_epoch", 1)  # summaries written before it have none
    if first > summary["epochs"]:  # stopped after its training, in evaluation or export
        epochs += " (resumed after the last)"
    elif first > 1:
        epochs += f" (resumed at epoch {first})"
    lines = [f"{summary['name']}: {how}, {epochs}; validation {scores}"]
    if summary.get("sideways"):
        lines.append(f"  settings:     {settings_text(summary['sideways'])}")
    return lines + [
        f"  threads:      {threads_text(summary['threads'])}",
        f"  TensorBoard:  tensorboard --logdir {summary['tensorboard']}",
        f"  checkpoints:  {summary['checkpoints']}",
        f"  SavedModel:   {summary['export'] or 'none (config.export_dir is empty)'}",
    ]
