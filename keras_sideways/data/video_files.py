"""Clips from a folder of video files, one subfolder per class, decoded with PyAV (FFmpeg).

    root/
      archery/  a.mp4  b.avi ...
      bowling/  c.mkv ...

Every file is probed up front (opened, first frame decoded, frames counted), in parallel.
A file that cannot be decoded or is shorter than one clip is reported once, by path, with a
`UserWarning`, and skipped; with `strict=True` it raises a ValueError naming it instead.
So is a class folder left with no usable video (its label would never occur), and a
subfolder of a class folder that holds video files: only the files directly in a class
folder are read.
Clips are then decoded on demand inside the `tf.data` pipeline (`tf.py_function`), each
from the keyframe before its first frame (`read_clip`).
"""

from __future__ import annotations

import functools
import os
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_sideways.data import clip_pipeline as cp
from keras_sideways.data import epochs

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm")


def _av():
    import av  # imported here: only this builder needs PyAV

    return av


def _open(path: str | os.PathLike):
    """The video file at `path`, opened by PyAV, by its absolute path: FFmpeg reads a
    relative path with a colon before any slash (`take:1.mkv`) as a URL of that protocol."""
    return _av().open(os.path.abspath(os.fspath(path)))


def folder_class_names(root: str | os.PathLike) -> list[str]:
    """The class names of a video folder: its subfolders (not hidden ones), sorted.

    Args:
        root: the folder.

    Returns:
        The names; label `i` of `video_folder(root)` is class `names[i]`.
    """
    if not isinstance(root, (str, os.PathLike)) or not str(root):
        raise ValueError(
            f"Expected root to be a folder with one subfolder of videos per class; got {root!r}."
        )
    path = Path(root)
    if not path.is_dir():
        raise ValueError(
            f"Expected root to be a folder with one subfolder of videos per class; "
            f"{str(root)!r} is not a folder."
        )
    names = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise ValueError(
            f"Expected root {str(root)!r} to hold one subfolder of videos per class; "
            f"it has no subfolders."
        )
    return names


def count_frames(path: str | os.PathLike) -> int:
    """Frames in a video file; raises ValueError (or an av error) if it cannot be decoded.

    The count comes from the container's header, or, where that has none (Matroska, WebM),
    from counting the video packets, which needs no decoding.
    """
    with _open(path) as container:
        if not container.streams.video:
            raise ValueError("it has no video stream")
        stream = container.streams.video[0]
        if next(container.decode(stream), None) is None:
            raise ValueError("no frame could be decoded")
        if stream.frames > 0:
            return stream.frames
    with _open(path) as container:
        return sum(1 for packet in container.demux(container.streams.video[0]) if packet.size)


def read_clip(
    path: str | os.PathLike, frame_indices: Sequence[int], image_size: int | tuple[int, int]
) -> np.ndarray:
    """Decodes the given frames of a video file, resized, as RGB uint8 [time, height, width, 3].

    Indices past the last decodable frame give the last frame. Frames are resized by
    FFmpeg's scaler (bilinear, aspect ratio not kept) as they are decoded.

    Decoding starts at the keyframe before the first frame wanted: the file is sought
    there, and each decoded frame is placed by its timestamp (`_frame_times`), so a clip
    late in a long video costs a few frames, not every frame before it. Where the file's
    timestamps cannot place the frames (none, repeated, or a first decoded frame that is
    not the first timestamp: a raw stream, frames the container discards), or the seek
    lands past the first frame wanted, the file is decoded from its start instead, frame
    i being the i-th decoded. Both ways give the same frames (tests/test_data_video_files.py
    compares them on mp4, mkv, avi and webm files, with and without B-frames).
    """
    height, width = cp.image_size_pair(image_size)
    indices = np.asarray(frame_indices, dtype=np.int64)
    times = _frame_times(path) if int(indices.min()) > 0 else None
    clip = None if times is None else _decoded(path, indices, (height, width), times)
    return _decoded(path, indices, (height, width)) if clip is None else clip


