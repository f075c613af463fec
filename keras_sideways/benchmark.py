"""Speed and memory of Sideways against BP, measured side by side (see docs/performance.md).

`run_benchmark` is what `make bench` (train/benchmark.py) runs:

1. thread settings: BP and the Sideways pipeline timed in a fresh process per inter-/
   intra-op setting, alternating; each one's best setting is reported, and BP's best is
   used for step 2;
2. throughput: BP, Sideways batched and Sideways pipeline built in one process and timed
   in alternating rounds of full `fit` steps; ratios to BP per round, then the median;
3. memory: the peak resident memory of one training step for several clip lengths, each
   in a fresh process, minus that process's memory just before the step;
4. depth-parallel scaling: the `auto` partition of the model cut into 8 stages over 2, 4
   and 8 devices and the speed-up it predicts from measured stage costs, and the speed-up
   of the pipeline's concurrent stages measured on this machine's cores.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time

CONTENDERS = {
    "bp": dict(mode="bp"),
    "sideways_batched": dict(mode="sideways", engine="batched"),
    "sideways_pipeline": dict(mode="sideways", engine="pipeline"),
}


@dataclasses.dataclass
class Workload:
    """The reference workload of the issue, or a CI-sized one (`quick`)."""

    num_stages: int = 5
    image_size: int = 64
    channels: int = 3
    batch: int = 8
    frames: int = 16
    classes: int = 10
    width: int = 16
    steps: int = 4  # fit steps per timed round
    rounds: int = 5
    memory_lengths: tuple = (8, 32, 128)
    stream_chunk: int = 8  # the streaming pipeline takes long clips in chunks of this many
    scaling_stages: int = 8
    scaling_devices: tuple = (2, 4, 8)
    thread_settings: tuple = ((0, 0), (1, 2), (2, 1), (1, 1))

    @classmethod
    def quick(cls) -> Workload:
        return cls(
            num_stages=3,
            image_size=16,
            batch=2,
            frames=8,
            width=4,
            steps=2,
            rounds=2,
            memory_lengths=(4, 8, 16),
            stream_chunk=4,
            thread_settings=((0, 0), (1, 1)),
        )


def _tf():
    import tensorflow as tf  # deferred: thread settings must come before TensorFlow starts

    return tf


def configure_threads(inter: int, intra: int) -> None:
    """Sets TensorFlow's inter- and intra-op thread pools (0: TensorFlow's choice)."""
    tf = _tf()
    tf.config.threading.set_inter_op_parallelism_threads(inter)
    tf.config.threading.set_intra_op_parallelism_threads(intra)


def build_contender(name: str, w: Workload, num_stages: int | None = None, stateful=False):
    """The reference VGG classifier, compiled, as contender `name` trains it."""
    import keras

    from keras_sideways import models
    from keras_sideways.model import SidewaysModel

    keras.utils.set_random_seed(0)
    stages = models.vgg_classifier(w.classes, num_stages or w.num_stages, w.width)
    model = SidewaysModel(stages, stateful=stateful, **CONTENDERS[name])
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def random_batch(w: Workload, frames: int | None = None):
    """A fixed random batch of clips [batch, frames, size, size, channels] and labels."""
    import numpy as np

    rng = np.random.default_rng(0)
    shape = (w.batch, frames or w.frames, w.image_size, w.image_size, w.channels)
    return rng.random(shape, dtype=np.float32), (np.arange(w.batch) % w.classes).astype("int32")


def throughput(w: Workload, names=tuple(CONTENDERS)) -> dict:
    """Training frames per second of each contender, timed in alternating rounds of fit."""
    tf = _tf()
    video, labels = random_batch(w)
    data = tf.data.Dataset.from_tensors((video, labels)).repeat()
    models = {name: build_contender(name, w) for name in names}
    for model in models.values():  # tracing and first-run allocations
        model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)
    fps = {name: [] for name in names}
    for _ in range(w.rounds):
        for name, model in models.items():
            start = time.perf_counter()
            model.fit(data, steps_per_epoch=w.steps, epochs=1, verbose=0)
            fps[name].append(w.steps * w.batch * w.frames / (time.perf_counter() - start))
    return fps


def _memory_status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def step_memory(name: str, frames: int, w: Workload) -> dict:
    """Peak resident bytes of one training step on clips of `frames`, above the pre-step RSS.

    Run it in a fresh process. The streaming pipeline (stateful) takes the clip as
    consecutive chunks of `w.stream_chunk` frames.
    """
    streaming = name == "sideways_pipeline"
    model = build_contender(name, w, stateful=streaming)
    video, labels = random_batch(w, frames)
    chunk = min(w.stream_chunk, frames) if streaming else frames
    model.build((w.batch, chunk, w.image_size, w.image_size, w.channels))
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the high-water mark to the current RSS
        reset = True
    except OSError:
        reset = False
    before = _memory_status("VmRSS")  # after the reset: the peak cannot fall below it
    for start in range(0, frames, chunk):
        model.train_on_batch(video[:, start : start + chunk], labels)
    peak = _memory_status("VmHWM")
    return dict(bytes=peak - before, chunk=chunk, peak_reset=reset)


def stage_scaling(w: Workload) -> dict:
    """Predicted depth-parallel speed-ups of the `auto` partition, from measured stage costs."""
    tf = _tf()
    from keras_sideways import models, placement

    stages = models.vgg_classifier(w.classes, w.scaling_stages, w.width)
    frames = tf.random.uniform((w.batch, w.image_size, w.image_size, w.channels), seed=0)
    costs = placement.measure_stage_costs(stages, frames, repeats=5)
    result = dict(stage_costs_ms=[1000 * c for c in costs], partitions={})
    for devices in w.scaling_devices:
        assignment = placement.balanced_partition(costs, devices)
        result["partitions"][devices] = dict(
            assignment=assignment, predicted_speedup=placement.predicted_speedup(costs, assignment)
        )
    return result


# ------------------------------------------------------------------ subprocess plumbing
def _run_child(task: str, args: dict, inter: int = 0, intra: int = 0, timeout: int = 600) -> dict:
    """Runs `task` of this module in a fresh Python process; returns its JSON result."""
    code = (
        "import json, sys; from keras_sideways import benchmark as b; "
        "print('RESULT ' + json.dumps(b._child(*json.loads(sys.argv[1]))))"
    )
    payload = json.dumps([task, args, inter, intra])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-c", code, payload],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark child {task} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def _child(task: str, args: dict, inter: int, intra: int) -> dict:
    configure_threads(inter, intra)
    w = Workload(**{k: tuple(v) if isinstance(v, list) else v for k, v in args["w"].items()})
    if task == "fps":
        fps = throughput(w, names=(args["name"],))[args["name"]]
        return dict(fps=statistics.median(fps))
    if task == "memory":
        return step_memory(args["name"], args["frames"], w)
    if task == "throughput":
        return throughput(w)
    raise ValueError(f"Unknown benchmark task {task!r}")


def run_benchmark(w: Workload, log=print) -> dict:
    """Runs every measurement of the module docstring; returns the results as a dict."""
    args = dict(w=dataclasses.asdict(w))
    results = dict(machine=machine_info(), workload=dataclasses.asdict(w))

    log("1/4 thread settings (inter-op, intra-op), BP and pipeline, a fresh process each ...")
    sweep = {"bp": {}, "sideways_pipeline": {}}
    for inter, intra in w.thread_settings:
        for name in sweep:
            child = _run_child("fps", dict(args, name=name), inter, intra)
            sweep[name][f"{inter},{intra}"] = child["fps"]
    best = {name: max(fps, key=fps.get) for name, fps in sweep.items()}
    inter, intra = (int(x) for x in best["bp"].split(","))
    results["thread_sweep_fps"] = sweep
    results["threads"] = dict(inter_op=inter, intra_op=intra)
    results["best_threads"] = dict(
        best,
        pipeline_best_over_bp_best=sweep["sideways_pipeline"][best["sideways_pipeline"]]
        / sweep["bp"][best["bp"]],
    )

    log("2/4 throughput, contenders alternating in one process, at BP's best threads ...")
    results["throughput"] = _compare_in_one_process(args, inter, intra)
    if best["sideways_pipeline"] != best["bp"]:
        log("    ... and again at the pipeline's best threads")
        p_inter, p_intra = (int(x) for x in best["sideways_pipeline"].split(","))
        results["throughput_at_pipeline_threads"] = dict(
            threads=dict(inter_op=p_inter, intra_op=p_intra),
            contenders=_compare_in_one_process(args, p_inter, p_intra),
        )

    log("3/4 memory of one training step against clip length, a fresh process each ...")
    memory = {}
    for name in CONTENDERS:
        memory[name] = {}
        for frames in w.memory_lengths:
            memory[name][frames] = _run_child("memory", dict(args, name=name, frames=frames))
    first, last = w.memory_lengths[0], w.memory_lengths[-1]
    results["memory"] = {
        name: dict(
            mib={t: m["bytes"] / 2**20 for t, m in by_length.items()},
            growth=by_length[last]["bytes"] / max(by_length[first]["bytes"], 1),
            chunk=by_length[last]["chunk"],
        )
        for name, by_length in memory.items()
    }

    log("4/4 depth-parallel scaling ...")
    scaling = stage_scaling(w)
    serial = [_run_child("fps", dict(args, name="sideways_pipeline"), 1, 1)["fps"]]
    parallel = [_run_child("fps", dict(args, name="sideways_pipeline"), 0, 1)["fps"]]
    serial.append(_run_child("fps", dict(args, name="sideways_pipeline"), 1, 1)["fps"])
    parallel.append(_run_child("fps", dict(args, name="sideways_pipeline"), 0, 1)["fps"])
    scaling["measured_on_cores"] = dict(
        cores=os.cpu_count(),
        pipeline_fps_stages_serial=serial,
        pipeline_fps_stages_concurrent=parallel,
        speedup=statistics.mean(parallel) / statistics.mean(serial),
    )
    results["scaling"] = scaling
    return results


def _compare_in_one_process(args: dict, inter: int, intra: int) -> dict:
    """Every contender's frames/s, alternating in one fresh process, and its ratio to BP."""
    fps = _run_child("throughput", args, inter, intra)
    return {
        name: dict(
            fps_median=statistics.median(values),
            fps_rounds=values,
            ratio_to_bp=statistics.median(a / b for a, b in zip(values, fps["bp"])),
        )
        for name, values in fps.items()
    }


