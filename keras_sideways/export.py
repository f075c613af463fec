"""Export a SidewaysModel as a TensorFlow SavedModel for clip and streaming inference."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from keras_sideways import clips
from keras_sideways.engines import bp, pipeline, windows


class _Exported(tf.Module):
    """What the SavedModel holds: the weights, the stream state and three endpoints."""

    def __init__(self, model):
        super().__init__(name="sideways_export")
        self._stages = model.stages
        self._classifier = model.is_classifier()
        self._logits = model.outputs_are_logits()
        self.weights = [v.value for v in model.variables]  # tracked, so they are saved
        frame_shape = model.frame_shape
        # The stream runs wherever the SavedModel is loaded: the graph, without devices.
        self._graph = model.graph.placed([None] * len(model.stages))
        buffered = self._graph.buffered
        below = [s.shape[1:] for s in model.buffers.activations]
        # A_k of the streaming pipeline; any number of streams, set by the first frame.
        self.state = [
            tf.Variable(
                tf.zeros([0, *shape]),
                shape=[None, *shape],
                trainable=False,
                name=f"stream_activation_{k}",
            )
            for k, shape in zip(buffered, below)
        ]
        # The last W-1 inputs of each temporal stage, oldest first, [W-1, streams, ...].
        self.windows = list(self._graph.windows)
        inputs = self._graph.stage_inputs(frame_shape, below)
        self.temporal = [k for k, w in enumerate(self.windows) if w > 1]
        self.histories = [
            tf.Variable(
                tf.zeros([w - 1, 0, *inputs[k]]),
                shape=[w - 1, None, *inputs[k]],
                trainable=False,
                name=f"stream_history_{k}",
            )
            for k in self.temporal
            for w in [self.windows[k]]
        ]
        self.primed = tf.Variable(False, trainable=False, name="stream_primed")
        self.serve = tf.function(
            self._serve, input_signature=[tf.TensorSpec([None, None, *frame_shape], tf.float32)]
        )
        self.stream = tf.function(
            self._stream, input_signature=[tf.TensorSpec([None, *frame_shape], tf.float32)]
        )
        self.reset = tf.function(self._reset, input_signature=[])

    def _serve(self, video):
        shape = tf.shape(video)
        with tf.control_dependencies(
            [
                tf.debugging.assert_positive(shape[0], message="serve: a video of 0 clips"),
                tf.debugging.assert_positive(shape[1], message="serve: clips of 0 frames"),
            ]
        ):
            # oneDNN's fused convolutions can turn a NaN into finite outputs: refused instead
            video = tf.debugging.assert_all_finite(
                video, "serve: the video holds non-finite values (NaN or inf)"
            )
        frames = bp.frame_outputs(self._stages, video, training=False, graph=self._graph)
        result = {"frames": tf.cast(frames, tf.float32)}  # whatever the dtype policy
        if self._classifier:
            result["probabilities"] = clips.clip_probabilities(result["frames"], self._logits)
        return result

    def _stream(self, frame):
        # Every op that writes the state reads the checked frame: a refused one changes nothing.
        frame = tf.debugging.assert_all_finite(
            frame, "stream: the frame holds non-finite values (NaN or inf)"
        )

        def prime():
            primed = pipeline.prime(self._stages, frame, training=False, graph=self._graph)
            histories = windows.primed_histories(
                self.windows, self._graph.stage_inputs(frame, primed)
            )
            assigned = _assigned(self.state, primed)
            assigned += _assigned(self.histories, [histories[k] for k in self.temporal])
            with tf.control_dependencies(assigned):
                return tf.constant(True)

        some = tf.debugging.assert_positive(
            tf.shape(frame)[0], message="stream: a frame of 0 streams"
        )
        with tf.control_dependencies([some]):
            tf.cond(self.primed, lambda: tf.constant(False), prime)
        same = tf.debugging.assert_equal(
            tf.shape(frame)[0],
            tf.shape(self.state[0])[0],
            message="stream: the number of streams changed; call reset() first",
        )
        # A refused frame changes nothing: every op of the tick waits for the check.
        with tf.control_dependencies([same]):
            # Every stage reads the state of the last tick, then all of it is overwritten.
            activations = [buffer.read_value() for buffer in self.state]
            histories = {k: v.read_value() for k, v in zip(self.temporal, self.histories)}
            outputs = pipeline.forward_tick(
                self._stages, frame, activations, False, self._graph, histories
            )
            histories = windows.advanced(histories, self._graph.stage_inputs(frame, activations))
            assigned = _assigned(self.state, self._graph.held(outputs))
            assigned += _assigned(self.histories, [histories[k] for k in self.temporal])
        with tf.control_dependencies(assigned):
            self.primed.assign(True)
            return {"output": tf.cast(outputs[self._graph.top], tf.float32)}

    def _reset(self):
        self.primed.assign(False)
        return {"primed": tf.identity(self.primed)}


def _assigned(variables: list, values: list) -> list:
    """Assigns each value to its variable. The stream's state is float32 whatever the
    dtype policy: a 16-bit activation (mixed precision) is held exactly, and each stage
    casts what it reads to its compute dtype, as it casts the frames."""
    return [v.assign(tf.cast(x, v.dtype)) for v, x in zip(variables, values)]


METADATA_FILE = "sideways.json"


def non_finite_weights(model) -> list[str]:
    """The paths of the model's weights that hold a NaN or an infinity."""
    return [v.path for v in model.weights if not np.all(np.isfinite(v.numpy()))]


