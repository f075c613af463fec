"""Clips from any tensorflow-datasets dataset with a `Video` feature (UCF-101, Moving MNIST...).

TFDS stores a video as a sequence of encoded images. The pipeline reads them undecoded and
decodes only the frames of the chosen clip, so long videos cost no more than short ones.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

import tensorflow as tf
import tensorflow_datasets as tfds

from keras_sideways.data import clip_pipeline as cp
from keras_sideways.data import epochs

SHUFFLE_BUFFER = 256  # examples reordered together, still encoded; UCF-101's average 3 MB


@dataclasses.dataclass(frozen=True)
class VideoPreset:
    """How to read one TFDS video dataset: feature keys, default target, split names."""

    video_key: str
    label_key: str | None
    target: str
    splits: tuple[str, ...]
    split_aliases: Mapping[str, str] = dataclasses.field(default_factory=dict)


PRESETS: dict[str, VideoPreset] = {
    "ucf101": VideoPreset(
        video_key="video", label_key="label", target="label", splits=("train", "test")
    ),
    # TFDS ships Moving MNIST as a single "test" split of 10,000 sequences of 20 frames:
    # the preset carves disjoint train (90%) and validation/test (10%) parts out of it.
    "moving_mnist": VideoPreset(
        video_key="image_sequence",
        label_key=None,
        target="frames",
        splits=("test",),
        split_aliases={"train": "test[:90%]", "validation": "test[90%:]", "test": "test[90%:]"},
    ),
}


def split_names(split: str) -> list[str]:
    """The split names in a TFDS split string: "train[:10%]+test" -> ["train", "test"]."""
    return [re.sub(r"\[.*\]$", "", part.strip()) for part in split.split("+")]


def _check_split(name: str, split: str, known: list[str]) -> None:
    unknown = [s for s in split_names(split) if s not in known]
    if unknown:
        raise ValueError(
            f"Unknown split {split!r} for {name}: expected one of {', '.join(known)} "
            f"(TFDS slices such as 'train[:10%]' work too); got {', '.join(unknown)}."
        )


def _feature_key(features, key: str | None, kind: type, what: str, name: str) -> str:
    """`key` checked to be a `kind` feature, or the only such feature when key is None."""
    matching = [k for k, f in features.items() if isinstance(f, kind)]
    if key is None and len(matching) == 1:
        return matching[0]
    if key is not None and key in matching:
        return key
    given = "none given" if key is None else f"got {key!r}"
    raise ValueError(
        f"Expected {what} to name a {kind.__name__} feature of {name} "
        f"({', '.join(matching) or 'it has none'}); {given}. Features: {', '.join(features)}."
    )


def _check_aliased_split(name: str, split: str, preset: VideoPreset) -> None:
    """A preset that renames splits takes its names whole: a slice of an alias is not TFDS's."""
    if split not in preset.split_aliases:
        meanings = ", ".join(
            f"{alias!r} ({tfds_split})" for alias, tfds_split in preset.split_aliases.items()
        )
        raise ValueError(
            f"Expected split for {name} to be one of {meanings}, as they are: the preset "
            f"carves these parts out of TFDS's own splits, so slices and unions of them "
            f"('train[:10%]', 'train+validation') and TFDS's own split names do not apply; "
            f"got {split!r}."
        )


def _apply_preset(
    name: str, split: str, video_key: str | None, label_key: str | None, target: str | None
) -> tuple[VideoPreset | None, str, str | None, str | None, str | None]:
    """(preset or None, TFDS split, video_key, label_key, target) with the preset's defaults."""
    preset = PRESETS.get(name.split("/")[0].split(":")[0])
    tfds_split = split
    if preset is not None:
        if preset.split_aliases:
            _check_aliased_split(name, split, preset)
        else:
            _check_split(name, split, sorted(preset.splits))
        tfds_split = preset.split_aliases.get(split, split)
        video_key = video_key or preset.video_key
        label_key = label_key or preset.label_key
        target = target or preset.target
    return preset, tfds_split, video_key, label_key, target


def _builder(name: str, data_dir: str | None):
    """The TFDS builder of `name`; a ValueError naming it when TFDS knows no such dataset."""
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError as error:
        raise ValueError(
            f"Unknown dataset {name!r}: expected a preset ({', '.join(PRESETS)}) or a "
            f"tensorflow-datasets name with a Video feature. TFDS says: "
            f"{str(error).splitlines()[0]}"
        ) from error


