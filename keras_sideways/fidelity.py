"""How close Sideways' pseudo-gradients are to the true BP gradients, stage by stage.

docs/algorithm.md: stage `k` of `L` pairs an activation of frame `t-k` with an error born from
frame `t-2L+2+k`, a gap of `2(L-1-k)` frames; on smooth video the pseudo-gradient is
close to the BP gradient, and on a static video it is exactly that. These functions
measure "close" on a given batch, with both gradients from
`SidewaysModel.compute_gradients` at the same weights:

- the cosine similarity between stage `k`'s pseudo-gradient and its BP gradient, each
  stage's variables flattened and concatenated into one vector;
- the ratio of their norms, ||sideways|| / ||bp||.

A stage without trainable weights (pooling, an activation) has no gradient to compare:
its figures are None, never a number, and it is left out of the means over stages. A
stage with weights where either gradient is exactly zero (a clip shorter than the
pipeline leaves the bottom stages without an error) gets NaN, as the cosine is undefined
there, and is left out of the means too.

`GradientFidelity` is the Keras callback that logs them to TensorBoard during `fit`. It
does all its work in its own hooks: a model trained without it computes nothing extra.
"""

from __future__ import annotations

import contextlib
import math
import os
import weakref
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_sideways.clips import check_positive_int
from keras_sideways.engines import gradients

FIDELITY_SUBDIR = "fidelity"


def stage_variable_indices(model) -> list[list[int]]:
    """For each stage, the positions of its variables in `model.trainable_variables`."""
    return gradients.stage_variable_indices(model.trainable_variables, model.stages)


def gradient_fidelity(
    sideways: Sequence, bp: Sequence, groups: Sequence[Sequence[int]]
) -> dict[str, list[float | None] | float]:
    """Cosine and norm ratio of two gradient lists, per group of variables.

    Args:
        sideways: the pseudo-gradients, one array per variable.
        bp: the BP gradients, aligned with `sideways`.
        groups: for each stage, the indices of its variables in both lists.

    Returns:
        {"cosine": [per stage], "norm_ratio": [per stage], "cosine_mean": float,
        "norm_ratio_mean": float}. A group without variables gives None, one where
        either gradient is zero NaN; both are left out of the means (NaN if no group is
        left).
    """
    if len(sideways) != len(bp):
        raise ValueError(
            f"Expected two gradient lists of the same length; got {len(sideways)} "
            f"(sideways) and {len(bp)} (bp)."
        )
    cosines, ratios = [], []
    for group in groups:
        if not group:  # a stage without weights: nothing to compare
            cosines.append(None)
            ratios.append(None)
            continue
        s = np.concatenate([np.ravel(np.asarray(sideways[i], np.float64)) for i in group])
        b = np.concatenate([np.ravel(np.asarray(bp[i], np.float64)) for i in group])
        s_norm, b_norm = np.linalg.norm(s), np.linalg.norm(b)
        if s_norm == 0 or b_norm == 0:
            cosines.append(math.nan)
            ratios.append(math.nan)
            continue
        cosines.append(float(np.dot(s, b) / (s_norm * b_norm)))
        ratios.append(float(s_norm / b_norm))
    return dict(
        cosine=cosines,
        norm_ratio=ratios,
        cosine_mean=_nanmean(cosines),
        norm_ratio_mean=_nanmean(ratios),
    )


