"""The race's runs (`python -m train.race`), each in a fresh process, each saved as it ends.

At each point (an image size and a number of stages) `run_race`:

1. finds each contender's best thread setting of `config.thread_settings`: the training
   frames/s of its model at that point over a few rounds of `fit` steps, a fresh process
   per setting and contender (skipped where there is one setting);
2. trains each contender at every seed once for each epoch budget of `config.budgets`, a
   fresh process each at its best setting (with `config.process_per_run` off, the smoke
   run's budgets share one process, a new Keras session and model each), as
   `train.recipe.run` trains train/configs/moving_digits.py (the seed, the data and its
   order, the model, Adam with a cosine decay over the budget), with a `TrainingClock`
   and the accuracy on a validation split after every epoch, and the test accuracy at
   its end.

Every timing and every run is written to its own JSON file in the results folder as it
ends; a rerun skips what is there, so an interrupted race goes on where it stopped and
processes given different points can share one folder. `merge` gathers the folder into the
race's raw results (`race.json`); `race_summary` makes the figures.
"""

from __future__ import annotations

import inspect
import json
import statistics
from collections.abc import Callable
from pathlib import Path

import ml_collections

from train import child_process
from train.bench import race_config
from train.bench.summary import best_setting
from train.results import read_json, write_json

# The paper's Sideways keeps no stash; "sideways" is whatever SidewaysModel does by default.
CONTENDERS = ("bp", "sideways", "sideways_paper")
PAPER = dict(mode="sideways", engine="pipeline", stash_depth="0")
WORKLOAD_FILE = "workload.json"

Log = Callable[[str], None]


def _no_log(message: str) -> None:
    del message


def library_defaults() -> dict[str, str]:
    """SidewaysModel's default `stash_depth` and `drain`, as config text."""
    from keras_sideways import SidewaysModel

    parameters = inspect.signature(SidewaysModel.__init__).parameters
    return {name: str(parameters[name].default) for name in ("stash_depth", "drain")}


def contender_fields(name: str) -> dict:
    """The training-config fields that make contender `name` of CONTENDERS.

    "bp": BP. "sideways": the pipeline engine with SidewaysModel's default stash and drain
    (a full stash, filled and drained every clip: BP's gradient, pipelined). "sideways_paper":
    the pipeline engine with no stash (`stash_depth="0"`) and the default drain, which
    leaves such a model undrained: the paper's Sideways.
    """
    if name == "bp":
        return dict(mode="bp")
    defaults = library_defaults()
    if name == "sideways":
        return dict(mode="sideways", engine="pipeline", **defaults)
    if name == "sideways_paper":
        return dict(PAPER, drain=defaults["drain"])
    raise ValueError(f"Unknown race contender {name!r}; expected one of {CONTENDERS}.")


def run_config(
    config: ml_collections.ConfigDict,
    name: str,
    image_size: int,
    num_stages: int,
    seed: int = 0,
    budget: int = 1,
) -> ml_collections.ConfigDict:
    """The moving-digits training config of contender `name` at one point, seed and budget.

    Everything else is train/configs/moving_digits.py's (variant `config.digits_variant`):
    the model's width, the clips, the batch, Adam's rate and its cosine decay, which
    `train.recipe.run` spreads over the `budget` epochs.
    """
    from train.configs import moving_digits

    run = moving_digits.get_config(config.digits_variant)
    run.update(contender_fields(name))
    run.seed = seed
    run.epochs = budget
    run.verbose = 0
    run.data.image_size = image_size
    run.data.num_train_clips = config.train_clips
    run.data.num_test_clips = config.test_clips
    run.model.num_stages = num_stages
    return run


def validation_split(run: ml_collections.ConfigDict, count: int):
    """`count` clips of moving digits that train on none: the clips the training set's
    generator makes after its own (clip i of a seed is the same whatever the number of
    clips), drawn from the training digits, in batches of the training batch size."""
    import tensorflow as tf

    from keras_sideways.data.digits import moving_digit_clips

    d = run.data
    video, labels = moving_digit_clips(
        "train",
        clip_length=d.clip_length,
        temporal_stride=d.temporal_stride,
        image_size=d.image_size,
        num_digits=d.num_digits,
        speed=d.speed,
        num_clips=d.num_train_clips + count,
        seed=run.seed,
        target=d.get("target", "label"),
    )
    start = d.num_train_clips
    clips = tf.data.Dataset.from_tensor_slices((video[start:], labels[start:]))
    return clips.batch(d.batch_size).prefetch(tf.data.AUTOTUNE)


