"""Moving digits: handwritten digits bouncing around a canvas, generated offline with numpy.

The digits are the 1,797 real 8x8 handwritten digits of the UCI "Optical Recognition of
Handwritten Digits" test set (E. Alpaydin, C. Kaynak; CC BY 4.0), the ones scikit-learn ships
as `sklearn.datasets.load_digits`: `digits.npz` beside this module holds them as they are
there (pixels 0 to 16, labels), so nothing is downloaded. A fixed permutation splits the
images ~80/20 into train and test pools (see `digit_split_indices`); "validation" is an alias
of "test". Each clip draws its digits, start positions and directions from its own
generator, seeded by (seed, split, clip index), so clip `i` depends only on those and the
geometry. A digit's position at source frame `t` is `start + t * velocity`, reflected off
the canvas walls, computed in closed form: a clip with temporal stride `s` is exactly every
`s`-th frame of the stride-1 trajectory.

`target="direction"` is a task a per-frame model cannot solve: the label is the direction the
digits move in, one of `DIRECTIONS` ("right", "left", "up", "down"; clip `i` has direction
`i % 4`, so every split of a multiple of 4 clips is balanced). All digits of a clip move along
that axis at `speed` pixels per source frame, on a torus: one that leaves the canvas on one
side comes back in on the other, so there are no walls to bounce off and the direction holds
for the whole clip, whatever its length. Start positions are uniform over the canvas, so
every frame of every clip, alone, has the same distribution in each class (a frame is a
plausible frame of any direction): a model trained on single frames is at chance (25%). Left
and right (up and down) clips are each other's time-reverses, so even a model that pools
frames without their order cannot tell them apart; it can at best tell the axis (50%), from
how the frames differ. Only the order of the frames gives the direction. The step between
clip frames, `speed * temporal_stride`, must stay under half the canvas's shorter side, past
which a step one way looks like a shorter step the other way.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import numbers
import pathlib
import warnings

import numpy as np
import tensorflow as tf

from keras_sideways.data import clip_pipeline as cp
from keras_sideways.data import epochs

NUM_CLASSES = 10
DIRECTIONS = ("right", "left", "up", "down")  # target="direction": class i is DIRECTIONS[i]
NUM_DIRECTIONS = len(DIRECTIONS)
# (dy, dx) per direction; class c ^ 1 is the opposite direction, the time-reverse of class c.
_DIRECTION_STEPS = np.array([(0, 1), (0, -1), (-1, 0), (1, 0)], dtype=np.float64)
TARGETS = ("label", "direction", "frames")
SPLITS = ("train", "validation", "test")
TRAIN_FRACTION = 0.8
DEFAULT_NUM_CLIPS = {"train": 1024, "validation": 256, "test": 256}
DIGIT_PIXELS = 8  # the images are 8x8, values 0..16
_SPLIT_SEED = 20200614  # fixed for good: changing it would mix train and test images


DIGITS_FILE = pathlib.Path(__file__).with_name("digits.npz")
# Of the images' bytes then the labels' (uint8): a changed file would change every clip.
DIGITS_SHA256 = "87ff0c9e40dc7e2c0e34e7257799c2e3f3aec1a016363bb11cad869ec428a826"


@functools.lru_cache(maxsize=1)
def _digit_images() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 images in [0, 1] ([N, 8, 8] float64) and their labels (int32 [N])."""
    try:
        with np.load(DIGITS_FILE) as stored:
            images, labels = stored["images"], stored["labels"]
    except (OSError, KeyError, ValueError) as error:
        raise OSError(f"Cannot read the digits file {DIGITS_FILE}: {error}") from error
    digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
    if images.dtype != np.uint8 or labels.dtype != np.uint8 or digest != DIGITS_SHA256:
        raise OSError(
            f"The digits file {DIGITS_FILE} is not the one this package ships (its contents "
            f"differ); reinstall keras_sideways."
        )
    return images / 16.0, labels.astype(np.int32)


def _check_split(split: str) -> str:
    cp.check_choice("split", split, SPLITS)
    return "train" if split == "train" else "test"


def digit_split_indices(split: str) -> np.ndarray:
    """Indices into the digit images (in `load_digits()`' order) a split draws from.

    Args:
        split: "train", "validation" or "test" ("validation" is the test pool).

    Returns:
        Sorted int indices; the train pool (80%) and the test pool (20%) are disjoint.
    """
    pool = _check_split(split)
    count = len(_digit_images()[0])
    order = np.random.default_rng(_SPLIT_SEED).permutation(count)
    cut = round(TRAIN_FRACTION * count)
    return np.sort(order[:cut] if pool == "train" else order[cut:])


