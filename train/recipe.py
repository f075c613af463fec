"""The one run recipe (seed, data, model, fit, evaluate) and the training command's run.

`run` is what every training run of this repository does, in this order: seed Keras'
random generators with `config.seed`, build the training and validation sets, set the
learning-rate schedule, build the compiled model, fit, and (if asked) evaluate. The
training command (`train_and_evaluate`: TensorBoard, checkpoints, backup, export), the
study (`train/study/runs.py`) and the benchmark's race (`train/bench/runs.py`) all call
it; what differs between them (the data, the callbacks, `verbose`, a strategy) is an
argument, so the same seed gives the same numbers wherever a config is run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from keras_sideways.callbacks import BackupAndRestore
from keras_sideways.export import check_export_path, export_saved_model, non_finite_weights
from keras_sideways.model import SidewaysModel
from train import builders, command_line, printing
from train.results import read_json, write_json

Datasets = Callable[[Any], tuple[tf.data.Dataset, tf.data.Dataset, builders.DataInfo]]
Callbacks = Callable[[tf.data.Dataset, SidewaysModel], list]


def _data_callbacks(train: tf.data.Dataset, model: SidewaysModel) -> list:
    del model
    return builders.data_callbacks(train)


@dataclasses.dataclass
class Run:
    """What `run` made: the config (with its schedule set), data, model and their figures."""

    config: Any
    train: tf.data.Dataset
    validation: tf.data.Dataset
    info: builders.DataInfo
    model: SidewaysModel
    callbacks: list  # fit's, as `callbacks` made them
    history: keras.callbacks.History
    scores: dict[str, float] | None = None  # `evaluate=True`: the validation figures


def run(
    config,
    *,
    datasets: Datasets = builders.build_datasets,
    callbacks: Callbacks = _data_callbacks,
    verbose: int | str = 0,
    strategy: tf.distribute.Strategy | None = None,
    evaluate: bool = False,
) -> Run:
    """Trains `config`: seed, data, schedule, model, fit (and evaluate), in that order.

    It checks nothing: call `builders.check_config` first where the config comes from a
    user.

    Args:
        config: a training config (`train/configs/`, or one the study or the benchmark
            makes).
        datasets: makes (train, validation, info) from the config, after the seed is set;
            default `builders.build_datasets`.
        callbacks: makes fit's callbacks from the training set and the built model, in
            their order; default `builders.data_callbacks` of the training set.
        verbose: fit's `verbose`.
        strategy: a tf.distribute strategy the model is built in the scope of; None
            builds it where the caller is.
        evaluate: evaluate the model on the validation set after fit (`Run.scores`).
    """
    keras.utils.set_random_seed(config.seed)  # the same weights, data and order in both modes
    train, validation, info = datasets(config)
    config = builders.with_schedule(config, train)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = builders.build_model(config, info)
    made = callbacks(train, model)
    history = model.fit(
        train,
        validation_data=validation,
        epochs=config.epochs,
        callbacks=made,
        shuffle=False,  # the dataset reshuffles itself every epoch (data.epochs)
        verbose=verbose,
    )
    scores = model.evaluate(validation, verbose=0, return_dict=True) if evaluate else None
    return Run(config, train, validation, info, model, made, history, scores)


class RunError(RuntimeError):
    """A run that cannot end well: the commands print it as one line of error."""


class DivergedError(RunError):
    """Training ended with non-finite weights or validation loss: nothing was exported."""


class WorkdirLostError(RunError):
    """The workdir was deleted while the run wrote into it: training stopped there."""


def check_workdir_kept(workdir: str, when: str) -> None:
    """WorkdirLostError once the run's workdir (its RUN_CONFIG) is gone: deleted while the
    run trained, its checkpoints, backup and logs are lost, and writing on would recreate
    it in pieces under a run that reports success."""
    if not os.path.exists(os.path.join(workdir, RUN_CONFIG)):
        raise WorkdirLostError(
            f"--workdir: {workdir} was deleted during the run ({RUN_CONFIG} is gone, {when}): "
            "its checkpoints, backup and logs are lost, so the run stopped and exported "
            "nothing. Run the command again to start afresh."
        )


class _WorkdirKept(keras.callbacks.Callback):
    """Stops the run at the end of an epoch whose workdir was deleted (`check_workdir_kept`),
    before any callback writes into it."""

    def __init__(self, workdir: str):
        super().__init__()
        self.workdir = workdir

    def on_epoch_end(self, epoch, logs=None):
        check_workdir_kept(self.workdir, f"found at the end of epoch {epoch + 1}")


class _TensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard whose batch steps go on where a resumed run's backup left off.

    Keras counts them from 0 in every process, so a resumed run would log its batches over
    the first epochs' steps.
    """

    def on_epoch_begin(self, epoch, logs=None):
        if epoch and self._global_train_batch == 0:  # the first epoch of a resumed run
            steps = self.params.get("steps")
            done = epoch * steps if steps else int(self.model.optimizer.iterations)
            self._global_train_batch = done
        super().on_epoch_begin(epoch, logs)


