"""Stages on two worker processes against one process with the same cores, measured.

    python -m train.cluster_bench                  # measure, then write the page's section
    python -m train.cluster_bench --report_only    # the section again, from the raw results
    python -m train.cluster_bench --config=train/bench/config.py:quick --json=/tmp/c.json \
        --docs=/tmp/distributed.md

On this machine: two `train.worker` processes on loopback, each with one intra- and one
inter-op thread (and with --pin, pinned to a core of its own by taskset), hold the stages
of the benchmark's model (train/bench/config.py: its stages, frame size, batch and clip),
placed by `placement="auto"`, which this process trains through TensorFlow's runtime.
Against it, on both cores: the same pipeline in this process (2 inter-op threads, 1
intra-op: its stages side by side, in as many blocks), the two alternating round by
round, and BP in a fresh process (TensorFlow's default threads). It records:

- the largest relative difference between the pseudo-gradients of the two pipelines;
- the time to move one tick's activation and error across the stage boundary and back
  (an exchange between the workers, less the same calls within one worker), and one
  block's;
- training frames/s of each, in alternating rounds (the machine is shared: the ratios of
  neighbouring rounds are what to read), and the load average around them;
- the stage costs and boundary tensors of the benchmark's deeper cut (`scaling_stages`),
  the N-machine speed-up they predict with each device also paying the measured transfers
  of its boundaries (not overlapped: a floor), and the link bandwidth a boundary needs
  for its transfers to keep pace with the pipelined tick.

The reference workload (train/bench/config.py as it is) writes its raw results to
docs/performance/cluster.json and regenerates the section "Measured: stages on two
processes" of docs/distributed.md from them (train/cluster_bench.md.template). Any other
workload writes bench/cluster.json and no section, unless --json and --docs say otherwise;
so does --report_only of raw results other than the committed ones. Bad values and raw
results that are not this command's are one line of error (exit status 1).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import string
import subprocess
import sys
import time
from pathlib import Path

from absl import app, flags, logging

from train import child_process, command_line, results

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = Path(__file__).with_name("cluster_bench.md.template")
BEGIN, END = "<!-- cluster_bench: begin -->", "<!-- cluster_bench: end -->"

_CONFIG = command_line.define_config_file(
    "config", "train/bench/config.py", "The benchmark's workload.", lock_config=True
)
REFERENCE_JSON = "docs/performance/cluster.json"
REFERENCE_DOCS = "docs/distributed.md"
OTHER_JSON = "bench/cluster.json"
RAW_KEYS = ("machine", "workload", "repeats", "scaling")  # what the summary reads

_JSON = flags.DEFINE_string(
    "json", "", f"Raw results. Default: {REFERENCE_JSON} (reference workload), else {OTHER_JSON}."
)
_DOCS = flags.DEFINE_string(
    "docs",
    "",
    f"The page whose section to write. Default: {REFERENCE_DOCS} (reference workload), else none.",
)
_REPEATS = flags.DEFINE_integer("repeats", 2, "Alternating runs of each contender.")
_REPORT_ONLY = flags.DEFINE_bool("report_only", False, "Measure nothing: rewrite the section.")
_PIN = flags.DEFINE_bool("pin", False, "Pin each worker to a core of its own (taskset).")


# ----------------------------------------------------------------- in fresh processes
def _model(config, mode="sideways", placement=None, num_stages=None):
    import keras

    from keras_sideways import SidewaysModel, models

    keras.utils.set_random_seed(0)
    stages = models.vgg_classifier(config.classes, num_stages or config.num_stages, config.width)
    model = SidewaysModel(stages, mode=mode, engine="pipeline", placement=placement)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def _fps(model, config, rounds):
    import tensorflow as tf

    from train.bench.runs import fit_fps, random_batch

    data = tf.data.Dataset.from_tensors(random_batch(config)).repeat()
    frames = config.batch * config.frames
    return fit_fps({"m": model}, data, frames, config.steps, rounds)["m"]


def local_run(args: dict) -> dict:
    """A child's work: "bp" (frames/s) or "scaling" (the deeper cut's stage costs and output
    shapes)."""
    import ml_collections

    config = ml_collections.ConfigDict(args["config"])
    if args["task"] == "scaling":
        return _scaling(config)
    return dict(fps=_fps(_model(config, mode="bp"), config, config.rounds))


def _scaling(config) -> dict:
    import tensorflow as tf

    from keras_sideways import models, placement

    stages = models.vgg_classifier(config.classes, config.scaling_stages, config.width)
    size = config.image_size
    frames = tf.random.uniform((config.batch, size, size, config.channels), seed=0)
    costs = placement.measure_stage_costs(stages, frames, repeats=5)
    shapes, x = [], frames
    for stage in stages:
        x = stage(x)
        shapes.append(list(x.shape))
    return dict(stage_costs_s=costs, output_shapes=shapes)


# ----------------------------------------------------------------- the workers
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_workers(count: int = 2, pin: bool = False) -> tuple[dict, list]:
    """`count` train.worker processes on loopback, one thread each (`pin`: and a core of its
    own, by taskset where there is one)."""
    spec = {"worker": [f"127.0.0.1:{_free_port()}" for _ in range(count)]}
    cores = os.cpu_count() or 1
    processes = []
    for index in range(count):
        pinned = ["taskset", "-c", str(index % cores)] if pin and shutil.which("taskset") else []
        processes.append(
            subprocess.Popen(
                pinned
                + [sys.executable, "-m", "train.worker", "--cluster", json.dumps(spec)]
                + ["--index", str(index), "--threads", "1"],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                env=dict(os.environ, PYTHONPATH=str(ROOT)),
            )
        )
    for process in processes:
        process.stdout.readline()  # "serving at ..."
    return spec, processes


def exchange_seconds(a: str, b: str, shape, trips: int = 16, repeats: int = 7) -> float:
    """Seconds to move a float32 tensor of `shape` from device a to b and back (an
    activation up, an error down): `trips` dependent round trips in one call, less the same
    chain with both ends on a, over `trips` (so the call's own cost cancels); the median of
    `repeats`."""
    import tensorflow as tf

    def chain(far: str):
        @tf.function
        def exchange(x):
            for _ in range(trips):
                with tf.device(far):
                    x = x + 1.0  # the activation arrives
                with tf.device(a):
                    x = x - 1.0  # the error goes back
            return tf.reduce_sum(x[..., :1])

        return exchange

    with tf.device(a):
        x = tf.random.uniform(shape)
    near, far = chain(a), chain(b)
    near(x).numpy(), far(x).numpy()  # tracing, first allocations
    differences = []
    for _ in range(repeats):
        start = time.perf_counter()
        near(x).numpy()
        middle = time.perf_counter()
        far(x).numpy()
        differences.append((time.perf_counter() - middle) - (middle - start))
    return max(statistics.median(differences) / trips, 0.0)


def pipelines(config, rounds: int) -> dict:
    """In this (connected) process: the pipeline with its stages on the workers, and in this
    process alone, their gradients compared and their frames/s in alternating rounds."""
    import numpy as np
    import tensorflow as tf

    from keras_sideways import cluster
    from train.bench.runs import fit_fps, random_batch

    remote = _model(config, placement="auto")  # balanced over the workers
    local = _model(config)
    batch = random_batch(config)
    got = [np.asarray(g) for g in remote.compute_gradients(*batch)]
    expected = [np.asarray(g) for g in local.compute_gradients(*batch)]
    errors = [
        float(np.linalg.norm(g - e) / max(np.linalg.norm(e), 1e-30)) for g, e in zip(got, expected)
    ]
    devices, placement = cluster.task_devices(), remote.devices
    cut = placement.index(devices[1]) - 1  # the last stage on task 0
    shape = _stage_output_shape(remote, cut, config)
    chunk = remote.resolved_chunk(config.frames)
    data = tf.data.Dataset.from_tensors(batch).repeat()
    load = os.getloadavg()[0]
    parts = step_parts({"cross_process": remote, "in_process": local}, batch, rounds)
    fps = fit_fps(
        {"cross_process": remote, "in_process": local},
        data,
        config.batch * config.frames,
        config.steps,
        rounds,
    )
    return dict(
        placement=placement,
        chunk=chunk,
        in_process_chunk=local.resolved_chunk(config.frames),
        gradient_rel_error=max(errors),
        gradients_identical=all(np.array_equal(g, e) for g, e in zip(got, expected)),
        boundary_shape=shape,
        tick_exchange_s=exchange_seconds(devices[0], devices[1], shape),
        block_exchange_s=exchange_seconds(devices[0], devices[1], [chunk * shape[0], *shape[1:]]),
        load_before=load,
        load_after=os.getloadavg()[0],
        **fps,
        **parts,
    )


def step_parts(models: dict, batch, rounds: int) -> dict:
    """Seconds of each model's pseudo-gradients alone and of a whole train step on `batch`,
    the models alternating, `rounds` times (after a warm-up each): where a step's time goes.
    """
    import tensorflow as tf

    video, labels = (tf.constant(x) for x in batch)
    times = {f"{name}_{part}_s": [] for name in models for part in ("gradients", "step")}
    for model in models.values():
        model.train_on_batch(video, labels)
    for _ in range(rounds):
        for name, model in models.items():
            gradients = model._gradient_fns[model.mode]  # compute_gradients' traced function
            start = time.perf_counter()
            [g.numpy() for g in gradients(video, labels, None)[1]]
            times[f"{name}_gradients_s"].append(time.perf_counter() - start)
            start = time.perf_counter()
            model.train_on_batch(video, labels)
            times[f"{name}_step_s"].append(time.perf_counter() - start)
    return times


def _stage_output_shape(model, k: int, config) -> list:
    """The shape of stage k's output for one tick's frames."""
    size = config.image_size
    shape = (config.batch, size, size, config.channels)
    for stage in model.stages[: k + 1]:
        shape = stage.compute_output_shape(shape)
    return list(shape)


def boundary_exchanges(config, scaling: dict) -> dict:
    """Measured loopback exchanges of the deeper cut's stage outputs: one tick's of every
    stage, and for each machine count one block's of each boundary of its `auto`
    partition (blocks as `pipeline_chunk="auto"` cuts a clip over that many machines)."""
    from keras_sideways import cluster, options, placement

    a, b = cluster.task_devices()
    shapes, costs = scaling["output_shapes"], scaling["stage_costs_s"]
    blocks = []
    for devices in config.scaling_devices:
        assignment = placement.balanced_partition(costs, devices)
        cuts = [k for k in range(len(costs) - 1) if assignment[k] != assignment[k + 1]]
        chunk = options.resolve_chunk("auto", config.frames, False, True, devices, len(costs))
        exchanges = [exchange_seconds(a, b, [chunk * shapes[k][0], *shapes[k][1:]]) for k in cuts]
        blocks.append(dict(devices=devices, chunk=chunk, cuts=cuts, exchange_s=exchanges))
    return dict(tick_exchange_s=[exchange_seconds(a, b, shape) for shape in shapes], blocks=blocks)


def measure(config, repeats: int, pin: bool, log) -> dict:
    """Every figure of the module docstring; returns the raw results."""
    from train.bench.runs import machine_info

    args = dict(config=config.to_dict())
    raw = dict(machine=machine_info(), workload=config.to_dict(), pinned=pin, repeats=[])
    spec, workers = start_workers(pin=pin)
    try:
        from keras_sideways import cluster

        cluster.connect(spec)
        log("scaling: the deeper cut's stage costs and boundary exchanges ...")
        raw["scaling"] = child_process.run(
            "train.cluster_bench:local_run", dict(args, task="scaling")
        )
        raw["scaling"].update(boundary_exchanges(config, raw["scaling"]))
        for r in range(repeats):
            both = pipelines(config, config.rounds)
            log(
                f"repeat {r}: cross-process {_median_fps(both['cross_process'])} frames/s, "
                f"in-process {_median_fps(both['in_process'])} (load {both['load_before']:.1f})"
            )
            bp = child_process.run("train.cluster_bench:local_run", dict(args, task="bp"))
            log(f"repeat {r}: BP {_median_fps(bp['fps'])} frames/s")
            raw["repeats"].append(dict(pipelines=both, bp=bp))
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
    return raw


def _median_fps(fps: list) -> str:
    return f"{statistics.median(fps):.0f}"


# ----------------------------------------------------------------- figures and the page
def summarize(raw: dict) -> dict:
    """The figures of the section, from the raw results (pure)."""
    from keras_sideways import placement

    median = statistics.median
    runs = [r["pipelines"] for r in raw["repeats"]]
    # Round by round: each cross-process round over the in-process round beside it.
    ratios = [c / i for r in runs for c, i in zip(r["cross_process"], r["in_process"])]
    bp = [median(r["bp"]["fps"]) for r in raw["repeats"]]
    over_bp = [median(r["cross_process"]) / b for r, b in zip(runs, bp)]
    last = runs[-1]
    workload, scaling = raw["workload"], raw["scaling"]
    costs, exchanges = scaling["stage_costs_s"], scaling["tick_exchange_s"]
    shapes = scaling["output_shapes"]
    predictions = []
    for blocks in scaling["blocks"]:
        devices, chunk = blocks["devices"], blocks["chunk"]
        assignment = placement.balanced_partition(costs, devices)
        loads = [0.0] * devices
        for cost, d in zip(costs, assignment):
            loads[d] += cost
        cuts = blocks["cuts"]
        by_block = dict(zip(cuts, blocks["exchange_s"]))
        tick = max(loads)

        needed = max((2 * 4 * _size(shapes[k]) / tick for k in cuts), default=0.0)
        predictions.append(
            dict(
                devices=devices,
                chunk=chunk,
                no_transfers=sum(costs) / tick,
                ticks=_speedup(costs, loads, assignment, {k: exchanges[k] for k in cuts}),
                blocks=_speedup(costs, loads, assignment, {k: by_block[k] / chunk for k in cuts}),
                largest_tick_exchange_ms=1000 * max((exchanges[k] for k in cuts), default=0.0),
                largest_block_exchange_ms=1000 * max(blocks["exchange_s"], default=0.0),
                link_mbytes_s=needed / 1e6,
            )
        )
    shape = last["boundary_shape"]
    return dict(
        gradient_rel_error=max(r["gradient_rel_error"] for r in runs),
        identical=all(r["gradients_identical"] for r in runs),
        ratio=median(ratios),
        ratio_range=(min(ratios), max(ratios)),
        over_bp=median(over_bp),
        in_fps=[median(r["in_process"]) for r in runs],
        cross_fps=[median(r["cross_process"]) for r in runs],
        bp_fps=bp,
        load=[r["load_before"] for r in runs],
        placement=[d.split("/")[-2].replace("task:", "") for d in last["placement"]],
        parts_ms={
            key: 1000 * median([x for r in runs for x in r[f"{key}_s"]])
            for key in (
                "cross_process_gradients",
                "in_process_gradients",
                "cross_process_step",
                "in_process_step",
            )
        },
        boundary_shape=shape,
        boundary_kib=4 * _size(shape) / 1024,
        chunk=last["chunk"],
        in_chunk=last["in_process_chunk"],
        tick_exchange_ms=[1000 * r["tick_exchange_s"] for r in runs],
        block_exchange_ms=[1000 * r["block_exchange_s"] for r in runs],
        predictions=predictions,
        scaling_stages=workload["scaling_stages"],
        stage_costs_ms=[1000 * c for c in costs],
        exchange_ms=[1000 * e for e in exchanges],
    )


def _speedup(costs, loads, assignment, exchanges: dict) -> float:
    """One machine's tick over the slowest machine's, each paying the `exchanges` (seconds
    per tick, by the stage below the boundary) of its boundaries, not overlapped."""
    ticks = list(loads)
    for k, seconds in exchanges.items():  # both ends of a boundary pay its exchange
        ticks[assignment[k]] += seconds
        ticks[assignment[k + 1]] += seconds
    return sum(costs) / max(ticks)


def _size(shape) -> int:
    count = 1
    for n in shape:
        count *= n
    return count


def section(raw: dict, figures: dict, raw_path: str = REFERENCE_JSON) -> str:
    """The section of docs/distributed.md, from train/cluster_bench.md.template; it names
    `raw_path` as the raw results."""
    w, f = raw["workload"], figures
    fmt = lambda values, spec=".0f": ", ".join(format(v, spec) for v in values)  # noqa: E731
    rows = "\n".join(
        f"| {p['devices']} | {p['no_transfers']:.2f} | {p['ticks']:.2f} "
        f"({p['largest_tick_exchange_ms']:.2f} ms) | {p['blocks']:.2f} (blocks of "
        f"{p['chunk']}: {p['largest_block_exchange_ms']:.2f} ms) | {p['link_mbytes_s']:.3g} MB/s "
        f"({8 * p['link_mbytes_s'] / 1000:.2g} Gbit/s) |"
        for p in f["predictions"]
    )
    four = next((p for p in f["predictions"] if p["devices"] == 4), f["predictions"][-1])
    return string.Template(TEMPLATE.read_text()).substitute(
        command=raw.get("command", "python -m train.cluster_bench"),
        raw_path=raw_path,
        cores=raw["machine"]["cores"],
        tensorflow=raw["machine"]["tensorflow"],
        stages=w["num_stages"],
        image=w["image_size"],
        channels=w["channels"],
        batch=w["batch"],
        frames=w["frames"],
        rel_error=f"{f['gradient_rel_error']:.1e}",
        identical="bit-identical" if f["identical"] else "not bit-identical",
        ratio=f"{f['ratio']:.2f}",
        ratio_range=fmt(f["ratio_range"], ".2f"),
        rounds=len(f["in_fps"]) * w["rounds"],
        load=fmt(f["load"], ".1f"),
        pinned="pinned to a core each by taskset" if raw.get("pinned") else "not pinned",
        placement=",".join(f["placement"]),
        in_chunk=f["in_chunk"],
        over_bp=f"{f['over_bp']:.2f}",
        in_fps=fmt(f["in_fps"]),
        cross_fps=fmt(f["cross_fps"]),
        bp_fps=fmt(f["bp_fps"]),
        grads_cross=f"{f['parts_ms']['cross_process_gradients']:.0f}",
        grads_in=f"{f['parts_ms']['in_process_gradients']:.0f}",
        step_cross=f"{f['parts_ms']['cross_process_step']:.0f}",
        step_in=f"{f['parts_ms']['in_process_step']:.0f}",
        boundary_shape="×".join(map(str, f["boundary_shape"])),
        boundary_kib=f"{f['boundary_kib']:.0f}",
        chunk=f["chunk"],
        tick_ms=fmt(f["tick_exchange_ms"], ".2f"),
        block_ms=fmt(f["block_exchange_ms"], ".2f"),
        scaling_stages=f["scaling_stages"],
        stage_costs_ms=fmt(f["stage_costs_ms"], ".2f"),
        exchange_ms=fmt(f["exchange_ms"], ".2f"),
        rows=rows,
        four_no=f"{four['no_transfers']:.2f}",
        four_ticks=f"{four['ticks']:.2f}",
        four_blocks=f"{four['blocks']:.2f}",
        four_chunk=four["chunk"],
        four_link=f"{four['link_mbytes_s']:.3g}",
    )


def write_section(page: str, text: str) -> None:
    """Replaces the text between the section's markers in `page` (atomically)."""
    content = Path(page).read_text()
    if BEGIN not in content or END not in content:
        raise ValueError(f"{page} has no {BEGIN} ... {END} markers for the section.")
    head, rest = content.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    results.write_text(page, f"{head}{BEGIN}\n{text.strip()}\n{END}{tail}")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # the runtime's session-config chatter
    try:
        report_cluster()
    except (ValueError, child_process.ChildError) as error:  # a bad value, raw results
        sys.exit(f"error: {error}")  # (results.ResultsError), a failed measurement: one line


def report_cluster() -> None:
    """Measures (unless --report_only), then prints and writes the page's section."""
    if _REPORT_ONLY.value:  # the committed page is the committed results' only
        reference = not _JSON.value or results.same_file(_JSON.value, REFERENCE_JSON)
    else:
        from train.bench import config as bench_config

        bench_config.check(_CONFIG.value)
        if _REPEATS.value < 1:
            raise ValueError(f"--repeats: expected a whole number >= 1; got {_REPEATS.value}.")
        reference = _CONFIG.value.to_dict() == bench_config.get_config().to_dict()
    json_path = _JSON.value or (REFERENCE_JSON if reference else OTHER_JSON)
    docs_path = _DOCS.value or (REFERENCE_DOCS if reference else "")
    if not _REPORT_ONLY.value:
        from keras_sideways import threads

        threads.apply(threads.parse("2,1"))  # the in-process pipeline's: stages side by side
        raw = measure(
            _CONFIG.value, _REPEATS.value, _PIN.value, log=lambda line: print(line, flush=True)
        )
        raw["command"] = "python -m train.cluster_bench"
        if flags.FLAGS["config"].present:
            raw["command"] += f" --config={flags.FLAGS['config'].config_filename}"
        summarize(raw)  # figures that cannot be made fail before anything is written
        results.write_json(raw, json_path)
    raw = results.read_json(json_path, RAW_KEYS, "the cluster benchmark's")
    text = section(raw, summarize(raw), json_path)
    print(text)
    print(f"\nresults: {json_path}")
    if docs_path:
        write_section(docs_path, text)
        print(f"section: {docs_path}")
    else:
        print(f"no page written: --docs names one ({REFERENCE_DOCS} is {REFERENCE_JSON}'s)")


if __name__ == "__main__":
    app.run(
        command_line.interruptible(main, "nothing was written; measure again on an idle machine."),
        flags_parser=command_line.parse,
    )
