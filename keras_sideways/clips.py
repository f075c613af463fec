"""What a clip batch and its targets look like: validation, frame flattening, clip scores."""

from __future__ import annotations

import warnings

import keras
import tensorflow as tf

VIDEO_LAYOUT = "[batch, time, height, width, channels]"


def _shape_text(shape: tf.TensorShape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape.as_list()) + "]"


def check_video(video) -> None:
    """Raises ValueError unless `video` is a float tensor laid out as VIDEO_LAYOUT."""
    check_video_shape(video.shape)
    dtype = tf.as_dtype(video.dtype)
    if not dtype.is_floating:
        raise ValueError(
            f"Expected a float video {VIDEO_LAYOUT} (e.g. float32 in [0, 1]); got dtype "
            f"{dtype.name}. Convert it first, e.g. tf.cast(video, tf.float32) / 255."
        )


def check_video_shape(shape) -> None:
    """Raises ValueError unless `shape` is VIDEO_LAYOUT with at least one frame."""
    shape = tf.TensorShape(shape)
    if shape.rank != 5:
        raise ValueError(
            f"Expected video of rank 5, laid out as {VIDEO_LAYOUT}; "
            f"got rank {shape.rank} with shape {_shape_text(shape)}."
        )
    if shape[1] == 0:
        raise ValueError(
            f"Expected video {VIDEO_LAYOUT} with at least one frame; got an empty time "
            f"axis, shape {_shape_text(shape)}."
        )


def check_target(video, target) -> None:
    """Raises ValueError unless `target` is a clip label [batch] or per-frame [batch, time, ...]."""
    vshape, tshape = tf.TensorShape(video.shape), tf.TensorShape(target.shape)
    if tshape.rank == 0:
        raise ValueError(
            "Expected a target of shape [batch] (clip label) or [batch, time, ...] "
            "(per-frame targets); got a scalar."
        )
    if vshape[0] is not None and tshape[0] is not None and vshape[0] != tshape[0]:
        raise ValueError(
            f"Video and target must have the same batch size; got video "
            f"{_shape_text(vshape)} {VIDEO_LAYOUT} and target {_shape_text(tshape)}."
        )
    if tshape.rank >= 2 and None not in (vshape[1], tshape[1]) and vshape[1] != tshape[1]:
        raise ValueError(
            f"Per-frame targets must be [batch, time, ...] with the video's time "
            f"({vshape[1]}); got target {_shape_text(tshape)} for video "
            f"{_shape_text(vshape)}. Clip labels must be [batch]."
        )


def check_sample_weight(video, sample_weight) -> None:
    """Raises ValueError unless `sample_weight` is None or one weight per clip, [batch]."""
    if sample_weight is None:
        return
    shape = tf.TensorShape(sample_weight.shape)
    if shape.rank != 1:
        raise ValueError(
            f"Expected sample weights of shape [batch], one per clip; got {_shape_text(shape)}."
        )


def check_stream_batch(video, target, capacity: int | None) -> None:
    """Raises ValueError unless a stateful model can continue its streams with this batch.

    Streaming needs clip labels (per-frame targets would need the previous chunk's) and
    the batch size the buffers were built with (`capacity`; None before they exist).
    """
    if not is_clip_target(target):
        raise ValueError(
            "stateful=True supports clip labels [batch] only: per-frame targets "
            f"{_shape_text(tf.TensorShape(target.shape))} would need the targets of the "
            "previous chunk."
        )
    batch = video.shape[0]
    if capacity is not None and batch is not None and batch != capacity:
        raise ValueError(
            f"stateful=True fixes the batch size to {capacity} (the first batch); got a "
            f"batch of {batch}. Use drop_remainder=True when batching, or call "
            "reset_pipeline() and build a new model."
        )


def is_clip_target(target) -> bool:
    """True for clip labels [batch]; False for per-frame targets [batch, time, ...]."""
    return tf.TensorShape(target.shape).rank == 1


def frames_to_batch(x: tf.Tensor) -> tf.Tensor:
    """[batch, time, ...] -> [batch * time, ...], keeping the static shape known."""
    flat = tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], axis=0))
    batch, time = x.shape[0], x.shape[1]
    flat.set_shape([None if None in (batch, time) else batch * time, *x.shape[2:]])
    return flat


def batch_to_frames(x: tf.Tensor, video: tf.Tensor) -> tf.Tensor:
    """[batch * time, ...] -> [batch, time, ...], with batch and time taken from `video`."""
    frames = tf.reshape(x, tf.concat([tf.shape(video)[:2], tf.shape(x)[1:]], axis=0))
    frames.set_shape([video.shape[0], video.shape[1], *x.shape[1:]])
    return frames


def per_frame(target: tf.Tensor, time: tf.Tensor) -> tf.Tensor:
    """Clip labels [batch] repeated over time, or per-frame targets, as [batch * time, ...]."""
    if is_clip_target(target):
        return tf.repeat(target, time, axis=0)
    return frames_to_batch(target)


def clip_probabilities(outputs: tf.Tensor, from_logits: bool) -> tf.Tensor:
    """Per-frame outputs [batch, time, classes] -> clip class probabilities [batch, classes].

    Video classification is scored on the per-frame class probabilities averaged over
    time; logits are turned into probabilities first (sigmoid for one output unit).
    """
    if from_logits:
        if outputs.shape[-1] == 1:
            outputs = tf.sigmoid(outputs)
        else:
            outputs = tf.nn.softmax(outputs, axis=-1)
    return tf.reduce_mean(outputs, axis=1)


def warn_if_too_short(clip_length: int | None, num_stages: int) -> bool:
    """Warns (and returns True) when a clip is too short for every stage to get an error."""
    if clip_length is None or clip_length >= num_stages:
        return False
    warnings.warn(
        f"Clips of {clip_length} frames are too short for a {num_stages}-stage Sideways "
        f"pipeline: the bottom {num_stages - clip_length} stage(s) get no valid error within "
        f"a clip, so their gradient is zero. Use clips of at least {num_stages} frames.",
        stacklevel=4,
    )
    return True


def is_classification_loss(loss) -> bool:
    """True for a categorical cross-entropy loss (by name or object): clip classification."""
    name = loss if isinstance(loss, str) else type(loss).__name__
    return name.replace("_", "").lower() in (
        "sparsecategoricalcrossentropy",
        "categoricalcrossentropy",
    )


def loss_takes_logits(loss) -> bool:
    """True when `loss` is a Keras loss object with from_logits=True."""
    if isinstance(loss, keras.losses.Loss):
        return bool(loss.get_config().get("from_logits", False))
    return False