class _StopWhenAsked(keras.callbacks.Callback):
    """Stops training at the next batch once the command was sent SIGINT or SIGTERM
    (`command_line.stop_requested`): the KeyboardInterrupt itself may have been dropped."""

    def on_train_batch_end(self, batch, logs=None):
        if command_line.stop_requested():
            raise KeyboardInterrupt

    on_test_batch_end = on_train_batch_end


class _EpochWeights(keras.callbacks.Callback):
    """The weights at each epoch's end, to `pattern` (with `{epoch}`, from 1), each written
    beside its place and renamed into it: Keras' ModelCheckpoint writes in place, and a
    run stopped mid-write left a truncated file that loading blamed on the model."""

    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = pattern

    def on_epoch_end(self, epoch, logs=None):
        path = self.pattern.format(epoch=epoch + 1)
        staging = os.path.join(os.path.dirname(path), ".staging." + os.path.basename(path))
        self.model.save_weights(staging, overwrite=True)
        os.replace(staging, path)


RUN_CONFIG = "config.json"  # in a workdir: the config of the run that writes there


# Fields that change no result: a rerun may give them other values.
_FREE_FIELDS = ("threads", "export_dir", "verbose")  # verbose: a rerun was refused for it


def _differences(config, workdir: str) -> list[str] | None:
    """The config fields (but _FREE_FIELDS) whose values differ from those of the run
    recorded in `workdir`, or None if none is recorded."""
    path = os.path.join(workdir, RUN_CONFIG)
    if not os.path.exists(path):
        return None
    wanted = {k: v for k, v in json.loads(config.to_json()).items() if k not in _FREE_FIELDS}
    held = {k: v for k, v in read_json(path).items() if k not in _FREE_FIELDS}
    return sorted(_differing(held, wanted))


def _differing(held: dict, wanted: dict, prefix: str = "") -> list[str]:
    """The fields whose values differ, nested ones by their path ("data.speed")."""
    differ = []
    for key in {*held, *wanted}:
        a, b = held.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differ += _differing(a, b, f"{prefix}{key}.")
        elif a != b:
            differ.append(prefix + key)
    return differ


def finished_run(config, workdir: str) -> dict[str, Any] | None:
    """The summary of the run of `config` that `workdir` holds, finished; None if it holds
    none, or one of another config (`train_and_evaluate` then refuses it)."""
    path = os.path.join(workdir, "summary.json")
    if not os.path.exists(path) or _differences(config, workdir) != []:
        return None
    return read_json(path)


def refuse_finished_run(config, workdir: str) -> None:
    """ConfigError where `workdir` holds a finished run (summary.json), naming the fields
    of `config` that differ from that run's, if any."""
    if not os.path.exists(os.path.join(workdir, "summary.json")):
        return
    differ = _differences(config, workdir)
    of = f" of another config (config.{', config.'.join(differ)} differ)" if differ else ""
    raise builders.ConfigError(
        f"--workdir: {workdir} holds a finished run{of} (summary.json): give another "
        "--workdir, or delete it to run again."
    )


def _check_same_run(config, workdir: str) -> None:
    """ConfigError for a workdir that holds a finished run, or a run of another config (a
    rerun resumes from its backup: with other settings it would mix two runs); records the
    config of a new run. The thread pools and the export folder may differ: they change no
    result."""
    refuse_finished_run(config, workdir)
    differ = _differences(config, workdir)
    if differ:
        raise builders.ConfigError(
            f"--workdir: {workdir} holds a run of another config (config.{differ[0]}"
            f"{' and others' if len(differ) > 1 else ''} differ: {', '.join(differ)}); "
            "a rerun resumes that run. Give another --workdir, or delete it to start "
            "afresh."
        )
    write_json(json.loads(config.to_json()), os.path.join(workdir, RUN_CONFIG))