def machine_info() -> dict:
    """What the figures were measured on."""
    import keras

    tf = _tf()
    return dict(
        cpu=platform.processor() or platform.machine(),
        cores=os.cpu_count(),
        python=platform.python_version(),
        tensorflow=tf.__version__,
        keras=keras.__version__,
        gpus=[d.name for d in tf.config.list_physical_devices("GPU")],
    )


def format_table(results: dict) -> str:
    """The printed summary of `run_benchmark`'s results."""
    w, lines = results["workload"], []
    lines.append(
        f"workload: VGG classifier in {w['num_stages']} stages, {w['image_size']}x"
        f"{w['image_size']}x{w['channels']} frames, batch {w['batch']}, {w['frames']} frames"
    )
    t = results["threads"]
    lines.append(
        f"threads (BP's best): inter-op {t['inter_op']}, intra-op {t['intra_op']} (0: TF's choice)"
    )
    lines.append("")
    lines.append(f"{'throughput':<20}{'frames/s':>10}{'÷ BP':>8}   (one process, BP's threads)")
    for name, r in results["throughput"].items():
        lines.append(f"{name:<20}{r['fps_median']:>10.1f}{r['ratio_to_bp']:>8.3f}")
    if "throughput_at_pipeline_threads" in results:
        other = results["throughput_at_pipeline_threads"]
        t2 = other["threads"]
        lines.append(
            f"{'':<38}   (one process, pipeline's threads {t2['inter_op']},{t2['intra_op']})"
        )
        for name, r in other["contenders"].items():
            lines.append(f"{name:<20}{r['fps_median']:>10.1f}{r['ratio_to_bp']:>8.3f}")
    b, sweep = results["best_threads"], results["thread_sweep_fps"]
    lines.append("thread sweep, frames/s by (inter-op, intra-op), one fresh process each:")
    for name, fps in sweep.items():
        cells = ", ".join(f"({k}) {v:.1f}" for k, v in fps.items())
        lines.append(f"  {name}: {cells}; best ({b[name]})")
    lines.append(f"  pipeline at its best ÷ BP at its best: {b['pipeline_best_over_bp_best']:.3f}")
    lines.append("")
    lengths = list(next(iter(results["memory"].values()))["mib"])
    head = "".join(f"{f'T={t}':>10}" for t in lengths)
    lines.append(f"{'step memory (MiB)':<36}{head}{'growth':>9}")
    for name, r in results["memory"].items():
        label = name + (
            f" streaming, chunks of {r['chunk']}" if name == "sideways_pipeline" else ""
        )
        cells = "".join(f"{r['mib'][t]:>10.1f}" for t in lengths)
        lines.append(f"{label:<36}{cells}{r['growth']:>9.2f}")
    lines.append("")
    s = results["scaling"]
    costs = ", ".join(f"{c:.1f}" for c in s["stage_costs_ms"])
    lines.append(f"stage costs, fwd+bwd of one tick (ms): {costs}")
    for devices, p in s["partitions"].items():
        lines.append(
            f"  {devices} devices: auto partition {p['assignment']}, predicted speed-up "
            f"{p['predicted_speedup']:.2f}"
        )
    m = s["measured_on_cores"]
    lines.append(
        f"  measured on {m['cores']} CPU cores: pipeline with concurrent stages ÷ serial "
        f"stages = {m['speedup']:.2f}"
    )
    return "\n".join(lines)