# ------------------------------------------------------------------ in a child process
def train_run(
    config: ml_collections.ConfigDict,
    name: str,
    image_size: int,
    num_stages: int,
    seed: int,
    budget: int,
) -> dict:
    """Trains contender `name` at one point and seed for `budget` epochs, in this process;
    its training clock, validation accuracy per epoch, and test accuracy at the end."""
    from keras_sideways.callbacks import TrainingClock
    from train import builders, recipe

    run = run_config(config, name, image_size, num_stages, seed, budget)
    builders.check_config(run)
    held = {}

    def datasets(run):
        train, test, info = builders.build_datasets(run)
        held["test"] = test
        return train, validation_split(run, config.val_clips), info

    clock = TrainingClock()
    done = recipe.run(
        run,
        datasets=datasets,
        callbacks=lambda train, model: [*builders.data_callbacks(train), clock],
    )
    model, d = done.model, done.config.data
    test = model.evaluate(held["test"], verbose=0, return_dict=True)
    sideways = None
    if run.mode == "sideways":
        sideways = dict(
            stash=list(model.stash),
            drain=bool(model.graph.drain),
            exact=bool(model.graph.is_exact),
            tail_ticks=int(model.graph.tail_ticks),
            chunk=model.resolved_chunk(d.clip_length),
        )
    return dict(
        seconds=clock.cumulative,
        val_accuracy=[float(a) for a in done.history.history["val_accuracy"]],
        test_accuracy=float(test["accuracy"]),
        test_loss=float(test["loss"]),
        frames_per_epoch=d.num_train_clips * d.clip_length,
        sideways=sideways,
    )


def train_budgets(args: dict) -> list[int]:
    """The child's work: `train_run` of contender `args["name"]` at one point and seed for
    each budget of `args["runs"]` ([budget, path] pairs) whose file is not there yet, one
    after another (a fresh Keras session each), each saved to its path as it ends; returns
    the budgets trained."""
    import keras

    config = ml_collections.ConfigDict(args["config"])
    point = {k: args[k] for k in ("image_size", "num_stages", "seed")}
    trained = []
    for budget, path in args["runs"]:
        if Path(path).exists():
            continue
        result = train_run(config, args["name"], **point, budget=budget)
        record = dict(point, contender=args["name"], budget=budget, threads=args["threads"])
        write_json(dict(record, **result), path)
        trained.append(budget)
        keras.backend.clear_session()
    return trained


def sweep_fps(args: dict) -> list[float]:
    """Training frames/s of contender `args["name"]`'s model at one point, in each of
    `config.sweep_rounds` rounds of `config.sweep_steps` fit steps on a random batch (the
    child's work: its process has the thread setting being timed)."""
    import numpy as np
    import tensorflow as tf

    from keras_sideways import data
    from train import builders
    from train.bench.runs import fit_fps

    config = ml_collections.ConfigDict(args["config"])
    run = run_config(config, args["name"], args["image_size"], args["num_stages"])
    d = run.data
    classes = len(data.moving_digits_classes())
    info = builders.DataInfo("classification", classes, None)
    model = builders.build_model(run, info)
    rng = np.random.default_rng(0)
    shape = (d.batch_size, d.clip_length, d.image_size, d.image_size, d.channels)
    labels = (np.arange(d.batch_size) % classes).astype("int32")
    batch = tf.data.Dataset.from_tensors((rng.random(shape, dtype=np.float32), labels))
    frames = d.batch_size * d.clip_length
    fps = fit_fps({"model": model}, batch.repeat(), frames, config.sweep_steps, config.sweep_rounds)
    return fps["model"]


# ------------------------------------------------------------------ the parent's side
def point_name(image_size: int, num_stages: int) -> str:
    return f"{image_size}px_{num_stages}stages"


def sweep_path(out: Path, image_size: int, num_stages: int, name: str, threads: str) -> Path:
    """Where one thread setting's frames/s of one contender at one point is saved."""
    setting = threads.replace(",", "-")
    return out / "sweeps" / f"{point_name(image_size, num_stages)}_{name}_{setting}.json"


def run_path(out: Path, image_size: int, num_stages: int, seed: int, name: str, budget: int):
    """Where one training run is saved."""
    point = point_name(image_size, num_stages)
    return out / "runs" / f"{point}_seed{seed}_{name}_{budget}epochs.json"


