"""The measurements of `make bench`, each in a fresh process where threads or memory need it.

`run_benchmark` measures, in order:

1. thread settings: BP and the Sideways pipeline timed in a fresh process per inter-/
   intra-op setting, alternating; BP's best setting is used for step 2;
2. throughput: BP, Sideways batched and Sideways pipeline built in one process and timed
   in alternating rounds of full `fit` steps (again at the pipeline's best setting when it
   differs from BP's), and BP and the pipeline again under each of `config.precisions`
   beyond float32 (contenders named like "bp_mixed_bfloat16");
3. memory: the peak resident memory of one training step for several clip lengths, each
   in a fresh process, minus that process's memory just before the step (BP and the
   streaming pipeline also under the other precisions);
4. depth-parallel scaling: the `auto` partition of the model cut into `scaling_stages`
   stages over `scaling_devices` devices and the speed-up it predicts from measured stage
   costs, and the pipeline timed with its stages serialised and concurrent on this
   machine's cores;
5. time to accuracy (the race): BP and the Sideways pipeline (tick by tick) train the
   model of train/configs/moving_digits.py on the same moving digits, same seed, at each
   of `race_image_sizes`, each in a fresh process at its best setting of step 1; the
   training seconds (validation left out, `TrainingClock`) and the validation accuracy
   at the end of every epoch.

It returns raw results only (frames/s of every round, bytes, milliseconds, seconds and
accuracies of every epoch); `summary` turns them into figures. TensorFlow fixes its
thread pools when it starts, hence the child processes.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import ml_collections

from train.bench import config as bench_config
from train.bench.summary import best_setting, contender_precision

if TYPE_CHECKING:
    import numpy as np

    from keras_sideways import SidewaysModel

CONTENDERS = {
    "bp": dict(mode="bp"),
    "sideways_batched": dict(mode="sideways", engine="batched"),
    "sideways_pipeline": dict(mode="sideways", engine="pipeline"),
}
# Memory also measures the pipeline with a full stash (docs/algorithm.md, "Stash depth").
MEMORY_CONTENDERS = {
    **CONTENDERS,
    "sideways_pipeline_full_stash": dict(mode="sideways", engine="pipeline", stash_depth="full"),
}
SWEPT = ("bp", "sideways_pipeline")  # the contenders timed at every thread setting
# Timed and measured again under each of config.precisions beyond float32.
MIXED = ("bp", "sideways_pipeline")
# The race's contenders, as fields of the moving-digits config; Sideways without a stash.
RACE_CONTENDERS = {
    "bp": dict(mode="bp"),
    "sideways_pipeline": dict(mode="sideways", engine="pipeline", stash_depth="0"),
}
RACE_TIMEOUT = 3600  # seconds for one contender's whole training run
_ROOT = Path(__file__).resolve().parents[2]  # where `train` imports from, for the children
_RESULT = "RESULT "

Log = Callable[[str], None]


def _no_log(message: str) -> None:
    del message


def _tf():
    import tensorflow as tf  # deferred: thread settings must come before TensorFlow starts

    return tf


def with_precisions(names: Sequence[str], config: ml_collections.ConfigDict) -> list[str]:
    """`names`, then those of MIXED among them under each precision beyond float32."""
    mixed = [f"{n}_{p}" for p in config.get("precisions", ("float32",))[1:] for n in MIXED]
    return [*names, *(n for n in mixed if contender_precision(n)[0] in names)]


def build_contender(
    name: str,
    config: ml_collections.ConfigDict,
    num_stages: int | None = None,
    stateful: bool = False,
) -> SidewaysModel:
    """The reference VGG classifier, compiled, as contender `name` trains it (under its
    precision: "bp_mixed_bfloat16" is BP under Keras' mixed_bfloat16 policy)."""
    import keras

    from keras_sideways import SidewaysModel, models, training

    keras.utils.set_random_seed(0)
    base, precision = contender_precision(name)
    with training.dtype_policy(precision):
        stages = models.vgg_classifier(
            config.classes, num_stages or config.num_stages, config.width
        )
        model = SidewaysModel(stages, stateful=stateful, **MEMORY_CONTENDERS[base])
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
    for model in contenders.values():  # tracing and first-run allocations
        model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)
    fps = {name: [] for name in names}
    frames = config.steps * config.batch * config.frames
    for _ in range(config.rounds):
        for name, model in contenders.items():
            start = time.perf_counter()
            model.fit(data, steps_per_epoch=config.steps, epochs=1, verbose=0)
            fps[name].append(frames / (time.perf_counter() - start))
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
    streaming = MEMORY_CONTENDERS[contender_precision(name)[0]].get("engine") == "pipeline"
    model = build_contender(name, config, stateful=streaming)
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


def race_config(
    config: ml_collections.ConfigDict, name: str, image_size: int
) -> ml_collections.ConfigDict:
    """The moving-digits config that contender `name` trains at `image_size` in the race."""
    from train.configs import moving_digits

    run = moving_digits.get_config(config.race_digits_variant)
    run.update(RACE_CONTENDERS[name])
    run.epochs = config.race_epochs
    run.verbose = 0
    run.data.image_size = image_size
    run.data.num_train_clips = config.race_train_clips
    run.data.num_test_clips = config.race_test_clips
    return run