def _decoded(path, indices: np.ndarray, size: tuple[int, int], times=None) -> np.ndarray | None:
    """`read_clip`'s frames, decoded from the file's start (`times` None) or from the
    keyframe before the first one wanted, placed by their timestamps `times` (None where
    a frame has no place or the seek went past the first frame wanted)."""
    height, width = size
    wanted, last_wanted = set(indices.tolist()), int(indices.max())
    first = 0 if times is None else min(int(indices.min()), len(times) - 1)
    frames, last = {}, None
    with _open(path) as container:
        if not container.streams.video:
            raise ValueError("it has no video stream")
        stream = container.streams.video[0]
        declared = stream.frames  # the header's count (0 where it gives none)
        stream.thread_type = "AUTO"
        if times is not None:
            container.seek(int(times[first]), stream=stream, backward=True, any_frame=False)
        for n, frame in enumerate(container.decode(stream)):
            i = n if times is None else _place(times, frame.pts)
            if i is None or (last is None and i > first):
                return None  # decode from the start instead
            last = (i, frame)
            if i in wanted:
                frames[i] = frame.to_ndarray(width=width, height=height, format="rgb24")
            if i >= last_wanted:
                break
    if last is None:
        if times is not None:  # nothing decodes after the seek: a tail that does not
            return None  # decode is padded with the last frame that does, from the start
        raise ValueError("no frame could be decoded")
    if last[0] < last_wanted:  # the video ended early: pad with its last frame
        _check_not_truncated(path, declared, last[0] + 1)
        frames[last[0]] = last[1].to_ndarray(width=width, height=height, format="rgb24")
    return np.stack([frames[min(i, last[0])] for i in indices])


def _check_not_truncated(path, declared: int, decoded: int) -> None:
    """Raises ValueError where the file holds fewer video packets than its header's frame
    count: a truncated file (a partial download) whose header still promises every frame,
    which `count_frames` believes, so its clips were its last decodable frame repeated.
    A header that counts frames with no data (an AVI's empty packets) is not truncation:
    every packet counts, empty or not."""
    if declared <= decoded:
        return
    with _open(path) as container:
        packets = sum(
            1
            for packet in container.demux(container.streams.video[0])
            if packet.pts is not None or packet.size
        )
    if packets < declared:
        raise ValueError(
            f"its header gives {declared} frames, but the file holds data for {packets} "
            f"({decoded} decode): a truncated or damaged file"
        )


def _place(times: np.ndarray, pts: int | None) -> int | None:
    """The index of the frame whose timestamp is `pts` (None for none)."""
    i = int(np.searchsorted(times, pts)) if pts is not None else len(times)
    return i if i < len(times) and times[i] == pts else None


def _frame_times(path: str | os.PathLike) -> np.ndarray | None:
    """The presentation timestamps of the video's frames in order (frame i's at [i]), read
    from its packets without decoding, once per version of the file; None where they
    cannot place the decoded frames (see `read_clip`)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return _frame_times_of(os.fspath(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=1024)  # 8 bytes a frame: 14 MB for 1024 files of a minute
def _frame_times_of(path: str, mtime_ns: int, size: int) -> np.ndarray | None:
    del mtime_ns, size  # the cache's key: a file rewritten is read again
    try:
        with _open(path) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            times = [packet.pts for packet in container.demux(stream) if packet.size]
        if not times or None in times or len(set(times)) < len(times):
            return None
        times.sort()
        with _open(path) as container:  # the first frame decoded: the first timestamp?
            first = next(container.decode(container.streams.video[0]), None)
    except decode_errors():
        return None
    if first is None or first.pts != times[0]:
        return None
    times = np.array(times, np.int64)
    times.flags.writeable = False  # shared by every read of the file
    return times


class _Reporter:
    """Warns once per path about an unusable video, or raises ValueError when strict."""

    def __init__(self, strict: bool):
        self.strict, self.reported, self.lock = strict, set(), threading.Lock()

    def __call__(self, path: str, reason: str, stacklevel: int = 3) -> None:
        """`stacklevel` 3 names the caller of the function that reports; 2 names that
        function (a clip's decoding, which tf.data calls: no caller of the user's)."""
        message = f"Unusable video {path}: {reason}."
        if self.strict:
            raise ValueError(message + " (strict=True; pass strict=False to skip such files.)")
        with self.lock:
            if path in self.reported:
                return
            self.reported.add(path)
        warnings.warn(message + " Skipped.", UserWarning, stacklevel=stacklevel)


def _warn_or_raise(message: str, strict: bool) -> None:
    """Warns about what is skipped, naming the caller's line, or raises ValueError when strict."""
    if strict:
        raise ValueError(message + " (strict=True; pass strict=False to warn and go on.)")
    warnings.warn(message, UserWarning, stacklevel=3)