def export_saved_model(model, path: str | os.PathLike, metadata: dict | None = None) -> str:
    """Writes `model` as a TensorFlow SavedModel at `path`, replacing what stood there.

    Endpoints (also as signatures):
      - `serve(video)`: video [batch, time, H, W, C] -> {"frames": per-frame outputs,
        "probabilities": clip class probabilities (classifiers only)}.
      - `stream(frame)`: frame [batch, H, W, C] -> {"output": the pipeline's output this
        tick}, which belongs to the frame L-1 calls earlier (the first frame until then).
        The pipeline state lives in variables inside the SavedModel.
      - `reset()`: forget the stream; the next `stream` call primes on its frame.

    `metadata` (class names, clip length, ...) is written as JSON to `sideways.json`
    inside the export, with the number of stages and the frame shape added, for
    `train/predict.py` (`keras_sideways.inference.classify_video_file`), which reads
    `clip_length` (frames per clip; required), `temporal_stride` (default 1) and
    `class_names` (default "class 0", "class 1", ...) from it.
    The SavedModel is written beside `path` and renamed into place, so an interrupted
    export never leaves a half-written model where a good one stood. A model with a
    non-finite weight is refused (ValueError), leaving `path` as it was, and so is a `path`
    that is a file or a folder of other files (not an earlier SavedModel), which the
    replacement would delete.

    Returns:
        The path written.
    """
    if not model.built or model.frame_shape is None:
        raise ValueError(
            "Export needs a built model: fit it, or call it on a batch of video "
            f"{clips.VIDEO_LAYOUT}, first."
        )
    broken = non_finite_weights(model)
    if broken:
        raise ValueError(
            f"Refusing to export a model with non-finite weights ({', '.join(broken[:5])}"
            f"{', ...' if len(broken) > 5 else ''}): training diverged. Nothing was written "
            f"to {os.fspath(path)}."
        )
    path = os.path.abspath(os.fspath(path))
    check_export_path(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    module = _Exported(model)
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        tf.saved_model.save(
            module,
            staging,
            signatures={"serve": module.serve, "stream": module.stream, "reset": module.reset},
        )
        metadata = dict(metadata or {}, num_stages=len(model.stages), frame_shape=model.frame_shape)
        with open(os.path.join(staging, METADATA_FILE), "w") as f:
            json.dump(metadata, f, indent=2)
        _replace_dir(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def check_export_path(path: str | os.PathLike) -> None:
    """Raises ValueError unless `export_saved_model` may write to `path`: a free path, an
    empty folder or an earlier SavedModel (which it replaces whole), never a file or a
    folder of other files. A training run checks its export path with it first."""
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(
            f"Cannot export to {path}: it is a file. Give the path of a folder: a new or "
            "empty one, or an earlier export, which is replaced."
        )
    entries = sorted(os.listdir(path)) if os.path.isdir(path) else []
    if entries and "saved_model.pb" not in entries:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise ValueError(
            f"Refusing to export to {path}: the export replaces the whole folder, and this "
            f"one is not an earlier export but holds other files ({shown}). Export to a new "
            "or empty folder (e.g. a subfolder), or to an earlier export. Nothing was written."
        )


def _replace_dir(new: str, target: str) -> None:
    """Moves directory `new` to `target`, swapping out an existing `target` by renames."""
    if not os.path.exists(target):
        os.rename(new, target)
        return
    old = tempfile.mkdtemp(prefix=".replaced-", dir=os.path.dirname(target))
    os.rmdir(old)
    os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)