def check_workload(config: ml_collections.ConfigDict, out: Path) -> None:
    """Records the workload in `out`, or raises ValueError if `out` holds another one's
    runs (their figures would not be comparable)."""
    path = out / WORKLOAD_FILE
    workload = json.loads(json.dumps(race_config.workload(config)))
    if path.exists():
        if read_json(path) != workload:
            raise ValueError(
                f"{out} holds the runs of another race workload ({path}); give another "
                "--out, or change back the fields other than image_sizes, stages, seeds and "
                "run_timeout."
            )
        return
    write_json(workload, path)


def threads_of(config: ml_collections.ConfigDict, out: Path, size: int, stages: int, log: Log):
    """{contender: its best thread setting at the point}, timing what is not saved yet."""
    settings = [f"{inter},{intra}" for inter, intra in config.thread_settings]
    if len(settings) == 1:
        return {name: settings[0] for name in CONTENDERS}
    args = dict(config=config.to_dict(), image_size=size, num_stages=stages)
    fps = {name: {} for name in CONTENDERS}
    for threads in settings:  # the contenders alternate at each setting
        for name in CONTENDERS:
            path = sweep_path(out, size, stages, name, threads)
            if not path.exists():
                rounds = child_process.run(
                    "train.bench.race_runs:sweep_fps", dict(args, name=name), threads
                )
                record = dict(image_size=size, num_stages=stages, contender=name, threads=threads)
                write_json(dict(record, fps=rounds), path)
                log(f"    {name} at threads {threads}: {statistics.median(rounds):.1f} frames/s")
            fps[name][threads] = read_json(path)["fps"]
    return {name: best_setting(by_setting) for name, by_setting in fps.items()}


def run_race(config: ml_collections.ConfigDict, out: str | Path, log: Log = _no_log) -> None:
    """Runs what `out` does not hold yet of the race of `config` (`merge` gathers it).

    Args:
        config: the race (`train/bench/race_config.py`).
        out: the results folder: one JSON file per timing and per run.
        log: takes one line of progress at a time.
    """
    race_config.check(config)
    out = Path(out)
    check_workload(config, out)
    points = [(size, stages) for size in config.image_sizes for stages in config.stages]
    for i, (size, stages) in enumerate(points, 1):
        log(f"{i}/{len(points)} {size} px, {stages} stages: best threads ...")
        best = threads_of(config, out, size, stages, log)
        log("    " + ", ".join(f"{name} {threads}" for name, threads in best.items()))
        for seed in config.seeds:
            for name in CONTENDERS:
                runs = [
                    (b, str(run_path(out, size, stages, seed, name, b))) for b in config.budgets
                ]
                pending = [(b, path) for b, path in runs if not Path(path).exists()]
                if not pending:
                    continue
                args = dict(
                    config=config.to_dict(),
                    name=name,
                    image_size=size,
                    num_stages=stages,
                    seed=seed,
                    threads=best[name],
                )
                # A process's first run pays its start-up; with a process each, every run does.
                groups = [[run] for run in pending] if config.process_per_run else [pending]
                for group in groups:
                    child_process.run(
                        "train.bench.race_runs:train_budgets",
                        dict(args, runs=group),
                        best[name],
                        timeout=config.run_timeout * len(group),
                    )
                for budget, path in pending:
                    result = read_json(path)
                    log(
                        f"    seed {seed}, {name}, {budget} epochs: {result['seconds'][-1]:.1f} s, "
                        f"validation accuracy {result['val_accuracy'][-1]:.3f}, test "
                        f"{result['test_accuracy']:.3f}"
                    )


def _order(record: dict) -> tuple:
    return (
        record["image_size"],
        record["num_stages"],
        record.get("seed", -1),
        CONTENDERS.index(record["contender"]),
        record.get("budget", 0),
        record.get("threads", ""),
    )


def merge(out: str | Path, config: ml_collections.ConfigDict, command: str) -> dict:
    """The race's raw results: every timing and run saved in `out`, in a fixed order, with
    the command, the machine, the workload and the points `config` asks for."""
    from train.bench.runs import machine_info

    out = Path(out)
    records = {
        kind: sorted((read_json(p) for p in (out / kind).glob("*.json")), key=_order)
        for kind in ("sweeps", "runs")
    }
    points = {field: list(config[field]) for field in race_config.POINT_FIELDS}
    return dict(
        command=command,
        machine=machine_info(),
        workload=read_json(out / WORKLOAD_FILE),
        points=points,
        **records,
    )