def _class_names(root: str | os.PathLike, given: Sequence[str] | None) -> list[str]:
    """The classes of `root` in label order: `given`, checked against its subfolders, or
    the subfolders sorted (`folder_class_names`)."""
    found = folder_class_names(root)
    if given is None:
        return found
    if isinstance(given, str) or not all(isinstance(name, str) for name in given):
        raise ValueError(f"Expected class_names to be a list of folder names; got {given!r}.")
    given = list(given)
    missing = [name for name in given if name not in found]
    extra = [name for name in found if name not in given]
    if missing or extra or len(set(given)) != len(given):
        differ = []
        if missing:
            differ.append(f"missing: {missing}")
        if extra:
            differ.append(f"not in class_names: {extra}")
        raise ValueError(
            f"Expected the class folders of root {str(root)!r} to be class_names {given}; it "
            f"has {found} ({'; '.join(differ) or 'class_names repeats a name'})."
        )
    return given


def _is_video(path: Path, suffixes: tuple[str, ...]) -> bool:
    """A file (or link) of a video's extension, not hidden."""
    return (
        (path.is_file() or path.is_symlink())
        and path.suffix.lower() in suffixes
        and not path.name.startswith(".")
    )


def decode_errors() -> tuple[type[Exception], ...]:
    """What decoding a file that is not a usable video raises: PyAV's errors, the file
    system's, and the ValueErrors of `count_frames` and `read_clip`."""
    return (_av().FFmpegError, OSError, ValueError)


def _probe(path: str) -> int | str:
    """Frames in the file, or why it cannot be used."""
    try:
        return count_frames(path)
    except decode_errors() as error:
        return f"cannot decode it ({error})"


def _suffixes(extensions: str | Sequence[str]) -> tuple[str, ...]:
    """File name endings, lower case, each with its leading dot; ValueError unless
    `extensions` is a non-empty string or sequence of non-empty strings."""
    if isinstance(extensions, str):
        extensions = (extensions,)
    if (
        not isinstance(extensions, Sequence)
        or not extensions
        or not all(isinstance(e, str) and e.strip(".") for e in extensions)
    ):
        raise ValueError(
            f"Expected extensions to be file name endings such as {VIDEO_EXTENSIONS}; "
            f"got {extensions!r}."
        )
    return tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)


def _video_files(
    root: str | os.PathLike, class_names: list[str], suffixes: tuple[str, ...]
) -> list[tuple[str, int]]:
    """(path, label) of every video file in the class folders, by class then by name;
    hidden files (".DS_Store", macOS' "._clip.mp4") left out. A broken link is kept: the
    probe reports it as a file it cannot read."""
    files = [
        (str(path), label)
        for label, name in enumerate(class_names)
        for path in sorted(Path(root, name).iterdir())
        if _is_video(path, suffixes)
    ]
    if not files:
        raise ValueError(
            f"Expected video files ({', '.join(suffixes)}) in the class folders of root "
            f"{str(root)!r} ({', '.join(class_names)}); found none."
        )
    return files


def _nested_videos(
    root: str | os.PathLike, class_names: list[str], suffixes: tuple[str, ...]
) -> list[tuple[str, int]]:
    """(subfolder, video files at any depth in it) of the class folders' subfolders that hold
    video files, which `video_folder` does not read; hidden folders and files left out."""
    nested = []
    for name in class_names:
        for folder in sorted(Path(root, name).iterdir()):
            if not folder.is_dir() or folder.name.startswith("."):
                continue
            count = sum(
                1
                for path in folder.rglob("*")
                if path.is_file()
                and path.suffix.lower() in suffixes
                and not any(part.startswith(".") for part in path.relative_to(folder).parts)
            )
            if count:
                nested.append((str(folder), count))
    return nested


def _probe_files(
    files: list[tuple[str, int]], clip_length: int, temporal_stride: int
) -> tuple[list[tuple[str, int, int]], list[tuple[str, str]]]:
    """Probes the files in parallel: ((path, label, frames) usable, (path, why) not), in order."""
    span = cp.clip_span(clip_length, temporal_stride)
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        probes = list(pool.map(_probe, [path for path, _ in files]))
    usable, unusable = [], []
    for (path, label), frames in zip(files, probes, strict=True):
        if isinstance(frames, str):
            unusable.append((path, frames))
        elif frames < span:
            unusable.append(
                (
                    path,
                    f"{frames} frames, fewer than the {span} one clip spans "
                    f"(clip_length={clip_length}, temporal_stride={temporal_stride})",
                )
            )
        else:
            usable.append((path, label, frames))
    return usable, unusable


def _file_dataset(usable: list[tuple[str, int, int]]) -> tf.data.Dataset:
    """A dataset of (path, label int32, frames int32), one element per usable file."""
    paths, labels, num_frames = zip(*usable, strict=True)
    return tf.data.Dataset.from_tensor_slices(
        (list(paths), np.array(labels, np.int32), np.array(num_frames, np.int32))
    )