def _forget_new_run(workdir: str, created: bool) -> None:
    """Removes the config a new run recorded (and its workdir, if the run made it and
    nothing else is in it), where nothing has trained: no backup, no checkpoint."""
    if any(os.path.exists(os.path.join(workdir, kept)) for kept in ("backup", "checkpoints")):
        return
    with contextlib.suppress(OSError):
        os.remove(os.path.join(workdir, RUN_CONFIG))
        if created:
            os.rmdir(workdir)


def _check_export_is_this_runs(path: str, workdir: str) -> None:
    """Refuses an export path that holds the export of another run: the export is named
    after the workdir's last folder, so runs/a/d and runs/b/d both export to
    `export_dir/d`, and the second replaced the first's export. An export that names no
    workdir (of an earlier version) is replaced as before."""
    try:
        with open(os.path.join(path, "sideways.json")) as f:
            owner = json.load(f).get("workdir")
    except (OSError, ValueError, AttributeError):
        return  # no export there, or not one that says whose it is
    if owner and os.path.abspath(owner) != workdir:
        raise builders.ConfigError(
            f"config.export_dir: {path} holds the export of another run ({owner}), which this "
            f"run ({workdir}) would replace: its export is named after its workdir's last "
            "folder. Give this run its own --config.export_dir, or a workdir of another name."
        )


def check_workdir(workdir: str) -> None:
    """ConfigError for an empty --workdir: the run would write into the current folder."""
    if not workdir or not os.path.basename(os.path.abspath(workdir)):
        raise builders.ConfigError(
            "--workdir: expected a folder for the run's logs and checkpoints (its name names "
            f"the export), e.g. runs/digits; got {workdir!r}."
        )