def _nanmean(values: Sequence[float | None]) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def stage_fidelity(
    model, video, target, sample_weight=None
) -> dict[str, list[float | None] | float]:
    """Per-stage cosine and norm ratio of the Sideways pseudo-gradient to the BP gradient.

    Both gradients are what one `train_step` on this batch would apply, at the model's
    current weights (`model.compute_gradients` with mode "sideways" and "bp"); nothing is
    applied and a stateful pipeline is left as it was. A stream's held clip is measured
    primed afresh, not paired with the state its training left (`_primed_afresh`).

    Args:
        model: a `SidewaysModel`, compiled with its loss.
        video: float [batch, time, height, width, channels].
        target: clip labels [batch] or per-frame targets [batch, time, ...].
        sample_weight: optional per-clip weights [batch].

    Returns:
        As `gradient_fidelity`: {"cosine": [...], "norm_ratio": [...], "cosine_mean",
        "norm_ratio_mean"}, one entry per stage, bottom first (None for a stage
        without weights).
    """
    with _primed_afresh(model, int(np.shape(video)[0])):
        sideways = model.compute_gradients(video, target, sample_weight, mode="sideways")
        bp = model.compute_gradients(video, target, sample_weight, mode="bp")
    return gradient_fidelity(
        [g.numpy() for g in sideways], [g.numpy() for g in bp], stage_variable_indices(model)
    )


@contextlib.contextmanager
def _primed_afresh(model, batch: int):
    """A stream's (`stateful=True`) pipeline cleared while the held clip is measured, and
    put back after: the clip is primed afresh, as BP's gradient of it assumes, and not
    paired with the state the last training chunk left. A stream that has started holds
    one lane per clip of its batch size: a held batch of another size is a ValueError."""
    if not getattr(model, "stateful", False) or not model._stream_started:
        yield  # nothing carried (and a stream not started takes the held batch's size)
        return
    if model.buffers.capacity != batch:
        raise ValueError(
            f"GradientFidelity on a stream (stateful=True) measures a held batch of the "
            f"stream's batch size, {model.buffers.capacity} clips; got {batch}."
        )
    saved = [tf.identity(v.value) for v in model.buffers.variables]
    model.buffers.reset()
    try:
        yield
    finally:
        for variable, value in zip(model.buffers.variables, saved):
            variable.assign(value)


def _held_batch(batch):
    """(video, target, sample_weight) from a tuple or from a dataset's first element."""
    if isinstance(batch, tf.data.Dataset):
        batch = next(iter(batch), None)
        if batch is None:
            raise ValueError("GradientFidelity's dataset is empty: it needs one held batch.")
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        raise ValueError(
            "GradientFidelity needs a held batch (video, target) or (video, target, "
            f"sample_weight), or a tf.data.Dataset of them; got {type(batch).__name__}."
        )
    video, target = tf.convert_to_tensor(batch[0]), tf.convert_to_tensor(batch[1])
    weight = None if len(batch) == 2 or batch[2] is None else tf.convert_to_tensor(batch[2])
    for name, value in (("video", video), ("target", target), ("sample_weight", weight)):
        if value is not None and value.dtype.is_floating and not np.isfinite(value).all():
            raise ValueError(
                f"GradientFidelity's held {name} holds non-finite values (NaN or inf): "
                "every gradient measured on it would be too."
            )
    return video, target, weight


def steps_done(callback: keras.callbacks.Callback, batch: int) -> int:
    """The steps of the epoch run when `on_train_batch_end(batch)` is called: with
    `steps_per_execution` > 1, Keras passes the last step of the call, past the epoch's
    end where the steps do not divide it (its last call runs fewer)."""
    steps = (callback.params or {}).get("steps")
    return batch + 1 if steps is None else min(batch + 1, int(steps))