def _load_clips(
    dataset: tf.data.Dataset,
    report: _Reporter,
    clip_length: int,
    temporal_stride: int,
    image_size: tuple[int, int],
    count: int | None = None,
) -> tf.data.Dataset:
    """(path, label, frames[, key]) elements decoded into (clip uint8, label).

    With a key, the clip's start is drawn from it; without, it is the centre clip. A file
    that fails to decode is reported and its clip replaced by the pass's first, so that a
    pass keeps its known length (`count`, or the dataset's): Keras reads an epoch's steps
    from it (without, it warns "Your input ran out of data" at every epoch's end). Applied
    to one pass of `epochs.epoch_passes` (its `per_pass`), so that the pass read again for
    the replacement is the same epoch's.
    """
    count = int(dataset.cardinality()) if count is None else count
    height, width = image_size
    span = cp.clip_span(clip_length, temporal_stride)

    def decode(path: tf.Tensor, indices: tf.Tensor):
        path = path.numpy().decode()
        try:
            return read_clip(path, indices.numpy(), (height, width)), True
        except (_av().FFmpegError, OSError, ValueError) as error:
            report(path, f"cannot decode it ({error})", stacklevel=2)  # this line, not TF's
            return np.zeros((clip_length, height, width, 3), np.uint8), False

    def load_clip(path, label, frames, key=None):
        start = cp.clip_start(frames, span, key)
        indices = cp.clip_frame_indices(start, frames, clip_length, temporal_stride)
        clip, ok = tf.py_function(decode, [path, indices], [tf.uint8, tf.bool])
        return tf.ensure_shape(clip, (clip_length, height, width, 3)), label, ok

    dataset = dataset.map(load_clip, num_parallel_calls=cp.AUTOTUNE)
    dataset = dataset.filter(lambda clip, label, ok: ok)
    if count >= 0:  # a pass that yields nothing ends `repeat` (tf.data checks)
        dataset = dataset.repeat().take(count)
    return dataset.map(lambda clip, label, ok: (clip, label), num_parallel_calls=cp.AUTOTUNE)