def train_and_evaluate(config, workdir: str, strategy=None) -> dict[str, Any]:
    """Trains `config` in `workdir`, exports the model, and returns a summary.

    Writes TensorBoard logs to `workdir/tensorboard` (train: batch_* every
    `config.log_every_steps` steps and epoch_*; validation: epoch_*), weights to
    `workdir/checkpoints/`, the SavedModel to `config.export_dir/<basename of workdir>`
    (none when `config.export_dir` is empty: the summary's "export" is then None),
    and the summary to `workdir/summary.json`. A run that is killed resumes from its
    last finished epoch when started again with the same workdir (`workdir/backup`), and
    ends with the weights and optimizer state of a run that was never stopped: the
    training set draws each epoch's data from the seed and the epoch alone
    (`builders.data_callbacks`). With a `tf.distribute` strategy, the model is built in
    its scope. TensorFlow's thread pools are sized first (`builders.apply_threads`); the
    summary and a TensorBoard text (`threads`, in `workdir/tensorboard`) record the pools
    used.
    """
    builders.check_config(config)
    check_workdir(workdir)
    pools = builders.apply_threads(config)  # before anything starts TensorFlow's runtime
    workdir = os.path.abspath(workdir)
    name = os.path.basename(workdir.rstrip("/"))
    if config.export_dir:  # before training, not after: the export replaces what is there
        if os.path.exists(config.export_dir) and not os.path.isdir(config.export_dir):
            raise builders.ConfigError(
                f"config.export_dir: {config.export_dir} is a file; expected a folder to "
                "export into."
            )
        try:
            check_export_path(os.path.join(config.export_dir, name))
        except ValueError as error:
            raise builders.ConfigError(f"config.export_dir: {error}") from None
        _check_export_is_this_runs(os.path.join(config.export_dir, name), workdir)
        # A folder it cannot write into failed after the whole run had trained. The
        # nearest folder that exists is tried: the export makes the others.
        existing = os.path.abspath(config.export_dir)
        while not os.path.isdir(existing):
            existing = os.path.dirname(existing)
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".write-check-", dir=existing))
        except OSError as error:
            raise builders.ConfigError(
                f"config.export_dir: cannot write into {config.export_dir}: {error}."
            ) from None
    created = not os.path.exists(workdir)
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as error:
        raise builders.ConfigError(f"--workdir: cannot create {workdir}: {error}.") from None
    recorded = os.path.exists(os.path.join(workdir, RUN_CONFIG))
    _check_same_run(config, workdir)
    tensorboard_dir = os.path.join(workdir, "tensorboard")
    checkpoint_dir = os.path.join(workdir, "checkpoints")
    backup_dir = os.path.join(workdir, "backup")

    def callbacks(train: tf.data.Dataset, model: SidewaysModel) -> list:
        del model
        os.makedirs(checkpoint_dir, exist_ok=True)
        _log_text(tensorboard_dir, "threads", printing.threads_text(pools))
        checkpoints = os.path.join(checkpoint_dir, "epoch_{epoch:03d}.weights.h5")
        return [
            _WorkdirKept(workdir),  # first: the others would write into a deleted workdir
            _TensorBoard(tensorboard_dir, update_freq=config.log_every_steps),
            _EpochWeights(checkpoints),
            _StopWhenAsked(),
            # Kept after the last epoch until the summary is written: a run stopped in
            # its evaluation or export resumes there, not from the first epoch.
            BackupAndRestore(backup_dir, delete_checkpoint=False),
            *builders.data_callbacks(train),
        ]

    try:
        done = run(
            config,
            callbacks=callbacks,
            verbose=config.verbose,
            strategy=strategy or tf.distribute.get_strategy(),
            evaluate=True,
        )
    except builders.ConfigError:  # refused as the data or model was built: nothing ran
        if not recorded:  # the corrected command would be refused as another config's
            _forget_new_run(workdir, created)
        raise
    config, model, info, scores = done.config, done.model, done.info, done.scores
    check_workdir_kept(workdir, "found after the final evaluation")
    # Weights that stay finite can still give a non-finite loss (logits that overflow, every
    # update skipped for a non-finite gradient): no better a model to export.
    bad_weights = non_finite_weights(model)  # (it reads every weight: once)
    if bad_weights or not math.isfinite(scores.get("loss", 0.0)):
        what = "non-finite weights" if bad_weights else "a non-finite loss"
        raise DivergedError(
            f"Training {name} ended with {what} (validation loss {scores.get('loss')}): "
            "nothing was exported. Lower config.learning_rate."
        )
    export_path = None
    if config.export_dir:
        metadata = dict(
            clip_length=config.data.clip_length,
            temporal_stride=config.data.temporal_stride,
            image_size=config.data.image_size,
            mode=config.mode,
            workdir=workdir,  # whose export it is: another run of that name may not replace it
        )
        if info.task == "classification" and info.class_names:  # a reconstruction has none
            metadata["class_names"] = info.class_names
        export_path = export_saved_model(
            model, os.path.join(config.export_dir, name), metadata=metadata
        )
    summary = dict(
        name=name,
        mode=config.mode,
        engine=model.resolved_engine if config.mode == "sideways" else "bp",
        pipeline_chunk=_chunk_used(model, config),
        precision=model.dtype_policy.name,
        sideways=_sideways_settings(model, config) if config.mode == "sideways" else None,
        task=info.task,
        epochs=config.epochs,
        threads=pools,
        # tf.distribute: its strategy (the default one without --strategy) and replicas.
        distribution=dict(
            strategy=type(model.distribute_strategy).__name__,
            replicas=int(model.distribute_strategy.num_replicas_in_sync),
        ),
        validation={k: float(v) for k, v in scores.items()},
        history={k: [float(x) for x in v] for k, v in done.history.history.items()},
        # The first epoch this command ran (1-based): above 1, it resumed from the backup of
        # the one before, and `history` holds the epochs from there on.
        first_epoch=(done.history.epoch or [config.epochs])[0] + 1,
        workdir=workdir,
        tensorboard=tensorboard_dir,
        checkpoints=checkpoint_dir,
        export=export_path,
    )
    write_json(summary, os.path.join(workdir, "summary.json"))  # whole, or not at all
    shutil.rmtree(backup_dir, ignore_errors=True)  # finished: nothing left to resume
    return summary


def _sideways_settings(model, config) -> dict:
    """Sideways' stash, drain and delay lines, and what they cost: the stash's bytes (kept
    by the tick-by-tick loop), the drain's extra ticks per clip, the relays."""
    return dict(
        stash=list(model.stash),
        relays=sum(model.graph.relays),
        drain=model.graph.drain,
        exact=model.graph.is_exact,
        stash_bytes=model.stash_bytes(),
        tail_ticks=model.graph.tail_ticks,
        clip_length=config.data.clip_length,
    )


def _log_text(log_dir: str, tag: str, text: str) -> None:
    """Writes `text` as a TensorBoard text summary at step 0 in `log_dir`."""
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        tf.summary.text(tag, text, step=0)
    writer.close()


def _chunk_used(model: SidewaysModel, config) -> int | None:
    """Ticks per block of the run's pipeline engine; None for other engines or tick by tick."""
    if config.mode != "sideways" or model.resolved_engine != "pipeline":
        return None
    return model.resolved_chunk(config.data.clip_length)