def _keys(
    builder, name: str, video_key: str | None, label_key: str | None, target: str | None
) -> tuple[str, str | None, str]:
    """(video_key, label_key, target) checked against the builder's features, defaults set."""
    features = builder.info.features
    video_key = _feature_key(features, video_key, tfds.features.Video, "video_key", name)
    if target is None:
        if label_key is None:  # the only ClassLabel, when there is one
            labels = [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)]
            if len(labels) > 1:
                raise ValueError(
                    f"Expected label_key to name one of {name}'s ClassLabel features "
                    f"({', '.join(labels)}), or target='frames'; none given."
                )
            label_key = labels[0] if labels else None
        target = "label" if label_key else "frames"
    if target == "label":
        label_key = _feature_key(features, label_key, tfds.features.ClassLabel, "label_key", name)
    return video_key, label_key, target


def _image_feature(builder, name: str, video_key: str):
    """The Image feature of one frame of the video feature; its channel count must be known."""
    image_feature = builder.info.features[video_key].feature
    if image_feature.shape[-1] is None:
        raise ValueError(
            f"Expected {name}'s {video_key!r} frames to have a known channel "
            f"count; got shape {image_feature.shape}."
        )
    return image_feature


def _encoded_videos(
    builder,
    tfds_split: str,
    video_key: str,
    label_key: str | None,
    target: str,
    shuffle: bool,
    seed: int,
) -> tf.data.Dataset:
    """(encoded frames, label int32 or 0) per example; the files in an order of `seed`."""
    dataset = builder.as_dataset(
        split=tfds_split,
        decoders={video_key: tfds.decode.SkipDecoding()},  # decode only the clip's frames
        shuffle_files=shuffle,  # in an order of `seed`, the same every epoch
        read_config=tfds.ReadConfig(shuffle_seed=seed, shuffle_reshuffle_each_iteration=False),
    )
    return dataset.map(
        lambda ex: (ex[video_key], tf.cast(ex[label_key], tf.int32) if target == "label" else 0),
        num_parallel_calls=cp.AUTOTUNE,
    )


def _clip_cutter(
    image_feature, clip_length: int, temporal_stride: int, image_size: tuple[int, int]
):
    """The map function (encoded, label[, key]) -> (clip uint8, label).

    It decodes only the clip's frames; with a key, the clip's start is drawn from it,
    without, it is the centre clip.
    """
    height, width = image_size
    channels = image_feature.shape[-1]
    span = cp.clip_span(clip_length, temporal_stride)

    def cut_clip(encoded, label, key=None):
        num_frames = tf.shape(encoded)[0]
        start = cp.clip_start(num_frames, span, key)
        indices = cp.clip_frame_indices(start, num_frames, clip_length, temporal_stride)
        frames = tf.map_fn(
            image_feature.decode_example,
            tf.gather(encoded, indices),
            fn_output_signature=tf.TensorSpec(image_feature.shape, image_feature.tf_dtype),
        )
        frames = tf.image.resize(
            tf.image.convert_image_dtype(frames, tf.float32), (height, width), antialias=True
        )
        clip = tf.cast(tf.round(tf.clip_by_value(frames, 0.0, 1.0) * 255.0), tf.uint8)
        return tf.ensure_shape(clip, (clip_length, height, width, channels)), label

    return cut_clip


def _model_input(target: str):
    """The map function (clip uint8, label) -> (video float32, label or the video)."""

    def to_model_input(clip, label):
        video = cp.to_unit_float(clip)
        return video, (label if target == "label" else video)

    return to_model_input


