"""The figures and tables of the benchmark, from its raw results (pure: no TensorFlow).

`summarize` computes every figure once, formatted, so the terminal text and the page
(`report`) show the same numbers.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Mapping, Sequence

LABELS = {"bp": "BP's best", "sideways_pipeline": "the pipeline's best"}


@dataclasses.dataclass(frozen=True)
class Table:
    """A header and rows of formatted cells: what each renderer of `report` draws."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclasses.dataclass(frozen=True)
class Summary:
    """Formatted figures for the templates, the tables, and which optional parts apply."""

    figures: dict[str, str]
    tables: dict[str, Table]
    conditions: dict[str, bool]


def best_setting(fps_by_setting: Mapping[str, Sequence[float]]) -> str:
    """The thread setting ("inter,intra") with the highest median frames/s; the first if tied."""
    return max(fps_by_setting, key=lambda setting: statistics.median(fps_by_setting[setting]))


def throughput(fps: Mapping[str, Sequence[float]]) -> dict[str, dict[str, float]]:
    """Each contender's median frames/s, and the median over rounds of its ratio to BP's."""
    return {
        name: dict(
            fps=statistics.median(rounds),
            ratio_to_bp=statistics.median(a / b for a, b in zip(rounds, fps["bp"])),
        )
        for name, rounds in fps.items()
    }


def memory(steps: Sequence[Mapping]) -> dict:
    """MiB of one step per clip length, the last length's over the first's, the last chunk."""
    return dict(
        mib=[step["bytes"] / 2**20 for step in steps],
        growth=steps[-1]["bytes"] / max(steps[0]["bytes"], 1),
        chunk=steps[-1]["chunk"],
    )


def core_speedup(serial: Sequence[Sequence[float]], concurrent: Sequence[Sequence[float]]) -> float:
    """Mean over processes of the pipeline's median frames/s, concurrent stages over serial."""
    medians = lambda runs: statistics.mean(statistics.median(rounds) for rounds in runs)
    return medians(concurrent) / medians(serial)


def _threads(setting: str) -> str:
    return setting.replace(",", ", ")


def throughput_table(raw: Mapping) -> Table:
    """Frames/s and ratio to BP of every contender, at each thread setting timed."""
    rows = []
    for timed in raw["throughput"]:
        threads = f"{_threads(timed['threads'])} ({LABELS[timed['best_for']]})"
        for name, r in throughput(timed["fps"]).items():
            rows.append((name, f"{r['fps']:.1f}", f"{r['ratio_to_bp']:.3f}", threads))
    header = ("contender", "frames/s", "÷ BP", "threads (inter-op, intra-op)")
    return Table(header, tuple(rows))


def thread_sweep_table(raw: Mapping) -> Table:
    """Median frames/s of each swept contender at each thread setting."""
    sweep = raw["thread_sweep"]
    settings = tuple(next(iter(sweep.values())))
    rows = tuple(
        (name, *(f"{statistics.median(fps[s]):.1f}" for s in settings))
        for name, fps in sweep.items()
    )
    return Table(("contender", *settings), rows)


def memory_table(raw: Mapping) -> Table:
    """MiB of one training step per contender and clip length, and the growth."""
    lengths = [step["frames"] for step in next(iter(raw["memory"].values()))]
    rows = []
    for name, steps in raw["memory"].items():
        m = memory(steps)
        rows.append((name, *(f"{mib:.1f}" for mib in m["mib"]), f"{m['growth']:.2f}"))
    header = ("contender", *(f"T={t} (MiB)" for t in lengths), "last ÷ first")
    return Table(header, tuple(rows))


def partition_table(raw: Mapping) -> Table:
    """The `auto` partition over each device count, and its predicted speed-up."""
    rows = tuple(
        (str(p["devices"]), str(p["assignment"]), f"{p['predicted_speedup']:.2f}")
        for p in raw["scaling"]["partitions"]
    )
    header = ("devices", "`auto` partition (device of each stage)", "predicted speed-up")
    return Table(header, rows)


def summarize(raw: Mapping) -> Summary:
    """Every figure of the page and the terminal summary, formatted, from the raw results."""
    machine, workload, scaling = raw["machine"], raw["workload"], raw["scaling"]
    sweep = raw["thread_sweep"]
    best = {name: best_setting(fps) for name, fps in sweep.items()}
    best_fps = {name: statistics.median(sweep[name][best[name]]) for name in best}
    four = [p for p in scaling["partitions"] if p["devices"] == 4]
    figures = dict(
        command=raw["command"],
        cores=str(machine["cores"]),
        cpu=machine["cpu"],
        gpus=", ".join(machine["gpus"]) or "none",
        python=machine["python"],
        tensorflow=machine["tensorflow"],
        keras=machine["keras"],
        bp_best=best["bp"],
        pipeline_best=best["sideways_pipeline"],
        pipeline_best_over_bp_best=f"{best_fps['sideways_pipeline'] / best_fps['bp']:.2f}",
        stream_chunk=str(memory(raw["memory"]["sideways_pipeline"])["chunk"]),
        stage_costs_ms=", ".join(f"{c:.2f}" for c in scaling["stage_costs_ms"]),
        scaling_cores=str(scaling["cores"]),
        core_speedup=f"{core_speedup(scaling['serial_fps'], scaling['concurrent_fps']):.2f}",
        four_devices_speedup=f"{four[0]['predicted_speedup']:.2f}" if four else "",
    )
    for field in ("num_stages", "image_size", "channels", "batch", "frames", "scaling_stages"):
        figures[field] = str(workload[field])
    tables = dict(
        throughput=throughput_table(raw),
        thread_sweep=thread_sweep_table(raw),
        memory=memory_table(raw),
        partitions=partition_table(raw),
    )
    return Summary(figures, tables, dict(four_devices=bool(four), no_gpu=not machine["gpus"]))
