"""What a clip batch and its targets look like: validation, frame flattening, clip scores."""

from __future__ import annotations

import numbers
import warnings

import keras
import numpy as np
import tensorflow as tf

VIDEO_LAYOUT = "[batch, time, height, width, channels]"


def check_positive_int(name: str, value) -> int:
    """Returns `value` as an int; raises ValueError unless it is a positive integer (a
    Python or numpy integer, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"Expected {name} to be a positive integer; got {value!r}.")
    return int(value)


def shape_text(shape: tf.TensorShape) -> str:
    """A shape as the errors write it: [2, ?, 8] (or "unknown", of unknown rank)."""
    if tf.TensorShape(shape).rank is None:
        return "unknown"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape.as_list()) + "]"


# A dataset of dicts (tensorflow-datasets without as_supervised) is the usual way to give
# the model a structure instead of one video tensor.
_PAIRS_HINT = (
    "A dataset must yield (video, target) pairs (or (video, target, sample_weight)): load "
    "a tensorflow-datasets dataset with as_supervised=True, or map it, e.g. "
    "dataset.map(lambda d: (d['video'], d['label']))."
)


def _structure_text(value) -> str | None:
    """What `value` is when it is a structure (None, a dict, or a list or tuple of
    tensors) rather than one tensor, for an error message; None for one tensor (or a
    nested list of numbers, which converts to one)."""
    if value is None:
        return "nothing (None)"
    if isinstance(value, dict):
        return f"a dict with keys {', '.join(repr(k) for k in value)}"
    if isinstance(value, (list, tuple)) and any(
        hasattr(v, "shape") or isinstance(v, dict) for v in value
    ):
        return f"a {type(value).__name__} of {len(value)} tensors"
    return None


def check_structure(video, target=None, needs_target: bool = True) -> None:
    """Raises ValueError unless `video` is one tensor and (with `needs_target`) so is
    `target`: a dict of features, several inputs or a missing target named as such."""
    structure = _structure_text(video)
    if structure is not None:
        raise ValueError(
            f"A SidewaysModel takes one input, the video {VIDEO_LAYOUT}; got "
            f"{structure}. {_PAIRS_HINT}"
        )
    structure = _structure_text(target) if needs_target else None
    if structure is not None:
        raise ValueError(
            "Expected one target tensor with the video: clip labels [batch] or per-frame "
            f"targets [batch, time, ...]; got {structure}. Training and evaluation need "
            f"a target for every clip, e.g. fit(video, target). {_PAIRS_HINT}"
        )


def check_video(video) -> None:
    """Raises ValueError unless `video` is a float tensor laid out as VIDEO_LAYOUT."""
    check_structure(video, needs_target=False)
    check_video_shape(video.shape)
    dtype = tf.as_dtype(video.dtype)
    if not dtype.is_floating:
        raise ValueError(
            f"Expected a float video {VIDEO_LAYOUT} (e.g. float32 in [0, 1]); got dtype "
            f"{dtype.name}. Convert it first, e.g. tf.cast(video, tf.float32) / 255."
        )


def check_video_shape(shape) -> None:
    """Raises ValueError unless `shape` is VIDEO_LAYOUT with at least one frame."""
    nested = isinstance(shape, (list, tuple)) and any(
        isinstance(d, (list, tuple, dict, tf.TensorShape)) for d in shape
    )
    if isinstance(shape, dict) or nested:
        given = "a dict of input shapes" if isinstance(shape, dict) else "several input shapes"
        raise ValueError(
            f"A SidewaysModel takes one input, the video {VIDEO_LAYOUT}; got {given}, "
            f"{shape!r}. {_PAIRS_HINT}"
        )
    shape = tf.TensorShape(shape)
    if shape.rank is None:
        raise ValueError(
            f"Expected video of rank 5, laid out as {VIDEO_LAYOUT}; got a video of unknown "
            "shape where the step is traced: a dataset that lost its shapes (e.g. made "
            "with tf.py_function or from a generator without an output_signature), or "
            "calls on video of different ranks, which Keras then traces with no shape. "
            "Give the dataset its shapes, e.g. dataset.map(lambda video, target: "
            "(tf.ensure_shape(video, [None, None, height, width, channels]), target))."
        )
    if shape.rank != 5:
        raise ValueError(
            f"Expected video of rank 5, laid out as {VIDEO_LAYOUT}; "
            f"got rank {shape.rank} with shape {shape_text(shape)}."
        )
    if shape[1] == 0:
        raise ValueError(
            f"Expected video {VIDEO_LAYOUT} with at least one frame; got an empty time "
            f"axis, shape {shape_text(shape)}."
        )


def check_target(video, target) -> None:
    """Raises ValueError unless `target` is a clip label [batch] or per-frame [batch, time, ...]."""
    check_structure(video, target)
    vshape, tshape = tf.TensorShape(video.shape), tf.TensorShape(target.shape)
    if tshape.rank == 0:
        raise ValueError(
            "Expected a target of shape [batch] (clip label) or [batch, time, ...] "
            "(per-frame targets); got a scalar."
        )
    if vshape[0] is not None and tshape[0] is not None and vshape[0] != tshape[0]:
        raise ValueError(
            f"Video and target must have the same batch size; got video "
            f"{shape_text(vshape)} {VIDEO_LAYOUT} and target {shape_text(tshape)}."
        )
    if tshape.rank >= 2 and None not in (vshape[1], tshape[1]) and vshape[1] != tshape[1]:
        raise ValueError(
            f"Per-frame targets must be [batch, time, ...] with the video's time "
            f"({vshape[1]}); got target {shape_text(tshape)} for video "
            f"{shape_text(vshape)}. Clip labels must be [batch]."
        )


def check_sample_weight(video, sample_weight) -> None:
    """Raises ValueError unless `sample_weight` is None or one weight per clip, [batch]."""
    if sample_weight is None:
        return
    shape = tf.TensorShape(sample_weight.shape)
    batch = tf.TensorShape(video.shape)[:1]
    if shape.rank != 1 or not shape.is_compatible_with(batch):
        raise ValueError(
            f"Expected sample weights of shape [batch], one per clip; got {shape_text(shape)} "
            f"for video {shape_text(tf.TensorShape(video.shape))}."
        )


_FIXED_BY = "the first training batch since the stream was built or reset"


def check_stream_batch(video, target, capacity: int | None) -> None:
    """Raises ValueError unless a stateful model can continue its streams with this batch.

    Streaming needs clip labels (per-frame targets would need the previous chunk's) and
    the batch size the buffers were built with (`capacity`; None before they exist), in
    a traced step whose batch size is unknown as an assertion.
    """
    if not is_clip_target(target):
        raise ValueError(
            "stateful=True supports clip labels [batch] only: per-frame targets "
            f"{shape_text(tf.TensorShape(target.shape))} would need the targets of the "
            "previous chunk."
        )
    batch = video.shape[0]
    if capacity is not None and batch is not None and batch != capacity:
        raise ValueError(
            f"stateful=True fixes the batch size to {capacity} ({_FIXED_BY}); got a batch "
            f"of {batch}. Use drop_remainder=True when batching, or call reset_pipeline() "
            "to start a new stream at another batch size."
        )
    if capacity is not None and batch is None:  # a traced step: checked as it runs
        tf.debugging.assert_equal(
            tf.shape(video)[0],
            capacity,
            message=f"stateful=True fixes the batch size to {capacity} ({_FIXED_BY}); "
            "got another batch size. Batch the data with drop_remainder=True",
        )


def data_shapes(x, y=None) -> tuple[tf.TensorShape | None, tf.TensorShape | None]:
    """The shapes of the videos and of the targets that `fit`, `evaluate` or `predict`
    was given, where they are known before it runs: arrays or tensors (`x`, `y`) or a
    `tf.data.Dataset` of (video, target) batches. None where unknown (a generator, a
    PyDataset, a dataset of another structure, no target)."""
    if isinstance(x, tf.data.Dataset):
        spec = x.element_spec
        parts = list(spec) if isinstance(spec, tuple) else [spec]
        shapes = [tf.TensorShape(p.shape) if isinstance(p, tf.TensorSpec) else None for p in parts]
        return shapes[0], shapes[1] if len(shapes) > 1 else None

    def shape(value):
        return tf.TensorShape(value.shape) if hasattr(value, "shape") else None

    return shape(x), shape(y)


def shapes_differ(expected: tuple, given: tuple) -> bool:
    """Whether two shapes (None where a size is free) differ in rank, or in a size both fix."""
    return len(expected) != len(given) or any(
        e is not None and g is not None and e != g for e, g in zip(expected, given)
    )


def check_data(
    x, y, frame_shape: tuple | None, class_weight=None, fixed_frame: tuple | None = None
) -> None:
    """Raises ValueError, before `fit`, `evaluate` or `predict` runs, for videos whose
    channels are not those the model was built for (`frame_shape`; Keras' traced steps
    relax the input's shape, so a later call would run a convolution of 1 channel as a
    grouped one on 2 or 4), whose frames are not those the first stage's inputs fix
    (`fixed_frame`, None where a size is free: a stage of `ks.cut`, a Functional model
    of the original's frames), and for a `class_weight` with per-frame targets (Keras
    would read their time axis as one-hot classes)."""
    video, target = data_shapes(x, y)
    if fixed_frame is not None and video is not None and video.rank == 5:
        frame = tuple(video[2:])
        if len(frame) == len(fixed_frame) and shapes_differ(fixed_frame, frame):
            fixed = shape_text(tf.TensorShape([None, *fixed_frame]))
            raise ValueError(
                f"The model's first stage takes frames {fixed} (batch first); got video "
                f"{shape_text(video)}. Its stages are made for those frames (a cut model, "
                "for the frames of the model it was cut from): resize the video, or make "
                "the model for these frames."
            )
    if frame_shape is not None and video is not None and video.rank == 5:
        channels = video[-1]
        if channels is not None and channels != frame_shape[-1]:
            raise ValueError(
                f"The model was built for frames of {frame_shape[-1]} channel(s) (frame "
                f"shape {list(frame_shape)}); got video {shape_text(video)} of {channels}. "
                "Its first layers are built for their channels: make a new model for "
                "video of other channels, or convert the video first."
            )
    if class_weight is not None and target is not None and target.rank is not None:
        if target.rank > 1:
            raise ValueError(
                "class_weight weighs a clip by its class, so it needs clip labels [batch]; "
                f"got targets {shape_text(target)}, per-frame targets, whose time axis "
                "Keras would read as one-hot classes. Give per-clip weights instead: "
                "fit(..., sample_weight=weights) with arrays, or (video, target, weight) "
                "batches."
            )


def stream_shuffle(x, shuffle):
    """`fit`'s `shuffle` for a stateful model: False where not given. Keras' default
    (True) shuffles arrays, which would give each lane the chunks of other videos; a
    dataset is taken in its own order whatever `shuffle` says."""
    if shuffle is None:
        return False
    if shuffle and not isinstance(x, tf.data.Dataset):
        raise ValueError(
            "stateful=True takes consecutive batches as the next chunks of the same videos, "
            f"so fit cannot shuffle its arrays; got shuffle={shuffle!r}. Pass shuffle=False "
            "(the default for a stateful model), or shuffle whole videos before cutting "
            "them into chunks (data.consecutive_chunks)."
        )
    return shuffle


def check_stream_data(x, batch_size: int | None, fixed: int | None) -> None:
    """Raises ValueError when `fit`'s data would give a stateful model a batch of another
    size than its fixed one, where that is known before training: arrays whose length is
    not a multiple of `batch_size`, or a dataset whose batch size is not static.

    Args:
        x: what `fit` was given as its videos: arrays, or a `tf.data.Dataset` of batches.
        batch_size: `fit`'s batch_size for arrays (None: Keras' default, 32).
        fixed: the batch size the stream's buffers hold; None before they exist.
    """
    how = (
        "stateful=True fixes the batch size (the pipeline keeps one lane per clip), so "
        "every batch must hold the same number of clips"
    )
    if isinstance(x, tf.data.Dataset):
        shape = tf.TensorShape(tf.nest.flatten(x.element_spec)[0].shape)
        if shape.rank is not None and shape.rank > 0 and shape[0] is None:
            raise ValueError(
                f"{how}; got a dataset whose batch size is not fixed (video batches of "
                f"shape {shape_text(shape)}), so its last batch may be short. Batch it "
                "with drop_remainder=True: dataset.batch(n, drop_remainder=True)."
            )
        sizes = [] if shape.rank is None or shape.rank == 0 else [shape[0]]
    elif hasattr(x, "shape") and getattr(x, "ndim", len(x.shape)) > 0:
        count, batch = int(x.shape[0]), batch_size or 32  # Keras' default batch size
        sizes = sorted({min(count, batch), count % batch} - {0}, reverse=True)
        if len(sizes) > 1:
            raise ValueError(
                f"{how}; got {count} clips in batches of {batch}, so the last batch would "
                f"hold {sizes[1]}. Pass a multiple of batch_size={batch} clips (e.g. "
                f"x[:{count - sizes[1]}]), or a tf.data.Dataset batched with "
                "drop_remainder=True."
            )
    else:
        return  # a generator or PyDataset: each batch is checked as it comes
    if fixed is not None and sizes and sizes[0] != fixed:
        raise ValueError(
            f"stateful=True fixes the batch size to {fixed} ({_FIXED_BY}); got batches of "
            f"{sizes[0]}. Batch with batch_size={fixed} (drop_remainder=True), or call "
            "reset_pipeline() to start a new stream at another batch size."
        )


def checked_labels(labels, classes: int, ignore_class: int | None = None):
    """`labels`, after checking they are class indices in [0, classes) (sparse
    categorical cross-entropy; `ignore_class` is allowed too).

    Eager labels (arrays, eager tensors) raise ValueError naming the first bad label and
    where it is; labels in a traced step get a `tf.debugging` assertion that fails the
    step with the same message, before the loss sees them.
    """
    expected = (
        f"Labels for a {classes}-class output (sparse categorical cross-entropy) must be "
        f"class indices in [0, {classes})"
    )
    fix = (
        f"Fix the labels, or give the top stage as many outputs as there are classes "
        f"(now {classes})."
    )
    if isinstance(labels, np.ndarray) or tf.executing_eagerly():
        values = np.asarray(labels)
        if not np.issubdtype(values.dtype, np.number):
            return labels
        bad = (values < 0) | (values >= classes)
        if ignore_class is not None:
            bad &= values != ignore_class
        if np.any(bad):
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            index = where[0] if len(where) == 1 else list(where)
            raise ValueError(
                f"{expected}; got label {values[where].item()!r} at index {index} "
                f"({int(bad.sum())} of {bad.size} labels out of range). {fix}"
            )
        return labels
    values = tf.cast(labels, tf.int64)
    if ignore_class is not None:
        values = tf.where(values == ignore_class, tf.zeros_like(values), values)
    checks = [
        tf.debugging.assert_non_negative(values, message=f"{expected}; got a negative label."),
        tf.debugging.assert_less(
            values,
            tf.constant(classes, tf.int64),
            message=f"{expected}; got a label >= {classes}. {fix}",
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(labels)


def takes_class_indices(loss) -> bool:
    """True for a sparse categorical cross-entropy loss (name, function or object): its
    targets are class indices."""
    return _loss_name(loss) == "sparsecategoricalcrossentropy"


def _loss_name(loss) -> str:
    """A loss's name, lower case without underscores: "sparsecategoricalcrossentropy"."""
    name = loss if isinstance(loss, str) else getattr(loss, "__name__", type(loss).__name__)
    return name.replace("_", "").lower()