class GradientFidelity(keras.callbacks.Callback):
    """Logs, every few training steps, how close Sideways' pseudo-gradients are to BP's.

    On a held batch, at the current weights, for each stage `k`: the cosine similarity
    between its Sideways pseudo-gradient and its BP gradient, and the ratio of their
    norms (`stage_fidelity`), plus their means over the stages with weights. A stage
    without weights has None in `history` and no TensorBoard scalar. Written to
    TensorBoard as `fidelity/cosine_stage{k}`, `fidelity/norm_ratio_stage{k}`,
    `fidelity/cosine_mean` and `fidelity/norm_ratio_mean` at the global training step,
    and kept in `history`. Measured once before the first step (step 0) and then after
    every `every_n_steps` steps (with `steps_per_execution` > 1, at the end of the call
    that passes each multiple). A run resumed at epoch k (`BackupAndRestore`) counts its
    steps from k times the steps of an epoch, and is measured first at that step, with
    the restored weights. The model may train in either mode: the figures describe the
    gradients at the weights it has reached. Its steps go on over the `fit` calls of one
    model; given to another model's `fit`, it starts again at step 0 with a new history.

    Args:
        batch: the held batch, (video, target) or (video, target, sample_weight), or a
            `tf.data.Dataset` whose first element is taken.
        every_n_steps: measure after every this many training steps (batches).
        log_dir: the TensorBoard root; the scalars go to its `fidelity` subfolder, beside
            the `train` and `validation` runs of a `keras.callbacks.TensorBoard` with the
            same root. None writes nothing: `history` only.

    Attributes:
        history: one dict per measurement: "step" and the keys of `stage_fidelity`.
    """

    def __init__(self, batch, every_n_steps: int = 100, log_dir: str | None = "logs"):
        super().__init__()
        every_n_steps = check_positive_int("every_n_steps", every_n_steps)
        self.video, self.target, self.sample_weight = _held_batch(batch)
        self.every_n_steps = every_n_steps
        self.log_dir = None if log_dir is None else os.path.join(log_dir, FIDELITY_SUBDIR)
        for folder in () if log_dir is None else (log_dir, self.log_dir):
            if os.path.exists(folder) and not os.path.isdir(folder):
                raise ValueError(
                    f"GradientFidelity's log_dir: {folder} is a file; expected a folder for "
                    "its TensorBoard scalars (or log_dir=None)."
                )
        self.history: list[dict] = []
        self.step = 0  # training steps seen, over every fit call of one model
        self._epoch_start = 0
        self._writer = None
        self._measured = None  # the model of `history`

    def on_train_begin(self, logs=None):
        if not hasattr(self.model, "compute_gradients") or not hasattr(self.model, "stages"):
            raise ValueError(
                f"GradientFidelity needs a SidewaysModel; got a {type(self.model).__name__}."
            )
        if self._measured is not None and self._measured() is not self.model:
            self.history, self.step, self._epoch_start = [], 0, 0  # another model's: anew
        self._measured = weakref.ref(self.model)
        if self.log_dir is not None and self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_begin(self, epoch, logs=None):
        steps = (self.params or {}).get("steps")
        if steps:  # a resumed run starts at its epoch's first step
            self.step = max(self.step, epoch * int(steps))
        self._epoch_start = self.step
        if not self.history:  # after BackupAndRestore has restored the weights
            self.measure()

    def on_train_batch_end(self, batch, logs=None):
        step = self._epoch_start + steps_done(self, batch)
        due = step // self.every_n_steps > self.step // self.every_n_steps
        self.step = step
        if due:
            self.measure()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.flush()

    def measure(self) -> dict:
        """Computes the figures now, logs them at the current step and returns them."""
        figures = stage_fidelity(self.model, self.video, self.target, self.sample_weight)
        record = dict(step=self.step, **figures)
        self.history.append(record)
        if self._writer is not None:
            with self._writer.as_default(step=self.step):
                for k, (cosine, ratio) in enumerate(zip(figures["cosine"], figures["norm_ratio"])):
                    if cosine is not None and not math.isnan(cosine):
                        tf.summary.scalar(f"{FIDELITY_SUBDIR}/cosine_stage{k}", cosine)
                        tf.summary.scalar(f"{FIDELITY_SUBDIR}/norm_ratio_stage{k}", ratio)
                tf.summary.scalar(f"{FIDELITY_SUBDIR}/cosine_mean", figures["cosine_mean"])
                tf.summary.scalar(f"{FIDELITY_SUBDIR}/norm_ratio_mean", figures["norm_ratio_mean"])
        return record
