"""The figures and tables of the benchmark, from its raw results (pure: no TensorFlow).

`summarize` computes every figure once, formatted, so the terminal text and the page
(`report`) show the same numbers.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Mapping, Sequence

LABELS = {"bp": "BP's best", "sideways_pipeline": "the pipeline's best"}
MIXED_PRECISIONS = ("mixed_bfloat16", "mixed_float16")  # contender name suffixes
CHUNK_TICKS = "sideways_pipeline_chunk1"  # the blocks step's tick-by-tick contender


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


def time_to(seconds: Sequence[float], accuracy: Sequence[float], target: float) -> float | None:
    """Training seconds at which `accuracy` first reaches `target`; None if it never does.

    Accuracy is measured at the end of each epoch (cumulative `seconds`). Between the last
    epoch below the target and the first at or above it, the time is interpolated
    linearly; reached at the first epoch, it is the first epoch's time (nothing is
    measured before it).
    """
    before = None
    for t, a in zip(seconds, accuracy):
        if a >= target:
            if before is None:
                return t
            t0, a0 = before
            return t0 + (t - t0) * (target - a0) / (a - a0)
        before = (t, a)
    return None


def contender_precision(name: str) -> tuple[str, str]:
    """("bp", "mixed_bfloat16") for "bp_mixed_bfloat16"; a plain name is float32."""
    for precision in MIXED_PRECISIONS:
        if name.endswith(f"_{precision}"):
            return name[: -len(precision) - 1], precision
    return name, "float32"


def _timed_at_its_best(raw: Mapping, name: str, base: str) -> Mapping | None:
    """The throughput rounds that timed `name`: those at `base`'s best threads if they did,
    else the first that did; None if none did."""
    timed = [t for t in raw["throughput"] if name in t["fps"] and base in t["fps"]]
    best = [t for t in timed if t["best_for"] == base]
    return (best or timed or [None])[0]


def precision_table(raw: Mapping) -> Table:
    """Each mixed-precision contender's frames/s (at its float32 self's best threads, where
    timed there) and MiB at the longest clip, each also over its float32 self's."""
    steps = raw["memory"]
    timed_names = [n for t in raw["throughput"] for n in t["fps"]]
    names = dict.fromkeys(
        n for n in [*timed_names, *steps] if contender_precision(n)[1] != "float32"
    )
    rows = []
    for name in names:
        base, precision = contender_precision(name)
        speed = ratio = threads = mib = growth = "–"
        timed = _timed_at_its_best(raw, name, base)
        if timed is not None:
            fps = timed["fps"]
            speed = f"{statistics.median(fps[name]):.1f}"
            ratio = f"{statistics.median(a / b for a, b in zip(fps[name], fps[base])):.3f}"
            threads = _threads(timed["threads"])
        if name in steps and base in steps:
            mib = f"{steps[name][-1]['bytes'] / 2**20:.1f}"
            growth = f"{steps[name][-1]['bytes'] / max(steps[base][-1]['bytes'], 1):.2f}"
        rows.append((base, precision, speed, ratio, threads, mib, growth))
    longest = next(iter(steps.values()))[-1]["frames"]
    header = (
        "contender",
        "precision",
        "frames/s",
        "÷ float32",
        "threads",
        f"T={longest} (MiB)",
        "÷ float32",
    )
    return Table(header, tuple(rows))


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


def chunk_label(name: str) -> str:
    """A blocks-step contender's row label: its ticks per block, "auto", or "BP"."""
    if name == "bp":
        return "BP"
    if name == "sideways_pipeline":
        return "auto"
    chunk = name.rsplit("chunk", 1)[1]
    return f"{chunk} (tick by tick)" if chunk == "1" else chunk


def blocks_table(raw: Mapping) -> Table:
    """Frames/s and ratio to BP of the pipeline at each chunk size (step 3)."""
    rows = tuple(
        (chunk_label(name), f"{r['fps']:.1f}", f"{r['ratio_to_bp']:.3f}")
        for name, r in throughput(raw["blocks"]["fps"]).items()
    )
    return Table(("ticks per block", "frames/s", "÷ BP"), rows)


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


def machine_figures(raw: Mapping) -> dict[str, str]:
    """The command and the machine of raw results, as the pages print them."""
    machine = raw["machine"]
    return dict(
        command=raw["command"],
        cores=str(machine["cores"]),
        cpu=machine["cpu"],
        gpus=", ".join(machine["gpus"]) or "none",
        python=machine["python"],
        tensorflow=machine["tensorflow"],
        keras=machine["keras"],
    )


def summarize(raw: Mapping) -> Summary:
    """Every figure of the page and the terminal summary, formatted, from the raw results."""
    machine, workload, scaling = raw["machine"], raw["workload"], raw["scaling"]
    sweep = raw["thread_sweep"]
    best = {name: best_setting(fps) for name, fps in sweep.items()}
    best_fps = {name: statistics.median(sweep[name][best[name]]) for name in best}
    four = [p for p in scaling["partitions"] if p["devices"] == 4]
    figures = dict(
        **machine_figures(raw),
        bp_best=best["bp"],
        pipeline_best=best["sideways_pipeline"],
        pipeline_best_over_bp_best=f"{best_fps['sideways_pipeline'] / best_fps['bp']:.2f}",
        stream_chunk=str(memory(raw["memory"]["sideways_pipeline_stream"])["chunk"]),
        stage_costs_ms=", ".join(f"{c:.2f}" for c in scaling["stage_costs_ms"]),
        scaling_cores=str(scaling["cores"]),
        core_speedup=f"{core_speedup(scaling['serial_fps'], scaling['concurrent_fps']):.2f}",
        four_devices_speedup=f"{four[0]['predicted_speedup']:.2f}" if four else "",
    )
    for field in ("num_stages", "image_size", "channels", "batch", "frames", "scaling_stages"):
        figures[field] = str(workload[field])
    figures["memory_process"] = (
        "the same fresh process"
        if workload.get("memory_process_per_step", True)  # results from before the field
        else "the same process (one process for every step, a new model each)"
    )
    tables = dict(
        throughput=throughput_table(raw),
        thread_sweep=thread_sweep_table(raw),
        memory=memory_table(raw),
        partitions=partition_table(raw),
    )
    if "blocks" in raw:
        b = raw["blocks"]
        figures.update(
            blocks_threads=_threads(b["threads"]),
            auto_chunk=str(b["auto_chunk"]),
            pipeline_ticks_over_bp=f"{throughput(b['fps'])[CHUNK_TICKS]['ratio_to_bp']:.2f}"
            if CHUNK_TICKS in b["fps"]
            else "not timed",
        )
        tables["blocks"] = blocks_table(raw)
    mixed = bool(precision_table(raw).rows)  # results written before it have none
    if mixed:
        tables["precision"] = precision_table(raw)
    conditions = dict(
        four_devices=bool(four),
        no_gpu=not machine["gpus"],
        blocks="blocks" in raw,
        mixed=mixed,
    )
    return Summary(figures, tables, conditions)