def check_one_hot_clip_labels(loss, target) -> None:
    """Raises ValueError for a target [batch, classes] with a (one-hot) categorical
    cross-entropy: a rank-2 target is per-frame, and Keras would fail on it obscurely."""
    shape = getattr(target, "shape", None)  # no tensor: `check_target` names what it is
    if _loss_name(loss) == "categoricalcrossentropy" and tf.TensorShape(shape).rank == 2:
        raise ValueError(
            "A categorical cross-entropy takes one-hot targets, per frame "
            f"[batch, time, classes]; got target {shape_text(tf.TensorShape(shape))}: "
            "one-hot clip labels [batch, classes] are not taken (a rank-2 target is per "
            "frame). Give class indices [batch] with SparseCategoricalCrossentropy, e.g. "
            "tf.argmax(labels, axis=-1)."
        )


def ignored_class(loss) -> int | None:
    """The `ignore_class` of a Keras loss object (a label allowed out of range), or None."""
    if isinstance(loss, keras.losses.Loss):
        return loss.get_config().get("ignore_class")
    return None


def check_batch_kept(stage_index: int, stage, batch: int, output_shape) -> None:
    """Raises ValueError when a stage's outputs have another batch size than its inputs:
    a stage is a per-frame function, [N, ...] -> [N, ...]."""
    out = output_shape[0]
    if out is not None and out != batch:
        raise ValueError(
            f"Stage {stage_index} ({stage.name}) must keep the batch size: a stage maps "
            f"[N, ...] frames to [N, ...] outputs; given a batch of {batch} frames it gave "
            f"{out} outputs (shape {shape_text(tf.TensorShape(output_shape))}). A Lambda "
            "or tf.reshape that folds frames into the batch, or the batch into features, "
            "cannot be a stage; keras.layers.Reshape and Flatten reshape each frame and "
            "keep the batch axis."
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
    """True for a categorical cross-entropy loss (name, function or object): clip
    classification."""
    return _loss_name(loss) in (
        "sparsecategoricalcrossentropy",
        "categoricalcrossentropy",
    )


def loss_takes_logits(loss) -> bool:
    """True when `loss` is a Keras loss object with from_logits=True."""
    if isinstance(loss, keras.losses.Loss):
        return bool(loss.get_config().get("from_logits", False))
    return False