def resize_matrix(size_in: int, size_out: int) -> np.ndarray:
    """[size_out, size_in] linear-interpolation weights, antialiased when shrinking."""
    scale = size_in / size_out
    support = max(scale, 1.0)  # a wider triangle when shrinking averages instead of aliasing
    centres = (np.arange(size_out) + 0.5) * scale - 0.5
    weights = np.maximum(0.0, 1.0 - np.abs(np.arange(size_in)[None] - centres[:, None]) / support)
    return weights / weights.sum(axis=1, keepdims=True)


def digit_size(canvas: tuple[int, int]) -> int:
    """Side of the square digits on a canvas: half its shorter side, at least 8 pixels."""
    return max(DIGIT_PIXELS, min(canvas) // 2)


def bounce(position: np.ndarray, limit: float) -> np.ndarray:
    """Positions on an unbounded line folded into [0, limit], as if reflected off walls."""
    if limit <= 0:
        return np.zeros_like(position)
    folded = np.mod(position, 2 * limit)
    return np.where(folded > limit, 2 * limit - folded, folded)


def _placement(positions: np.ndarray, canvas: int, size: int, wrap: bool = False) -> np.ndarray:
    """[time, canvas, size] weights putting a size-pixel row at sub-pixel offsets.

    With `wrap`, the canvas is a circle: pixels past its end land at its start.
    """
    offset = np.arange(canvas)[None, :, None] - positions[:, None, None] - np.arange(size)
    if wrap:
        offset = np.mod(offset + canvas / 2, canvas) - canvas / 2
    return np.maximum(0.0, 1.0 - np.abs(offset))


def _check_canvas(height: int, width: int, canvas_size) -> tuple[int, int]:
    """The canvas (height, width): canvas_size, or the frame size when it is None."""
    canvas = cp.image_size_pair(
        (height, width) if canvas_size is None else canvas_size, "canvas_size"
    )
    if min(canvas) < DIGIT_PIXELS:
        raise ValueError(
            f"Expected canvas_size (defaults to image_size) of at least {DIGIT_PIXELS} "
            f"pixels, the digits' own size; got {canvas}. Pass a larger canvas_size and "
            f"a small image_size to get smaller frames."
        )
    return canvas


def _warn_if_still(canvas: tuple[int, int], speed: float) -> None:
    """Bouncing digits as large as the canvas cannot move: every frame of a clip is the same."""
    size = digit_size(canvas)
    if speed > 0 and min(canvas) <= size:
        still = "at all" if max(canvas) <= size else "along its shorter side"
        warnings.warn(
            f"The {size}-pixel digits fill the canvas {canvas}, so they cannot move {still}: "
            f"the clips are still along that side. Use a canvas of at least {size + 1} pixels "
            f"a side (canvas_size, which defaults to image_size; 16 or more moves them "
            f"further), or target='direction', whose digits wrap around.",
            UserWarning,
            stacklevel=4,
        )


def _check_direction_step(speed: float, temporal_stride: int, canvas: tuple[int, int]) -> None:
    """target="direction" needs a step between clip frames in (0, half the shorter side)."""
    if not 0 < speed * temporal_stride < min(canvas) / 2:
        raise ValueError(
            f"Expected target='direction' to move the digits more than 0 and less than half "
            f"the canvas's shorter side ({min(canvas) / 2:g} pixels) from one clip frame to "
            f"the next, speed * temporal_stride, so that the way they move is unambiguous; "
            f"got speed={speed!r} * temporal_stride={temporal_stride} on canvas {canvas}."
        )


@dataclasses.dataclass(frozen=True)
class _Layout:
    """A canvas and the weights that draw a digit on it and resize it to the frame."""

    canvas: tuple[int, int]
    size: int  # side of the square digits on the canvas
    limits: np.ndarray  # (y, x) furthest a digit's corner goes before it bounces
    upscale: np.ndarray  # [size, 8]
    resize_h: np.ndarray  # [height, canvas height]
    resize_w: np.ndarray  # [width, canvas width]

    @classmethod
    def of(cls, canvas: tuple[int, int], height: int, width: int) -> _Layout:
        size = digit_size(canvas)
        return cls(
            canvas=canvas,
            size=size,
            limits=np.array([canvas[0] - size, canvas[1] - size], dtype=np.float64),
            upscale=resize_matrix(DIGIT_PIXELS, size),
            resize_h=resize_matrix(canvas[0], height),
            resize_w=resize_matrix(canvas[1], width),
        )


def _clip_motion(
    rng: np.random.Generator,
    i: int,
    num_digits: int,
    speed: float,
    layout: _Layout,
    by_direction: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """(starts, velocities), [num_digits, 2] each as (y, x), of the digits of clip i."""
    if by_direction:  # on a torus: starts anywhere on the canvas, no walls
        starts = rng.random((num_digits, 2)) * np.array(layout.canvas, dtype=np.float64)
        velocity = np.repeat(speed * _DIRECTION_STEPS[i % NUM_DIRECTIONS][None], num_digits, 0)
    else:
        starts = rng.random((num_digits, 2)) * layout.limits
        angles = rng.random(num_digits) * 2 * np.pi
        velocity = speed * np.stack([np.sin(angles), np.cos(angles)], axis=-1)
    return starts, velocity


def _draw_clip(
    digit_images: np.ndarray,
    starts: np.ndarray,
    velocity: np.ndarray,
    times: np.ndarray,
    layout: _Layout,
    wrap: bool,
) -> np.ndarray:
    """The frames [time, height, width] in [0, 1] of digits moving from starts at velocity.

    With `wrap` the canvas is a torus; otherwise the digits bounce off its walls.
    """
    canvas, size, limits = layout.canvas, layout.size, layout.limits
    frames = np.zeros((len(times), len(layout.resize_h), len(layout.resize_w)))
    for d in range(len(digit_images)):
        path = starts[d] + times[:, None] * velocity[d]  # [time, 2]: (y, x)
        if wrap:
            place_y = _placement(np.mod(path[:, 0], canvas[0]), canvas[0], size, wrap=True)
            place_x = _placement(np.mod(path[:, 1], canvas[1]), canvas[1], size, wrap=True)
        else:
            place_y = _placement(bounce(path[:, 0], limits[0]), canvas[0], size)
            place_x = _placement(bounce(path[:, 1], limits[1]), canvas[1], size)
        rows = layout.resize_h @ place_y @ layout.upscale
        cols = layout.resize_w @ place_x @ layout.upscale
        digit = rows @ digit_images[d] @ cols.transpose(0, 2, 1)
        frames = np.maximum(frames, digit)
    return np.clip(frames, 0.0, 1.0)


def classes(target: str = "label") -> tuple[str, ...]:
    """The class names of `moving_digits(..., target=target)`: label `i` is `names[i]`.

    Args:
        target: "label" (the digits "0" to "9") or "direction" (`DIRECTIONS`).

    Returns:
        The names, as a tuple of strings.
    """
    cp.check_choice("target", target, ("label", "direction"))
    return DIRECTIONS if target == "direction" else tuple(str(i) for i in range(NUM_CLASSES))


def moving_digit_clips(
    split: str = "train",
    *,
    clip_length: int = 16,
    temporal_stride: int = 1,
    image_size: int | tuple[int, int] = 32,
    canvas_size: int | tuple[int, int] | None = None,
    num_digits: int = 1,
    speed: float = 1.0,
    num_clips: int | None = None,
    seed: int = 0,
    channels: int = 1,
    target: str = "label",
) -> tuple[np.ndarray, np.ndarray]:
    """The clips of `moving_digits` as numpy arrays, unshuffled and unbatched.

    Args:
        split, clip_length, temporal_stride, image_size, canvas_size, num_digits, speed,
        num_clips, seed, channels, target: as for `moving_digits`.

    Returns:
        (video, labels): video float32 [num_clips, clip_length, height, width, channels]
        in [0, 1]; labels int32 [num_clips]: the class of each clip's first digit, or with
        target="direction" the index in `DIRECTIONS` of the way the digits move.
    """
    pool = _check_split(split)
    cp.check_choice("target", target, TARGETS)
    clip_length = cp.check_positive_int("clip_length", clip_length)
    if target == "direction" and clip_length < 2:
        raise ValueError(
            f"Expected clip_length >= 2 for target='direction': one frame does not show "
            f"which way the digits move; got clip_length={clip_length}."
        )
    temporal_stride = cp.check_positive_int("temporal_stride", temporal_stride)
    height, width = cp.image_size_pair(image_size)
    canvas = _check_canvas(height, width, canvas_size)
    num_digits = cp.check_positive_int("num_digits", num_digits)
    if num_clips is None:
        num_clips = DEFAULT_NUM_CLIPS[split]
    num_clips = cp.check_positive_int("num_clips", num_clips)
    seed = cp.check_seed(seed)
    if (
        isinstance(speed, bool)
        or not isinstance(speed, numbers.Real)
        or not np.isfinite(speed)
        or speed < 0
    ):
        raise ValueError(f"Expected speed >= 0 (pixels per frame); got {speed!r}.")
    channels = cp.check_int_choice("channels", channels, (1, 3))
    by_direction = target == "direction"
    if by_direction:
        _check_direction_step(speed, temporal_stride, canvas)
    else:
        _warn_if_still(canvas, speed)

    images, labels = _digit_images()
    indices = digit_split_indices(split)
    layout = _Layout.of(canvas, height, width)
    times = np.arange(clip_length) * temporal_stride  # source frames the clip keeps
    video = np.empty((num_clips, clip_length, height, width), dtype=np.float32)
    clip_labels = np.empty(num_clips, dtype=np.int32)
    split_code = 0 if pool == "train" else 1
    for i in range(num_clips):
        # One generator per clip, drawn in a fixed order: clip i does not depend on
        # num_clips, clip_length or temporal_stride.
        rng = np.random.default_rng([seed, split_code, i])
        chosen = indices[rng.integers(0, len(indices), size=num_digits)]
        starts, velocity = _clip_motion(rng, i, num_digits, speed, layout, by_direction)
        video[i] = _draw_clip(images[chosen], starts, velocity, times, layout, by_direction)
        clip_labels[i] = i % NUM_DIRECTIONS if by_direction else labels[chosen[0]]
    video = np.repeat(video[..., None], channels, axis=-1)
    return video, clip_labels


def moving_digits(
    split: str = "train",
    *,
    clip_length: int = 16,
    temporal_stride: int = 1,
    image_size: int | tuple[int, int] = 32,
    canvas_size: int | tuple[int, int] | None = None,
    num_digits: int = 1,
    speed: float = 1.0,
    num_clips: int | None = None,
    target: str = "label",
    batch_size: int = 16,
    drop_remainder: bool = False,
    shuffle: bool | None = None,
    seed: int = 0,
    channels: int = 1,
) -> tf.data.Dataset:
    """Bouncing handwritten digits, the built-in video dataset: no download.

    Every clip is generated up front with numpy (1,024 clips of 16 32x32 frames are 64 MiB)
    and served from memory. The same arguments give the same clips, bit for bit. A shuffled
    split is reshuffled every epoch, in an order drawn from `seed` and the epoch alone
    (`data.epochs`): its `epoch` attribute is the variable `callbacks.SetDataEpoch` sets.

    Args:
        split: "train", "validation" or "test"; train and test use disjoint digit images
            (`digit_split_indices`); "validation" is the same as "test".
        clip_length: frames per clip; at least 2 for target="direction".
        temporal_stride: source frames between clip frames; the digits move
            `speed * temporal_stride` pixels from one clip frame to the next.
        image_size: frame size, int or (height, width).
        canvas_size: the area the digits bounce in, int or (height, width), at least 8;
            defaults to image_size. Frames are the canvas resized to image_size. Digits are
            square, half the canvas's shorter side (at least their native 8 pixels): below
            9 pixels a side they fill the canvas and cannot bounce, which warns.
        num_digits: digits per clip; where they overlap the brighter one shows.
        speed: pixels per source frame on the canvas, >= 0; small values give smooth video.
            With target="direction", `speed * temporal_stride` must be > 0 and under
            half the canvas's shorter side.
        num_clips: clips in the split; default 1,024 for train, 256 otherwise.
        target: "label" (the class of the first digit, int32 [batch]), "direction" (the
            index in `DIRECTIONS` of the way the digits move, on a torus, axis-aligned: see
            the module docstring; int32 [batch]) or "frames" (the clip itself, for
            reconstruction). `classes(target)` names the labels.
        batch_size: clips per batch; the last batch may be smaller.
        drop_remainder: drop a last batch smaller than `batch_size` (a stateful model
            needs every batch the same size, see `consecutive_chunks`).
        shuffle: reshuffle every epoch; default True for train, False otherwise.
        seed: non-negative int; picks the digits, their trajectories and the order.
        channels: 1 (grey) or 3 (the grey value repeated).

    Returns:
        A `tf.data.Dataset` of `(video, target)`: video is
        float32 [batch, time, height, width, channels] in [0, 1].
    """
    cp.check_positive_int("batch_size", batch_size)
    cp.check_choice("target", target, TARGETS)
    shuffle = cp.check_bool("shuffle", shuffle, allow_none=True)
    video, labels = moving_digit_clips(
        split,
        clip_length=clip_length,
        temporal_stride=temporal_stride,
        image_size=image_size,
        canvas_size=canvas_size,
        num_digits=num_digits,
        speed=speed,
        num_clips=num_clips,
        seed=seed,
        channels=channels,
        target=target,
    )
    # The clips already live in memory, so caching would only copy them.
    dataset = tf.data.Dataset.from_tensor_slices((video, labels) if target != "frames" else video)
    if shuffle is None:
        shuffle = split == "train"
    epoch = None
    if shuffle:
        dataset = epochs.epoch_passes(dataset, seed, shuffle_window=len(video))
        epoch = dataset.epoch
    if target == "frames":
        dataset = dataset.map(lambda clip: (clip, clip), num_parallel_calls=cp.AUTOTUNE)
    dataset = cp.batch_and_prefetch(dataset, batch_size, drop_remainder)
    if epoch is not None:
        dataset.epoch = epoch
    return dataset
