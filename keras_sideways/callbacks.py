"""Keras callbacks shipped with keras_sideways."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from keras_sideways.clips import check_positive_int
from keras_sideways.fidelity import GradientFidelity, steps_done

__all__ = [
    "BackupAndRestore",
    "GradientFidelity",
    "ProgbarLogger",
    "ResetPipeline",
    "SetDataEpoch",
    "SkippedEpochWarning",
    "TrainingClock",
]

COUNTERS = ("skipped_updates", "loss_scale_skips")  # counts of skipped steps in fit's logs


class _Count(float):
    """A count in Keras' progress bar, which formats every value as a float (`:.4f`)."""

    def __truediv__(self, other):
        return _Count(float(self) / other)

    def __format__(self, spec):
        return str(round(self))


class ProgbarLogger(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, showing the counts of skipped steps only where they are not
    zero, as whole numbers: `skipped_updates: 2`, not `skipped_updates: 0.0000e+00`.

    `SidewaysModel.fit` uses it when no other progress bar is given. The logs and the
    History keep every count, zero or not, per epoch.
    """

    def _update_progbar(self, batch, logs=None):
        super()._update_progbar(batch, _shown(logs))

    def _finalize_progbar(self, logs):
        super()._finalize_progbar(_shown(logs))


def _shown(logs: dict | None) -> dict:
    """`logs` with the counts that are zero left out and the others as whole numbers."""
    shown = {}
    for name, value in (logs or {}).items():
        if name.removeprefix("val_") not in COUNTERS:
            shown[name] = value
        elif float(value):
            shown[name] = _Count(float(value))
    return shown


class SkippedEpochWarning(keras.callbacks.Callback):
    """Warns at the end of an epoch in which every training step was skipped.

    `SidewaysModel.fit` adds it. Such an epoch left the weights as they were; its loss
    and metrics read NaN.
    """

    def __init__(self):
        super().__init__()
        self._steps = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self._steps = steps_done(self, batch)

    def on_epoch_end(self, epoch, logs=None):
        skipped = float((logs or {}).get("skipped_updates", 0.0))
        if not self._steps or math.isnan(skipped) or round(skipped) < self._steps:
            return
        warnings.warn(
            f"Epoch {epoch + 1}: every one of its {self._steps} training steps was skipped "
            "(logs['skipped_updates']), so the weights did not change and its loss reads "
            "nan. A step is skipped when its video, loss or gradients are not finite (NaN "
            "or inf), or when its update would make a weight non-finite (a diverging "
            "learning rate). To find the bad batches, check the videos and targets with "
            "np.isfinite, or watch logs['skipped_updates'] (a running count within the "
            "epoch) grow in a callback's on_train_batch_end with steps_per_execution=1.",
            RuntimeWarning,
            stacklevel=2,
        )


class ResetPipeline(keras.callbacks.Callback):
    """Clears a stateful SidewaysModel's pipeline buffers at every epoch start.

    With `stateful=True`, consecutive batches continue the same videos; a new epoch
    starts the videos again, so the buffers must not carry the end of the last one.

    Args:
        every_n_batches: also clear them every this many batches, where a new batch of
            videos begins: `data.consecutive_chunks(...).chunks_per_video`. None: only
            at epoch starts. Needs `steps_per_execution=1` (Keras calls batch hooks
            once per execution).
    """

    def __init__(self, every_n_batches: int | None = None):
        super().__init__()
        if every_n_batches is not None:
            every_n_batches = check_positive_int("every_n_batches (or None)", every_n_batches)
        self.every_n_batches = every_n_batches

    def on_train_begin(self, logs=None):
        if not hasattr(self.model, "reset_pipeline"):
            raise ValueError(
                f"ResetPipeline resets a SidewaysModel's pipeline; got a "
                f"{type(self.model).__name__}."
            )
        steps = int(getattr(self.model, "steps_per_execution", 1) or 1)
        if self.every_n_batches is not None and steps != 1:
            raise ValueError(
                "ResetPipeline(every_n_batches=...) resets between batches, which needs "
                f"compile(steps_per_execution=1); got steps_per_execution={steps}."
            )

    def on_epoch_begin(self, epoch, logs=None):
        self.model.reset_pipeline()

    def on_train_batch_begin(self, batch, logs=None):
        if self.every_n_batches and batch and batch % self.every_n_batches == 0:
            self.model.reset_pipeline()


class SetDataEpoch(keras.callbacks.Callback):
    """Tells a training set of `keras_sideways.data` which epoch `fit` runs, at every epoch start.

    The builders draw each epoch's order and clip starts from their seed, the epoch and the
    example alone, and read the epoch from `dataset.epoch` as a pass begins
    (`data.epochs`). Set from `fit`'s epoch, a run that `BackupAndRestore` resumes at
    epoch k draws epoch k's data, as the run that was never stopped did; the same role as
    PyTorch's `DistributedSampler.set_epoch`. Needs one pass of the dataset per epoch
    (no `steps_per_epoch` shorter than the dataset: warned when `fit` starts).

    Args:
        dataset: a dataset with an `epoch` variable (a shuffled or training set of the
            builders, or `consecutive_chunks` of one), or that variable.
    """

    def __init__(self, dataset):
        super().__init__()
        epoch = getattr(dataset, "epoch", dataset)
        if not isinstance(epoch, tf.Variable):
            raise ValueError(
                "SetDataEpoch needs a dataset with an `epoch` variable (a training set of "
                "keras_sideways.data) or that variable; got "
                f"{type(dataset).__name__} without one. Datasets derived with map, take... "
                "lose the attribute: pass the builder's `dataset.epoch`."
            )
        self.epoch = epoch
        batches = int(dataset.cardinality()) if isinstance(dataset, tf.data.Dataset) else -1
        self._batches = batches if batches > 0 else None  # a pass's, where known

    def on_train_begin(self, logs=None):
        steps = (self.params or {}).get("steps")
        if self._batches and steps and steps < self._batches:
            warnings.warn(
                f"SetDataEpoch: fit runs {steps} steps an epoch (steps_per_epoch), fewer than "
                f"the {self._batches} batches of a pass of the dataset, so fit's epochs are not "
                "passes of the data: a pass reads its epoch only as it begins, and a resumed "
                "run does not draw the data of the run that was never stopped. Leave "
                "steps_per_epoch out, or build the dataset with fewer clips.",
                stacklevel=2,
            )

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch.assign(epoch)


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` whose backups are replaced atomically.

    Keras writes the backup in place, so a process killed mid-write leaves a corrupt
    file where the last good one stood. Here each file is written beside it and renamed
    into place (the weights first, then the epoch that says they are complete). The
    backup holds the weights, the optimizer state and a stateful model's pipeline buffers.
    With `double_checkpoint=True`, the backup it replaces is kept beside it (Keras' `.bkp`
    files, also written beside and renamed), which Keras restores from where the newest
    cannot be read.
    """

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        if self.double_checkpoint:
            for current, previous in (
                (self._weights_path, self._prev_weights_path),
                (self._training_metadata_path, self._prev_training_metadata_path),
            ):
                if os.path.exists(current):
                    shutil.copyfile(current, previous + ".staging")
                    os.replace(previous + ".staging", previous)
        staged_weights = os.path.join(self.backup_dir, "staging.weights.h5")
        staged_metadata = os.path.join(self.backup_dir, "staging_metadata.json")
        self.model.save_weights(staged_weights, overwrite=True)
        with open(staged_metadata, "w") as f:
            json.dump({"epoch": self._current_epoch, "batch": self._last_batch_seen}, f)
        os.replace(staged_weights, self._weights_path)
        os.replace(staged_metadata, self._training_metadata_path)


class TrainingClock(keras.callbacks.Callback):
    """Wall-clock seconds spent training in each epoch, validation left out.

    An epoch's time runs from its start to the end of its last training batch; Keras
    validates after that, so validation is not counted. What runs in the epoch is: the
    first epoch's tracing, the input pipeline, and other callbacks' batch hooks. Keras
    turns each batch's logs into numbers before the batch-end hooks, so on an accelerator
    too the time is that of finished steps. Successive `fit` calls add to the same clock.

    Args:
        timer: seconds from an arbitrary origin (default `time.perf_counter`).

    Attributes:
        history: the training seconds of each epoch, in order.
    """

    def __init__(self, timer: Callable[[], float] = time.perf_counter):
        super().__init__()
        self.timer = timer
        self.history: list[float] = []
        self._start = self._last = 0.0

    @property
    def cumulative(self) -> list[float]:
        """Training seconds from the first epoch's start to the end of each epoch."""
        total, sums = 0.0, []
        for seconds in self.history:
            total += seconds
            sums.append(total)
        return sums

    def on_epoch_begin(self, epoch, logs=None):
        self._start = self._last = self.timer()

    def on_train_batch_end(self, batch, logs=None):
        self._last = self.timer()

    def on_epoch_end(self, epoch, logs=None):
        self.history.append(self._last - self._start)


def with_fit_callbacks(callbacks, verbose, labels: list, warn: bool = False) -> list:
    """The callbacks `SidewaysModel.fit` and `evaluate` run: the checks of array `labels`
    first, then (`warn`, in `fit`) `SkippedEpochWarning`, then `callbacks` and, where Keras
    would add its own, the `ProgbarLogger` that shows counts of skipped steps as counts."""
    if isinstance(callbacks, keras.callbacks.CallbackList):  # fit's, for validation
        return callbacks
    callbacks = list(callbacks or [])
    extra = [_LabelCheck(labels)]
    if warn:
        extra.append(SkippedEpochWarning())
    if verbose != 0 and not any(isinstance(c, keras.callbacks.ProgbarLogger) for c in callbacks):
        callbacks.append(ProgbarLogger())
    return extra + callbacks


def validation_labels(validation_data) -> list:
    """The labels of `fit`'s validation_data, when given as a tuple (else none)."""
    if isinstance(validation_data, (tuple, list)) and len(validation_data) >= 2:
        return [validation_data[1]]
    return []


class _LabelCheck(keras.callbacks.Callback):
    """Checks array labels once the model is built, before the first step of `fit` or
    `evaluate` (where Keras builds the model on the first batch)."""

    def __init__(self, labels):
        super().__init__()
        self.labels = [y for y in labels if isinstance(y, (np.ndarray, tf.Tensor, list))]

    def on_train_begin(self, logs=None):
        self._check()

    def on_test_begin(self, logs=None):
        self._check()

    def _check(self):
        for y in self.labels:
            self.model._checked_labels(np.asarray(y))
        self.labels = []  # once: fit's validation begins a test run each epoch