def write_json(results: dict, path: str) -> None:
    """Writes the results to `path` atomically (a temporary file, then a rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=2, default=str)
    os.replace(tmp, path)


def format_markdown(results: dict, command: str) -> str:
    """docs/performance.md: the figures of `results`, how they were made, which engine when."""
    m, w, t = results["machine"], results["workload"], results["throughput"]
    b, memory, s = results["best_threads"], results["memory"], results["scaling"]
    four = s["partitions"].get(4) or s["partitions"].get("4")
    lines = [
        "# Performance: Sideways against BP",
        "",
        f"Generated by `{command}` (do not edit by hand: rerun it).",
        "",
        f"Machine: {m['cores']} CPU cores ({m['cpu']}), GPUs: {', '.join(m['gpus']) or 'none'}; "
        f"Python {m['python']}, TensorFlow {m['tensorflow']}, Keras {m['keras']}.",
        f"Workload: the VGG-style classifier of `keras_sideways.models` in {w['num_stages']} "
        f"stages, {w['image_size']}x{w['image_size']}x{w['channels']} frames, batch "
        f"{w['batch']}, {w['frames']} frames, Adam, full `fit` steps.",
        "",
        "## Throughput (training frames per second)",
        "",
        "Contenders alternate in rounds in one process; a ratio is the median over rounds of",
        "the contender's frames/s over BP's in the same round.",
        "",
        "| contender | frames/s | ÷ BP | threads (inter-op, intra-op) |",
        "|---|---|---|---|",
    ]
    threads = results["threads"]
    for name, r in t.items():
        lines.append(
            f"| {name} | {r['fps_median']:.1f} | {r['ratio_to_bp']:.3f} | "
            f"{threads['inter_op']}, {threads['intra_op']} (BP's best) |"
        )
    other = results.get("throughput_at_pipeline_threads")
    if other:
        ot = other["threads"]
        for name, r in other["contenders"].items():
            lines.append(
                f"| {name} | {r['fps_median']:.1f} | {r['ratio_to_bp']:.3f} | "
                f"{ot['inter_op']}, {ot['intra_op']} (the pipeline's best) |"
            )
    lines += [
        "",
        "Thread settings, each timed in a fresh process (0 = TensorFlow's choice):",
        "",
        "| contender | " + " | ".join(next(iter(results["thread_sweep_fps"].values()))) + " |",
        "|---|" + "---|" * len(next(iter(results["thread_sweep_fps"].values()))),
    ]
    for name, fps in results["thread_sweep_fps"].items():
        lines.append(f"| {name} | " + " | ".join(f"{v:.1f}" for v in fps.values()) + " |")
    lines += [
        "",
        f"Each at its own best setting, the pipeline runs at "
        f"**{b['pipeline_best_over_bp_best']:.2f}×** BP's frames/s (pipeline "
        f"({b['sideways_pipeline']}), BP ({b['bp']})). The thread pools are fixed per process",
        "when TensorFlow starts, so one process cannot give each contender its best setting:",
        "with one inter-op thread the pipeline's stages cannot run at the same time.",
        "",
        "## Memory of one training step against clip length",
        "",
        "Peak resident memory of one step minus that of the same fresh process just before it.",
        f"The streaming pipeline (`stateful=True`) takes a long clip as consecutive chunks of "
        f"{memory['sideways_pipeline']['chunk']} frames.",
        "",
        "| contender | "
        + " | ".join(f"T={k} (MiB)" for k in memory["bp"]["mib"])
        + " | last ÷ first |",
        "|---|" + "---|" * (len(memory["bp"]["mib"]) + 1),
    ]
    for name, r in memory.items():
        cells = " | ".join(f"{v:.1f}" for v in r["mib"].values())
        lines.append(f"| {name} | {cells} | {r['growth']:.2f} |")
    lines += [
        "",
        "## Depth-parallel scaling",
        "",
        f"Measured forward+backward time of one tick for each stage of the model cut into "
        f"{w['scaling_stages']} stages (ms): "
        + ", ".join(f"{c:.2f}" for c in s["stage_costs_ms"])
        + ".",
        "",
        "| devices | `auto` partition (device of each stage) | predicted speed-up |",
        "|---|---|---|",
    ]
    for devices, p in s["partitions"].items():
        lines.append(f"| {devices} | {p['assignment']} | {p['predicted_speedup']:.2f} |")
    c = s["measured_on_cores"]
    lines += [
        "",
        f"A pipeline tick costs its slowest device's stages, so the prediction is the total "
        f"cost over the slowest device's share. On this machine's {c['cores']} cores, the "
        f"pipeline with its stages running concurrently (inter-op threads = cores, one "
        f"intra-op thread) ran **{c['speedup']:.2f}×** as fast as with its stages "
        f"serialised (one inter-op thread).",
        "",
        "## Which engine when",
        "",
        '- One device, clips that fit in memory: `engine="batched"` (the default). It runs '
        "the pipeline's maths as one forward and one backward pass per stage over all "
        "frames: BP's cost and memory, Sideways' pseudo-gradients.",
        "- Several devices, or several cores whose ops are too small to use them all: "
        '`engine="pipeline"` with `placement`, or with inter-op threads >= stages on a '
        "CPU. Every stage works at every tick; the speed-up is bounded by the slowest "
        "device's share of the stage costs (the table above).",
        '- Long or endless videos: `engine="pipeline"` with `stateful=True`, chunks of a '
        "few frames: memory stays flat in video length, where BP and the batched engine "
        "grow with it.",
    ]
    if four:
        lines += [
            "",
            f"The `auto` partition of the 8-stage model over 4 devices predicts "
            f"{four['predicted_speedup']:.2f}×.",
        ]
    if not m["gpus"]:
        lines += [
            "",
            "No GPU was available to the session that produced these figures; GPU figures "
            "are still to be added with the same command on a GPU machine.",
        ]
    return "\n".join(lines) + "\n"