def tfds_video(
    name: str,
    split: str = "train",
    *,
    clip_length: int = 16,
    temporal_stride: int = 1,
    image_size: int | tuple[int, int] = 64,
    batch_size: int = 8,
    drop_remainder: bool = False,
    shuffle: bool | None = None,
    seed: int = 0,
    training: bool | None = None,
    data_dir: str | None = None,
    video_key: str | None = None,
    label_key: str | None = None,
    target: str | None = None,
    cache: bool = True,
) -> tf.data.Dataset:
    """Clips from a tensorflow-datasets video dataset, downloaded and prepared on first use.

    Presets (`PRESETS`) know their feature keys: "ucf101" (target "label") and
    "moving_mnist" (target "frames"; TFDS has only a "test" split, so here "train" is its
    first 90% and "validation"/"test" the last 10%; these three names are taken whole, with
    no slices or unions of them). For any other dataset the video feature is found by type
    when there is one, and so is the label (the only ClassLabel, if any); pass `video_key`,
    `label_key` and `target` as needed.

    Training draws each clip's start at random, anew every epoch, from `seed`, the epoch and
    the example alone (`data.epochs`); evaluation takes the centre clip. A video shorter
    than the clip's span, (clip_length - 1) * temporal_stride + 1 frames, is padded by
    repeating its last frame.
    Frames are resized to image_size (aspect ratio not kept, antialiased) and rounded to
    uint8 before the conversion to float. Shuffling reads the files in an order of `seed`
    (and of TensorFlow's global seed, when one is set), the same every epoch, and reorders
    each run of SHUFFLE_BUFFER examples anew every epoch, from `seed` and the epoch alone.
    Such a dataset's `epoch` attribute is the variable `callbacks.SetDataEpoch` sets.

    Args:
        name: a preset or any TFDS name, e.g. "ucf101/ucf101_1_256" or "moving_mnist".
        split: a TFDS split, slices allowed ("train[:10%]"), except for moving_mnist:
            "train", "validation" or "test", as they are (above).
        clip_length: frames per clip.
        temporal_stride: source frames between clip frames (stride s takes 0, s, 2s, ...).
        image_size: frame size, int or (height, width).
        batch_size: clips per batch; the last batch may be smaller.
        drop_remainder: drop a last batch smaller than `batch_size` (a stateful model
            needs every batch the same size, see `consecutive_chunks`).
        shuffle: shuffle the files once and the examples every epoch (above); default:
            `training`.
        seed: non-negative int for the shuffles and the clip starts.
        training: random clip starts; default: the split starts with "train".
        data_dir: the TFDS data directory; default TFDS's own.
        video_key: the Video feature; default the preset's, or the only Video feature.
        label_key: the label feature; default the preset's, or the only ClassLabel (with
            several, name one, or pass target="frames").
        target: "label" (int32 [batch]) or "frames" (the clip itself); default the
            preset's, else "label" when there is a label_key, else "frames".
        cache: keep evaluation clips in memory after the first epoch (as uint8); training
            clips change every epoch and are never cached.

    Returns:
        A `tf.data.Dataset` of `(video, target)`: video is
        float32 [batch, time, height, width, channels] in [0, 1].
    """
    clip_length, temporal_stride, (height, width), batch_size = cp.check_clip_args(
        clip_length, temporal_stride, image_size, batch_size
    )
    seed = cp.check_seed(seed)
    shuffle = cp.check_bool("shuffle", shuffle, allow_none=True)
    training = cp.check_bool("training", training, allow_none=True)
    cache = cp.check_bool("cache", cache)
    if target is not None:
        cp.check_choice("target", target, cp.TARGETS)
    preset, tfds_split, video_key, label_key, target = _apply_preset(
        name, split, video_key, label_key, target
    )
    if training is None:
        training = split.startswith("train")
    if shuffle is None:
        shuffle = training

    builder = _builder(name, data_dir)
    video_key, label_key, target = _keys(builder, name, video_key, label_key, target)
    if preset is None and builder.info.splits:  # mocked or unprepared builders know none
        _check_split(name, split, list(builder.info.splits))
    image_feature = _image_feature(builder, name, video_key)
    builder.download_and_prepare()
    dataset = _encoded_videos(builder, tfds_split, video_key, label_key, target, shuffle, seed)
    cache_clips = cache and not training
    reorder = shuffle and not cache_clips  # a cache would freeze the first epoch's order
    epoch = None
    if training or reorder:  # a new draw every epoch, from (seed, epoch, example) alone
        window = SHUFFLE_BUFFER if reorder else 0
        dataset = epochs.epoch_passes(dataset, seed, shuffle_window=window, clip_keys=training)
        epoch = dataset.epoch
    cut_clip = _clip_cutter(image_feature, clip_length, temporal_stride, (height, width))
    dataset = dataset.map(cut_clip, num_parallel_calls=cp.AUTOTUNE)
    if cache_clips:
        dataset = dataset.cache()
        if shuffle:
            dataset = epochs.epoch_passes(dataset, seed, shuffle_window=SHUFFLE_BUFFER)
            epoch = dataset.epoch
    dataset = dataset.map(_model_input(target), num_parallel_calls=cp.AUTOTUNE)
    dataset = cp.batch_and_prefetch(dataset, batch_size, drop_remainder)
    if epoch is not None:
        dataset.epoch = epoch
    return dataset
