"""The measurements of `make bench`, each in a fresh process where threads or memory need it.

`run_benchmark` measures, in order:

1. thread settings: BP and the Sideways pipeline timed in a fresh process per inter-/
   intra-op setting, alternating; BP's best setting is used for step 2;
2. throughput: BP, Sideways batched and Sideways pipeline (in blocks of ticks, "auto",
   and tick by tick) built in one process and timed in alternating rounds of full `fit`
   steps (again at the pipeline's best setting when it differs from BP's), and BP and
   the pipeline again under each of `config.precisions` beyond float32 (contenders named
   like "bp_mixed_bfloat16");
3. blocks of ticks: BP and the pipeline at each of `chunk_sizes` ticks per block and at
   "auto", alternating in one process at the pipeline's best setting;
4. memory: the peak resident memory of one training step for several clip lengths, each
   in a fresh process (unless `memory_process_per_step` is off), minus that process's
   memory just before the step (BP and the pipelines also under the other precisions);
5. depth-parallel scaling: the `auto` partition of the model cut into `scaling_stages`
   stages over `scaling_devices` devices and the speed-up it predicts from measured stage
   costs, and the pipeline timed with its stages serialised and concurrent on this
   machine's cores.

The race to an accuracy is `python -m train.race` (`train.bench.race_runs`). It returns
raw results only (frames/s of every round, bytes, milliseconds); `summary` turns them
into figures. TensorFlow fixes its thread pools when it starts, hence the child processes
(`train.child_process`).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import ml_collections

from train import child_process
from train.bench import config as bench_config
from train.bench.summary import best_setting, contender_precision

if TYPE_CHECKING:
    import keras
    import numpy as np

    from keras_sideways import SidewaysModel

PAPER = dict(mode="sideways", stash_depth=0)  # the paper's Sideways: no stash, no drain
CONTENDERS = {
    "bp": dict(mode="bp"),
    "sideways_batched": dict(PAPER, engine="batched"),
    # Blocks of ticks, "auto" (the engine's default), and its tick-by-tick loop.
    "sideways_pipeline": dict(PAPER, engine="pipeline"),
    "sideways_pipeline_ticks": dict(PAPER, engine="pipeline", pipeline_chunk=1),
    # SidewaysModel's defaults (a full stash and the drain: BP's gradient, pipelined), in
    # blocks (frame by frame, on the tape) and tick by tick (the drain's bubble, the
    # stash's second forward pass, memory flat in the clip).
    "exact_pipeline": dict(mode="sideways", engine="pipeline"),
    "exact_pipeline_ticks": dict(mode="sideways", engine="pipeline", pipeline_chunk=1),
}
# Memory also measures the streaming pipeline (stateful: tick by tick, chunks of a long
# clip), with and without a full stash (docs/algorithm.md, "Stash depth").
MEMORY_CONTENDERS = {
    **{
        name: CONTENDERS[name]
        for name in ("bp", "sideways_batched", "sideways_pipeline", "exact_pipeline")
    },
    "exact_pipeline_ticks": CONTENDERS["exact_pipeline_ticks"],
    "sideways_pipeline_stream": dict(PAPER, engine="pipeline", stateful=True),
    "sideways_pipeline_stream_full_stash": dict(
        mode="sideways", engine="pipeline", stateful=True, stash_depth="full"
    ),
}
SWEPT = ("bp", "sideways_pipeline")  # the contenders timed at every thread setting
CHUNK_PREFIX = "sideways_pipeline_chunk"  # + ticks per block: the blocks step's contenders
# Timed and measured again under each of config.precisions beyond float32.
MIXED = ("bp", "sideways_pipeline", "sideways_pipeline_stream")
Log = Callable[[str], None]


def _no_log(message: str) -> None:
    del message


def _tf():
    import tensorflow as tf  # deferred: thread settings must come before TensorFlow starts

    return tf


def contender_options(name: str) -> dict:
    """SidewaysModel's options for contender `name` (its float32 name: see
    `contender_precision`): one of CONTENDERS or MEMORY_CONTENDERS, or CHUNK_PREFIX + C,
    the pipeline in blocks of C ticks."""
    if name.startswith(CHUNK_PREFIX):
        chunk = int(name[len(CHUNK_PREFIX) :])
        return dict(PAPER, engine="pipeline", pipeline_chunk=chunk)
    return {**CONTENDERS, **MEMORY_CONTENDERS}[name]


def with_precisions(names: Sequence[str], config: ml_collections.ConfigDict) -> list[str]:
    """`names`, then those of MIXED among them under each precision beyond float32."""
    mixed = [f"{n}_{p}" for p in config.get("precisions", ("float32",))[1:] for n in MIXED]
    return [*names, *(n for n in mixed if contender_precision(n)[0] in names)]


def build_contender(
    name: str, config: ml_collections.ConfigDict, num_stages: int | None = None
) -> SidewaysModel:
    """The reference VGG classifier, compiled, as contender `name` trains it (under its
    precision: "bp_mixed_bfloat16" is BP under Keras' mixed_bfloat16 policy)."""
    import keras

    from keras_sideways import SidewaysModel, models
    from train.builders import dtype_policy

    keras.utils.set_random_seed(0)
    base, precision = contender_precision(name)
    with dtype_policy(precision):
        stages = models.vgg_classifier(
            config.classes, num_stages or config.num_stages, config.width
        )
        model = SidewaysModel(stages, **contender_options(base))
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    return model


def random_batch(
    config: ml_collections.ConfigDict, frames: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random batch of clips [batch, frames, size, size, channels] and labels."""
    import numpy as np

    rng = np.random.default_rng(0)
    size = config.image_size
    shape = (config.batch, frames or config.frames, size, size, config.channels)
    labels = (np.arange(config.batch) % config.classes).astype("int32")
    return rng.random(shape, dtype=np.float32), labels


def throughput(
    config: ml_collections.ConfigDict, names: Sequence[str] | None = None
) -> dict[str, list[float]]:
    """Training frames/s of each contender in every round, timed in alternating rounds of fit.

    By default: CONTENDERS, and BP and the pipeline under the other `config.precisions`.
    """
    tf = _tf()
    names = with_precisions(tuple(CONTENDERS), config) if names is None else names
    video, labels = random_batch(config)
    data = tf.data.Dataset.from_tensors((video, labels)).repeat()
    contenders = {name: build_contender(name, config) for name in names}
    return fit_fps(contenders, data, config.batch * config.frames, config.steps, config.rounds)


def blocks(config: ml_collections.ConfigDict) -> dict:
    """BP and the pipeline at each of `config.chunk_sizes` ticks per block (chunks longer
    than the clip left out) and at "auto", alternating in rounds; and the chunk "auto"
    picks here."""
    names = [
        "bp",
        *(f"{CHUNK_PREFIX}{c}" for c in config.chunk_sizes if c <= config.frames),
        "sideways_pipeline",
    ]
    fps = throughput(config, names)
    auto = build_contender("sideways_pipeline", config).resolved_chunk(config.frames)
    return dict(fps=fps, auto_chunk=auto)


def fit_fps(
    models: dict[str, keras.Model],
    data,
    frames_per_step: int,
    steps: int,
    rounds: int,
    timer: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Training frames/s of each compiled model in every round of `steps` fit steps on
    `data` (a repeated batch), the models alternating round by round after two warm-up
    steps each (tracing and first-run allocations).

    A round's time is its training time (`ks.callbacks.TrainingClock`: from the epoch's
    start to the end of its last batch), as the race times a run: after its last callback,
    a `fit` call on these CPUs now and then stalls for about a second before it returns
    (measured: 1.1 s after 1.4 s of steps, likely its input iterator's teardown), which
    halved or quartered a round's rate whatever the model. A run of many epochs pays that
    once per `fit`, not per round.
    """
    from keras_sideways.callbacks import TrainingClock

    for model in models.values():
        model.fit(data, steps_per_epoch=2, epochs=1, shuffle=False, verbose=0)
    fps = {name: [] for name in models}
    frames = steps * frames_per_step
    for _ in range(rounds):
        for name, model in models.items():
            clock = TrainingClock(timer)
            model.fit(
                data, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0, callbacks=[clock]
            )
            fps[name].append(frames / clock.history[-1])
    return fps


def _memory_status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def step_memory(name: str, frames: int, config: ml_collections.ConfigDict) -> dict:
    """Peak resident bytes of one training step on clips of `frames`, above the pre-step RSS.

    Run it in a fresh process. The streaming pipeline (stateful) takes the clip as
    consecutive chunks of `config.stream_chunk` frames (with its stash, if it has one).
    """
    streaming = contender_options(contender_precision(name)[0]).get("stateful", False)
    model = build_contender(name, config)
    video, labels = random_batch(config, frames)
    chunk = min(config.stream_chunk, frames) if streaming else frames
    size = config.image_size
    model.build((config.batch, chunk, size, size, config.channels))
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
    return dict(frames=frames, bytes=peak - before, chunk=chunk, peak_reset=reset)


def stage_scaling(config: ml_collections.ConfigDict) -> dict:
    """Measured stage costs of the deeper cut, and each `auto` partition's predicted speed-up."""
    tf = _tf()
    from keras_sideways import models, placement

    stages = models.vgg_classifier(config.classes, config.scaling_stages, config.width)
    size = config.image_size
    frames = tf.random.uniform((config.batch, size, size, config.channels), seed=0)
    costs = placement.measure_stage_costs(stages, frames, repeats=5)
    partitions = []
    for devices in config.scaling_devices:
        assignment = placement.balanced_partition(costs, devices)
        speedup = placement.predicted_speedup(costs, assignment)
        partitions.append(dict(devices=devices, assignment=assignment, predicted_speedup=speedup))
    return dict(stage_costs_ms=[1000 * c for c in costs], partitions=partitions)


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


# ------------------------------------------------------------------ child processes
def run_child(task: str, args: dict, threads: str = "0,0", timeout: int = 600) -> list | dict:
    """Runs `task` (see `child`) in a fresh Python process at `threads` ("inter,intra")."""
    return child_process.run("train.bench.runs:child", dict(args, task=task), threads, timeout)


TASKS = ("fps", "throughput", "blocks", "memory", "memories")


def child(args: dict) -> list | dict:
    """The work of one child process, `args["task"]`: "fps" (one contender), "throughput",
    "blocks", "memory" (one step) or "memories" (the steps of `args["steps"]`, one after
    another)."""
    task = args["task"]
    if task not in TASKS:
        raise ValueError(f"Unknown benchmark task {task!r}; expected one of {TASKS}.")
    config = ml_collections.ConfigDict(args["config"])
    if task == "fps":
        return throughput(config, names=(args["name"],))[args["name"]]
    if task == "throughput":
        return throughput(config)
    if task == "blocks":
        return blocks(config)
    if task == "memories":
        return [step_memory(name, frames, config) for name, frames in args["steps"]]
    return step_memory(args["name"], args["frames"], config)


def run_benchmark(config: ml_collections.ConfigDict, command: str, log: Log = _no_log) -> dict:
    """Runs every measurement of the module docstring; returns the raw results.

    Args:
        config: the workload (`train/bench/config.py`).
        command: how the results were made, for the page.
        log: takes one line of progress at a time.

    Returns:
        A JSON-ready dict: command, machine, workload, thread_sweep, throughput, blocks,
        memory, scaling.
    """
    bench_config.check(config)
    args = dict(config=config.to_dict())
    results = dict(command=command, machine=machine_info(), workload=config.to_dict())
    log("1/5 thread settings (inter-op, intra-op), BP and pipeline, a fresh process each ...")
    results["thread_sweep"] = sweep = _thread_sweep(config, args, log)
    log("2/5 throughput, contenders alternating in one process, at BP's best threads ...")
    results["throughput"] = []
    for name in SWEPT:  # BP's best setting, then the pipeline's if it differs
        threads = best_setting(sweep[name])
        if all(timed["threads"] != threads for timed in results["throughput"]):
            fps = run_child("throughput", args, threads)
            results["throughput"].append(dict(threads=threads, best_for=name, fps=fps))
            figures = ", ".join(f"{n} {statistics.median(v):.1f}" for n, v in fps.items())
            log(f"    at {name}'s best threads ({threads}), frames/s: {figures}")
    log("3/5 blocks of ticks: the pipeline at each chunk size, at its best threads ...")
    threads = best_setting(sweep["sideways_pipeline"])
    results["blocks"] = dict(threads=threads, **run_child("blocks", args, threads))
    figures = ", ".join(
        f"{n} {statistics.median(v):.1f}" for n, v in results["blocks"]["fps"].items()
    )
    log(f"    frames/s: {figures}; 'auto' picks {results['blocks']['auto_chunk']}")
    where = "a fresh process each" if config.memory_process_per_step else "one process"
    log(f"4/5 memory of one training step against clip length, {where} ...")
    results["memory"] = _memory(config, args, log)
    log("5/5 depth-parallel scaling ...")
    results["scaling"] = _scaling(config, args)
    return results


def _thread_sweep(config: ml_collections.ConfigDict, args: dict, log: Log) -> dict:
    """{contender: {"inter,intra": frames/s of each round}}, alternating the contenders."""
    sweep = {name: {} for name in SWEPT}
    for inter, intra in config.thread_settings:
        threads = f"{inter},{intra}"
        for name in SWEPT:
            sweep[name][threads] = fps = run_child("fps", dict(args, name=name), threads)
            log(f"    {name} at {threads}: {statistics.median(fps):.1f} frames/s")
    return sweep


def _memory(config: ml_collections.ConfigDict, args: dict, log: Log) -> dict:
    """{contender: [step_memory for each clip length]}, a fresh process each (or all in
    one, with `memory_process_per_step` off)."""
    memory = {name: [] for name in with_precisions(tuple(MEMORY_CONTENDERS), config)}
    steps = [(name, frames) for name in memory for frames in config.memory_lengths]
    if config.memory_process_per_step:
        measured = (run_child("memory", dict(args, name=n, frames=f)) for n, f in steps)
    else:
        measured = run_child("memories", dict(args, steps=steps))
    for (name, frames), step in zip(steps, measured):
        memory[name].append(step)
        log(f"    {name}, {frames} frames: {step['bytes'] / 2**20:.1f} MiB")
    return memory


def _scaling(config: ml_collections.ConfigDict, args: dict) -> dict:
    """`stage_scaling`, and the pipeline's frames/s with serial and concurrent stages."""
    scaling = dict(stage_scaling(config), cores=os.cpu_count(), serial_fps=[], concurrent_fps=[])
    pipeline = dict(args, name="sideways_pipeline")
    for _ in range(config.scaling_repeats):  # one inter-op thread serialises the stages
        scaling["serial_fps"].append(run_child("fps", pipeline, "1,1"))
        scaling["concurrent_fps"].append(run_child("fps", pipeline, "0,1"))
    return scaling
