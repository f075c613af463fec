"""What every video builder shares: argument checks, which frames make a clip, the batched tail.

A clip of `clip_length` frames with temporal stride `s` takes source frames
`start, start + s, ..., start + (clip_length - 1) * s`: it spans
`(clip_length - 1) * s + 1` source frames. Training draws `start` at random; evaluation
takes the centre clip. Indices past a short video's end repeat its last frame.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from keras_sideways.clips import check_positive_int

VIDEO_DOC = "float32 [batch, time, height, width, channels] in [0, 1]"
TARGETS = ("label", "frames")
AUTOTUNE = tf.data.AUTOTUNE


# Grey frames are the ITU-R BT.601 luma of RGB ones (tf.image.rgb_to_grayscale's, to its
# rounding): every builder's `channels=1`, and `inference`'s clips for grey models.
LUMA = np.array([0.299, 0.587, 0.114])


def check_seed(seed) -> int:
    """Returns `seed` as an int; raises ValueError unless it is an integer from 0 to
    2**63 - 1 (the int64 of the stateless random ops that draw from it)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"Expected seed to be a non-negative integer; got {seed!r}.")
    if seed >= 2**63:
        raise ValueError(f"Expected seed to be below 2**63 (an int64); got {seed!r}.")
    return int(seed)


def check_choice(name: str, value, choices: Sequence) -> None:
    """Raises ValueError unless `value` is one of `choices`."""
    if value not in choices:
        expected = ", ".join(repr(c) for c in choices)
        raise ValueError(f"Expected {name} to be one of {expected}; got {value!r}.")


def check_int_choice(name: str, value, choices: Sequence[int]) -> int:
    """Returns `value` as an int; raises ValueError unless it is an integer (not a bool,
    which equals 0 or 1) in `choices`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value not in choices:
        expected = ", ".join(repr(c) for c in choices)
        raise ValueError(f"Expected {name} to be one of {expected}; got {value!r}.")
    return int(value)


def check_bool(name: str, value, allow_none: bool = False) -> bool | None:
    """Returns `value` as a bool (None kept when `allow_none`); raises ValueError unless it is
    True or False: a truthy string such as "no" would otherwise mean True."""
    if value is None and allow_none:
        return None
    if not isinstance(value, (bool, np.bool_)):
        default = " (or None for the default)" if allow_none else ""
        raise ValueError(f"Expected {name} to be True or False{default}; got {value!r}.")
    return bool(value)


def image_size_pair(image_size, name: str = "image_size") -> tuple[int, int]:
    """An int or (height, width) as a (height, width) pair of positive ints."""
    if isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool):
        size = (image_size, image_size)
    elif isinstance(image_size, Sequence) and not isinstance(image_size, str):
        size = tuple(image_size)
    else:
        size = ()
    if len(size) != 2 or not all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in size
    ):
        raise ValueError(
            f"Expected {name} to be a positive int or a (height, width) pair of positive "
            f"ints; got {image_size!r}."
        )
    return int(size[0]), int(size[1])


def check_clip_args(
    clip_length, temporal_stride, image_size, batch_size
) -> tuple[int, int, tuple[int, int], int]:
    """Validates the arguments all builders share; returns them as ints, image size as (h, w)."""
    return (
        check_positive_int("clip_length", clip_length),
        check_positive_int("temporal_stride", temporal_stride),
        image_size_pair(image_size),
        check_positive_int("batch_size", batch_size),
    )


def clip_span(clip_length: int, temporal_stride: int) -> int:
    """How many source frames a clip covers, first to last: (clip_length - 1) * stride + 1."""
    return (clip_length - 1) * temporal_stride + 1


def clip_start(num_frames: tf.Tensor, span: int, key: tf.Tensor | None = None) -> tf.Tensor:
    """First source frame of a clip: uniform from the random int64 `key`, or centred if None.

    Args:
        num_frames: frames in the video, a scalar int tensor.
        span: source frames the clip covers (`clip_span`).
        key: a non-negative random int64 (training), or None for the centre clip.

    Returns:
        A scalar int32 tensor in [0, max(num_frames - span, 0)].
    """
    slack = tf.maximum(tf.cast(num_frames, tf.int64) - span, 0)
    if key is None:
        start = slack // 2
    else:
        start = tf.math.floormod(tf.cast(key, tf.int64), slack + 1)
    return tf.cast(start, tf.int32)


def clip_frame_indices(
    start: tf.Tensor, num_frames: tf.Tensor, clip_length: int, temporal_stride: int
) -> tf.Tensor:
    """Source frame indices of a clip, int32 [clip_length]; past the end, the last frame."""
    indices = tf.cast(start, tf.int32) + tf.range(clip_length, dtype=tf.int32) * temporal_stride
    return tf.minimum(indices, tf.cast(num_frames, tf.int32) - 1)


def to_unit_float(clip_uint8: tf.Tensor) -> tf.Tensor:
    """uint8 frames -> float32 in [0, 1]."""
    return tf.cast(clip_uint8, tf.float32) / 255.0


def batch_and_prefetch(
    dataset: tf.data.Dataset, batch_size: int, drop_remainder: bool = False
) -> tf.data.Dataset:
    """Batches (dropping a smaller last batch if asked, for fixed lanes) and prefetches."""
    drop_remainder = check_bool("drop_remainder", drop_remainder)
    dataset = dataset.batch(batch_size, drop_remainder, num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)