def video_folder(
    root: str | os.PathLike,
    *,
    clip_length: int = 16,
    temporal_stride: int = 1,
    image_size: int | tuple[int, int] = 64,
    batch_size: int = 8,
    drop_remainder: bool = False,
    shuffle: bool | None = None,
    seed: int = 0,
    training: bool = True,
    strict: bool = False,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
    cache: bool = True,
    class_names: Sequence[str] | None = None,
    channels: int = 3,
) -> tf.data.Dataset:
    """Clips from a folder of videos, one subfolder per class; labels are the sorted classes.

    The class names are set on the returned dataset as `dataset.class_names` (they do not
    carry over to datasets derived from it by `map`, `take`...; `folder_class_names(root)`
    gives them too). Videos are RGB; frames are resized to image_size without keeping the
    aspect ratio. Training draws each clip's start at random, anew every epoch, from `seed`,
    the epoch and the file alone (`data.epochs`), and so does a shuffled order; evaluation
    takes the centre clip. Such a dataset's `epoch` attribute is the variable
    `callbacks.SetDataEpoch` sets.

    Args:
        root: the folder; its subfolders are the classes, in sorted order.
        clip_length: frames per clip.
        temporal_stride: source frames between clip frames (stride s takes 0, s, 2s, ...).
        image_size: frame size, int or (height, width).
        batch_size: clips per batch; the last batch may be smaller.
        drop_remainder: drop a last batch smaller than `batch_size` (a stateful model
            needs every batch the same size, see `consecutive_chunks`).
        shuffle: reshuffle the videos every epoch; default: `training`.
        seed: non-negative int for the order and the clip starts.
        training: random clip starts if True, the centre clip if False.
        strict: raise a ValueError naming the first unusable file (one that cannot be
            decoded, or has fewer than (clip_length - 1) * temporal_stride + 1 frames)
            instead of warning once and skipping it, and likewise for a class folder with
            no usable video and for a subfolder of a class folder holding video files
            (never read). A file that passes the probe but fails later, mid-epoch, stops
            the iteration with a TensorFlow error naming it.
        extensions: file name endings that count as videos (case-insensitive).
        cache: keep evaluation clips in memory after the first epoch (as uint8; shuffling
            them then holds a second copy); training clips change every epoch and are
            never cached.
        class_names: the classes in label order, each a subfolder of `root`, and every
            subfolder one of them; default: the subfolders, sorted. Give the training
            set's `class_names` to a validation folder so that a label means the same
            class in both (a ValueError names the folders that differ).
        channels: 3 (RGB) or 1 (grey: the BT.601 luma of the RGB frames).

    Every clip is decoded from the keyframe before its first frame (`read_clip`): a clip
    late in a long video costs a few frames more than its own, not every frame before it
    (a file whose timestamps cannot place its frames, such as a raw .h264 stream, is
    decoded from its start). `root` must have at least two class folders: a classifier of
    one class learns nothing.

    Returns:
        A `tf.data.Dataset` of `(video, label)`: video is
        float32 [batch, time, height, width, channels] in [0, 1], label int32 [batch].
    """
    clip_length, temporal_stride, (height, width), batch_size = cp.check_clip_args(
        clip_length, temporal_stride, image_size, batch_size
    )
    seed = cp.check_seed(seed)
    training = cp.check_bool("training", training)
    shuffle = cp.check_bool("shuffle", shuffle, allow_none=True)
    strict = cp.check_bool("strict", strict)
    cache = cp.check_bool("cache", cache)
    channels = cp.check_int_choice("channels", channels, (1, 3))
    drop_remainder = cp.check_bool("drop_remainder", drop_remainder)
    suffixes = _suffixes(extensions)
    if shuffle is None:
        shuffle = training
    class_names = _class_names(root, class_names)
    if len(class_names) < 2:
        raise ValueError(
            f"Expected at least 2 class folders in root {str(root)!r}; got {class_names}: a "
            "classifier of one class learns nothing. Is root one level too deep?"
        )
    files = _video_files(root, class_names, suffixes)
    loose = [p.name for p in sorted(Path(root).iterdir()) if _is_video(p, suffixes)]
    if loose:  # reported here, and below, so that warnings name the caller's line
        _warn_or_raise(
            f"Skipped {len(loose)} video file(s) directly in root {str(root)!r} "
            f"({', '.join(loose[:3])}{', ...' if len(loose) > 3 else ''}): video_folder reads "
            "only the files in its class folders.",
            strict,
        )
    for folder, count in _nested_videos(root, class_names, suffixes):
        _warn_or_raise(
            f"Skipped {count} video file(s) in the subfolder {folder}: video_folder reads "
            f"only the files directly in each class folder.",
            strict,
        )

    span = cp.clip_span(clip_length, temporal_stride)
    report = _Reporter(strict)
    usable, unusable = _probe_files(files, clip_length, temporal_stride)
    for path, reason in unusable:
        report(path, reason)
    if not usable:
        raise ValueError(
            f"No usable videos under root {str(root)!r}: all {len(files)} files are too "
            f"short for one clip ({span} frames) or cannot be decoded."
        )
    found = {label for _, label, _ in usable}
    for label, name in enumerate(class_names):
        if label not in found:
            _warn_or_raise(
                f"Class folder {str(Path(root, name))!r} holds no usable video "
                f"({', '.join(suffixes)}, at least {span} frames): its label {label} "
                f"(class_names[{label}]) will never occur.",
                strict,
            )

    dataset = _file_dataset(usable)
    cache_clips = cache and not training
    reorder = shuffle and not cache_clips  # a cache would freeze the first epoch's order
    epoch = None

    def load(files: tf.data.Dataset) -> tf.data.Dataset:
        size = (height, width)
        return _load_clips(files, report, clip_length, temporal_stride, size, len(usable))

    if training or reorder:  # a new draw every epoch, from (seed, epoch, file) alone
        window = len(usable) if reorder else 0
        dataset = epochs.epoch_passes(
            dataset, seed, shuffle_window=window, clip_keys=training, per_pass=load
        )
        epoch = dataset.epoch
    else:
        dataset = load(dataset)
    if cache_clips:
        dataset = dataset.cache()
        if shuffle:
            dataset = epochs.epoch_passes(dataset, seed, shuffle_window=len(usable))
            epoch = dataset.epoch

    def to_float(clip, label):
        clip = cp.to_unit_float(clip)
        if channels == 1:
            clip = tf.tensordot(clip, tf.constant(cp.LUMA, tf.float32), 1)[..., None]
        return clip, label

    dataset = dataset.map(to_float, num_parallel_calls=cp.AUTOTUNE)
    dataset = cp.batch_and_prefetch(dataset, batch_size, drop_remainder)
    dataset.class_names = class_names
    if epoch is not None:
        dataset.epoch = epoch
    return dataset