def race(config: ml_collections.ConfigDict, name: str, image_size: int) -> dict:
    """Trains contender `name` at `image_size`; its clock and validation accuracy per epoch.

    Data, model and optimizer are those of `keras_sideways.training` (as `make train`
    builds them), with no logs or checkpoints written.
    """
    import keras

    from keras_sideways import training
    from keras_sideways.callbacks import TrainingClock

    run = race_config(config, name, image_size)
    training.check_config(run)
    keras.utils.set_random_seed(run.seed)  # the same data order and first weights in both
    train, val, info = training.build_datasets(run)
    run = training.with_schedule(run, train)
    model = training.build_model(run, info)
    clock = TrainingClock()
    history = model.fit(train, validation_data=val, epochs=run.epochs, callbacks=[clock], verbose=0)
    return dict(
        seconds=clock.cumulative,
        val_accuracy=[float(a) for a in history.history["val_accuracy"]],
        frames_per_epoch=run.data.num_train_clips * run.data.clip_length,
    )


# ------------------------------------------------------------------ child processes
def run_child(task: str, args: dict, threads: str = "0,0", timeout: int = 600) -> list | dict:
    """Runs `task` (see `child`) in a fresh Python process at `threads` ("inter,intra")."""
    code = (
        "import json, sys; from train.bench import runs; "
        f"print({_RESULT!r} + json.dumps(runs.child(*json.loads(sys.argv[1]))))"
    )
    path = os.pathsep.join(p for p in (str(_ROOT), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=path)
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps([task, args, threads])],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(_RESULT)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(
            f"benchmark child {task} {args.get('name', '')} failed:\n{done.stderr[-3000:]}"
        )
    return json.loads(lines[-1][len(_RESULT) :])


TASKS = ("fps", "throughput", "memory", "race")


def child(task: str, args: dict, threads: str) -> list | dict:
    """The work of one child process: "fps" (one contender), "throughput", "memory" or
    "race" (one contender at one image size)."""
    if task not in TASKS:
        raise ValueError(f"Unknown benchmark task {task!r}; expected one of {TASKS}.")
    from keras_sideways import threads as thread_pools

    thread_pools.apply(thread_pools.parse(threads))  # before TensorFlow starts
    config = ml_collections.ConfigDict(args["config"])
    if task == "fps":
        return throughput(config, names=(args["name"],))[args["name"]]
    if task == "throughput":
        return throughput(config)
    if task == "race":
        return race(config, args["name"], args["image_size"])
    return step_memory(args["name"], args["frames"], config)


def run_benchmark(config: ml_collections.ConfigDict, command: str, log: Log = _no_log) -> dict:
    """Runs every measurement of the module docstring; returns the raw results.

    Args:
        config: the workload (`train/bench/config.py`).
        command: how the results were made, for the page.
        log: takes one line of progress at a time.

    Returns:
        A JSON-ready dict: command, machine, workload, thread_sweep, throughput, memory,
        scaling, race.
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
    log("3/5 memory of one training step against clip length, a fresh process each ...")
    results["memory"] = _memory(config, args, log)
    log("4/5 depth-parallel scaling ...")
    results["scaling"] = _scaling(config, args)
    log("5/5 time to accuracy on moving digits, each contender at its best threads ...")
    results["race"] = _race(config, args, sweep, log)
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
    """{contender: [step_memory for each clip length]}, a fresh process each."""
    memory = {name: [] for name in with_precisions(tuple(MEMORY_CONTENDERS), config)}
    for name in memory:
        for frames in config.memory_lengths:
            step = run_child("memory", dict(args, name=name, frames=frames))
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


def _race(config: ml_collections.ConfigDict, args: dict, sweep: dict, log: Log) -> dict:
    """The race's set-up, and per image size each contender's threads, seconds, accuracies."""
    run = race_config(config, "bp", config.race_image_sizes[0])
    setup = dict(
        num_stages=run.model.num_stages,
        width=run.model.width,
        clip_length=run.data.clip_length,
        batch=run.data.batch_size,
        epochs=run.epochs,
        train_clips=run.data.num_train_clips,
        test_clips=run.data.num_test_clips,
        learning_rate=run.learning_rate,
        lr_schedule=run.lr_schedule,
        seed=run.seed,
    )
    sizes = []
    for size in config.race_image_sizes:
        contenders = {}
        for name in SWEPT:
            threads = best_setting(sweep[name])
            result = run_child(
                "race", dict(args, name=name, image_size=size), threads, timeout=RACE_TIMEOUT
            )
            contenders[name] = dict(threads=threads, **result)
            log(
                f"    {name}, {size} px, threads {threads}: {result['seconds'][-1]:.1f} s, "
                f"validation accuracy {result['val_accuracy'][-1]:.3f}"
            )
        sizes.append(dict(image_size=size, contenders=contenders))
    return dict(setup=setup, sizes=sizes)


def write_json(results: dict, path: str | os.PathLike) -> None:
    """Writes raw results to `path` atomically (a temporary file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(path)


def read_json(path: str | os.PathLike) -> dict:
    """The raw results written by `write_json`."""
    return json.loads(Path(path).read_text())
