"""What a training config (`train/configs/`) builds: checks, thread pools, data and model.

`check_config` raises ConfigError for a value a run cannot use, `apply_threads` sizes
TensorFlow's thread pools, `build_datasets` and `build_model` make the training and
validation sets and the compiled SidewaysModel. The one run recipe that puts them
together is `train.recipe.run`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import warnings
from typing import Any

import keras
import tensorflow as tf

from keras_sideways import data as video_data
from keras_sideways import delays, models, options, threads
from keras_sideways.callbacks import ResetPipeline, SetDataEpoch
from keras_sideways.engines import ticks
from keras_sideways.graph import FULL_STASH
from keras_sideways.model import SidewaysModel

TASKS = ("classification", "reconstruction")
DATASETS = ("moving_digits", "tfds", "video_folder", "arrow_of_time")
DIGIT_TARGETS = ("label", "direction")  # config.data.target of moving_digits classification
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")  # Keras dtype policies (README)


class ConfigError(ValueError):
    """A config value a run cannot use; the message names the field, what was expected
    and what was given. The training scripts print it as one line."""


def check_config(config) -> None:
    """Raises ConfigError for the first config value a run cannot use."""

    def fail(field: str, expected: str, given) -> None:
        raise ConfigError(f"config.{field}: expected {expected}; got {given!r}.")

    def positive_int(field: str, value) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            fail(field, "a whole number >= 1", value)

    lr = config.learning_rate
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        fail("learning_rate", "a finite number > 0", lr)
    positive_int("epochs", config.epochs)
    for field, seed in (("seed", config.seed), ("data.test_seed", config.data.get("test_seed"))):
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32
        ):
            fail(field, "a whole number from 0 to 2**32 - 1", seed)
    positive_int("log_every_steps", config.get("log_every_steps", 1))
    for field in ("test_clip_length", "test_batch_size"):  # None: training's
        if config.data.get(field) is not None:
            positive_int(f"data.{field}", config.data[field])
    if config.get("lr_schedule", "constant") not in ("constant", "cosine"):
        fail("lr_schedule", "'constant' or 'cosine'", config.lr_schedule)
    if config.task not in TASKS:
        fail("task", f"one of {', '.join(TASKS)}", config.task)
    if config.mode not in options.MODES:
        fail("mode", f"one of {', '.join(options.MODES)}", config.mode)
    if config.engine not in options.ENGINES:
        fail("engine", f"one of {', '.join(options.ENGINES)}", config.engine)
    if config.get("precision", "float32") not in PRECISIONS:
        fail("precision", f"one of {', '.join(PRECISIONS)}", config.precision)
    verbose = config.get("verbose", "auto")
    if isinstance(verbose, bool) or verbose not in (0, 1, 2, "auto"):  # Keras took 7 as 1
        fail("verbose", "0, 1, 2 or 'auto' (fit's verbose)", verbose)
    d = config.data
    for field in ("clip_length", "temporal_stride", "batch_size"):
        positive_int(f"data.{field}", d[field])
    for field in ("num_train_clips", "num_test_clips"):
        if field in d:
            positive_int(f"data.{field}", d[field])
    if d.name == "moving_digits":
        targets = DIGIT_TARGETS if config.task == "classification" else ("label",)
        if d.get("target", "label") not in targets:
            expected = " or ".join(repr(t) for t in targets)
            fail("data.target", f"{expected} for moving_digits {config.task}", d.target)
    if d.name in ("arrow_of_time", "video_folder") and config.task != "classification":
        # Their only targets are labels: a reconstruction would fit the class numbers.
        fail("task", f"'classification' for {d.name}", config.task)
    if d.name == "tfds" and d.get("channels", 3) != 3:
        fail("data.channels", "3 for tfds (RGB videos)", d.channels)
    size = d.image_size
    sizes = size if isinstance(size, (tuple, list)) else (size,)
    if not sizes or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in sizes):
        fail("data.image_size", "a side >= 1, or (height, width)", size)
    skips = config.model.get("skips", False)
    if not isinstance(skips, bool):
        fail("model.skips", "True or False", skips)
    built = "vgg_classifier" if config.task == "classification" else "encoder_decoder"
    if skips:
        built = "skip_classifier" if config.task == "classification" else "unet"
    limit, stages = models.MAX_STAGES[built], config.model.num_stages
    if isinstance(stages, bool) or not isinstance(stages, int) or not 2 <= stages <= limit:
        fail("model.num_stages", f"2 to {limit} stages ({built})", stages)
    positive_int("model.width", config.model.width)
    positive_int("model.temporal_window", config.model.get("temporal_window", 1))
    shift = config.model.get("temporal_shift", 0.0)
    if isinstance(shift, bool) or not isinstance(shift, (int, float)) or not 0 <= shift <= 1:
        fail("model.temporal_shift", "a share of channels from 0 to 1", shift)
    _check_stream_videos(config)
    try:
        ticks.stash_depths(stages, stash_depth(config))
    except ValueError as error:
        raise ConfigError(f"config.stash_depth: {error}") from None
    try:
        options.check_drain(drain(config), config.mode == "sideways" and _stream_chunks(config) > 0)
        options.check_delay_lines(delay_lines(config))
    except ValueError as error:
        raise ConfigError(f"config.{error}") from None
    try:
        delays.check_warmup_steps(config.get("delay_warmup_steps", 0))
    except ValueError as error:
        raise ConfigError(f"config.{error}") from None
    try:
        streams = config.mode == "sideways" and _stream_chunks(config) > 0
        options.check_chunk(pipeline_chunk(config), streams)
    except ValueError as error:
        raise ConfigError(f"config.{error}") from None
    thread_pools(config)


def run_engine(config) -> str:
    """What trains in a run of `config`: "bp", or the Sideways engine its model will run."""
    if config.mode != "sideways":
        return "bp"
    streams = _stream_chunks(config) > 0  # build_model's stateful model
    return options.resolve_engine(config.engine, stateful=streams, spread=False)


def thread_pools(config) -> threads.Threads:
    """`config.threads` ("auto" when absent) resolved for the run's engine and this machine's
    cores (`keras_sideways.threads.resolve`); ConfigError for a value it cannot read."""
    try:
        return threads.resolve(config.get("threads", threads.AUTO), run_engine(config))
    except ValueError as error:
        raise ConfigError(f"config.threads: {error}") from None


def apply_threads(config) -> dict[str, Any]:
    """Sizes TensorFlow's thread pools as `config.threads` says; returns what was used.

    Call it before anything starts TensorFlow (see `keras_sideways.threads`);
    `train.recipe.train_and_evaluate` calls it first. Once TensorFlow runs, "auto" keeps
    the pools it runs with, and an explicit setting that differs raises RuntimeError.

    Returns:
        `setting` (the text asked for), `resolved` ("inter,intra" it stands for here),
        `inter` and `intra` (the pools in use, read back from TensorFlow; 0 is its
        default), `engine` and `cores`.
    """
    wanted = thread_pools(config)
    setting = str(config.get("threads", threads.AUTO)).strip()
    try:
        used = threads.apply(wanted)
    except RuntimeError:
        if setting != threads.AUTO:
            raise
        used = threads.in_use()  # TensorFlow already runs (a notebook, a test): its pools
    return dict(
        setting=setting,
        resolved=str(wanted),
        inter=used.inter,
        intra=used.intra,
        engine=run_engine(config),
        cores=os.cpu_count(),
    )


@dataclasses.dataclass
class DataInfo:
    """What the model needs to know of a dataset."""

    task: str
    num_classes: int | None = None
    class_names: list | None = None


def build_datasets(config) -> tuple[tf.data.Dataset, tf.data.Dataset, DataInfo]:
    """Returns (train, validation, info) for `config.data` and `config.task` (below); a
    value the data builder refuses (a missing folder, a video too short) is a ConfigError
    naming `config.data`, which the commands print as one line."""
    try:
        return _build_datasets(config)
    except ConfigError:
        raise
    except ValueError as error:
        raise ConfigError(f"config.data ({config.data.name}): {error}") from error


def _unless_none(value, otherwise):
    return otherwise if value is None else value


def _build_datasets(config) -> tuple[tf.data.Dataset, tf.data.Dataset, DataInfo]:
    """Returns (train, validation, info) for `config.data` and `config.task`.

    The validation split takes the clip length, batch size and seed of training unless
    the optional fields `config.data.test_clip_length`, `test_batch_size` or `test_seed`
    are set (None, as the configs give them, or absent: training's; a test seed of 0 is
    a seed).

    With the optional `config.data.stream_chunks` = c > 1, training videos are c clip
    lengths long (c times fewer of them: the same frames) and come as consecutive chunks
    of `clip_length` frames (`data.consecutive_chunks`), for a stateful pipeline.

    Moving digits classify by `config.data.target`: "label" (the digit, the default) or
    "direction" (the way it moves, `data.DIGIT_DIRECTIONS`). "arrow_of_time" classifies
    clips of real footage as played forwards or backwards (`data.arrow_of_time`).
    """
    d = config.data
    task = config.task
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; expected one of {', '.join(TASKS)}.")
    common = dict(
        clip_length=d.clip_length,
        temporal_stride=d.temporal_stride,
        image_size=d.image_size,
        batch_size=d.batch_size,
        seed=config.seed,
    )
    chunks = _stream_chunks(config)
    train_common = common
    if chunks:
        train_common = dict(common, clip_length=d.clip_length * chunks, drop_remainder=True)
    val_common = dict(
        common,
        clip_length=_unless_none(d.get("test_clip_length"), d.clip_length),
        batch_size=_unless_none(d.get("test_batch_size"), d.batch_size),
        seed=_unless_none(d.get("test_seed"), config.seed),
    )
    target = "label" if task == "classification" else "frames"
    if d.name == "moving_digits":
        target = d.get("target", "label") if task == "classification" else "frames"
        # channels: the model's (a decoder gives that many): 1, or 3 grey copies
        extra = dict(
            speed=d.speed, num_digits=d.num_digits, target=target, channels=d.get("channels", 1)
        )
        num_clips = d.num_train_clips // max(chunks, 1)
        train = video_data.moving_digits("train", num_clips=num_clips, **train_common, **extra)
        val = video_data.moving_digits("test", num_clips=d.num_test_clips, **val_common, **extra)
        names = list(video_data.moving_digits_classes("label" if target == "frames" else target))
        return _chunked(train, d, chunks), val, DataInfo(task, len(names), names)
    if d.name == "arrow_of_time":
        extra = dict(
            videos=tuple(d.videos),
            channels=d.channels,
            train_fraction=d.train_fraction,
            max_frames=d.max_frames or None,
        )
        num_clips = d.num_train_clips // max(chunks, 1)
        train = video_data.arrow_of_time("train", num_clips=num_clips, **train_common, **extra)
        val = video_data.arrow_of_time("test", num_clips=d.num_test_clips, **val_common, **extra)
        names = list(video_data.ARROW_OF_TIME_CLASSES)
        return _chunked(train, d, chunks), val, DataInfo(task, len(names), names)
    if d.name == "tfds":
        extra = dict(data_dir=d.data_dir or None, target=target)
        train = video_data.tfds_video(d.dataset, d.train_split, **train_common, **extra)
        val = video_data.tfds_video(d.dataset, d.val_split, **val_common, **extra)
        return _chunked(train, d, chunks), val, DataInfo(task, d.num_classes or None)
    if d.name == "video_folder":
        if not d.root:
            raise ValueError("config.data.root must name a folder of class subfolders; got ''.")
        channels = d.get("channels", 3)
        train = video_data.video_folder(d.root, training=True, channels=channels, **train_common)
        names = list(train.class_names)
        with warnings.catch_warnings():
            if not d.val_root:  # the same files: their warnings were given for training
                warnings.simplefilter("ignore", UserWarning)
            try:  # its labels must mean the training set's classes
                val = video_data.video_folder(
                    d.val_root or d.root,
                    training=False,
                    class_names=names,
                    channels=channels,
                    **val_common,
                )
            except ValueError as error:
                if not d.val_root:
                    raise
                raise ConfigError(f"config.data.val_root: {error}") from error
        return _chunked(train, d, chunks), val, DataInfo(task, len(names), names)
    raise ValueError(f"Unknown dataset {d.name!r}; expected {', '.join(DATASETS)}.")


def _stream_chunks(config) -> int:
    """`config.data.stream_chunks` (0 when absent), checked: 0 or an int >= 2."""
    chunks = config.data.get("stream_chunks", 0)
    if not isinstance(chunks, int) or isinstance(chunks, bool) or chunks < 0 or chunks == 1:
        raise ConfigError(
            "config.data.stream_chunks must be 0 (clips on their own) or an int >= 2 (chunks "
            f"per streamed video); got {chunks!r}."
        )
    return chunks


def _check_stream_videos(config) -> None:
    """ConfigError unless the streamed training clips make at least one batch of videos."""
    chunks, d = _stream_chunks(config), config.data
    if not chunks or d.name not in ("moving_digits", "arrow_of_time"):
        return
    videos = d.num_train_clips // chunks
    if videos < d.batch_size:
        raise ConfigError(
            f"config.data.stream_chunks={chunks} chains {chunks} clips into each streamed "
            f"video, so the {d.num_train_clips} training clips (config.data.num_train_clips) "
            f"make {videos} videos, fewer than one batch of {d.batch_size} "
            "(config.data.batch_size; a stream drops a smaller batch): nothing would train. "
            f"Set config.data.num_train_clips to at least {chunks * d.batch_size}, or lower "
            "stream_chunks or batch_size."
        )


def _chunked(train: tf.data.Dataset, d, chunks: int) -> tf.data.Dataset:
    if not chunks:
        return train
    if train.cardinality() == 0:  # known to be empty: too few videos for one batch
        raise ConfigError(
            f"config.data.stream_chunks={chunks}: the training set has fewer videos "
            f"{chunks} clips long than one batch of {d.batch_size} (config.data.batch_size; "
            "a stream drops a smaller batch): nothing would train. Lower stream_chunks or "
            "batch_size, or use more videos."
        )
    return video_data.consecutive_chunks(train, d.clip_length)


def data_callbacks(train: tf.data.Dataset) -> list:
    """The callbacks a training set of `build_datasets` needs: its epoch set from `fit`'s
    (`SetDataEpoch`: a resumed run draws the data an uninterrupted one drew) and, when it
    is streamed, a pipeline reset at each new video."""
    callbacks = [SetDataEpoch(train)] if hasattr(train, "epoch") else []
    every = getattr(train, "chunks_per_video", None)
    return callbacks + ([ResetPipeline(every_n_batches=every)] if every else [])


def with_schedule(config, train: tf.data.Dataset):
    """`config` with `lr_decay_steps` set to the whole run when `lr_schedule` is "cosine"."""
    if config.get("lr_schedule", "constant") != "cosine" or config.get("lr_decay_steps", 0):
        return config
    steps = int(train.cardinality())
    if steps < 1:  # a pipeline that filters or decodes lazily: its length is unknown
        warnings.warn(
            "config.lr_schedule='cosine' needs the number of training batches, but this "
            "training set does not know its length: the learning rate stays constant. Set "
            "config.lr_decay_steps to decay it.",
            stacklevel=3,
        )
        return config
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.lr_decay_steps = steps * config.epochs
    return config


def stash_depth(config):
    """`config.stash_depth` as SidewaysModel takes it: digits as text become an int."""
    depth = config.get("stash_depth", 0)
    return int(depth) if isinstance(depth, str) and depth.isdigit() else depth


def drain(config) -> bool | str:
    """`config.drain` as SidewaysModel takes it: "auto" (when absent), or a bool (also
    from the text "true"/"false")."""
    return _true_false_or_auto(config.get("drain", options.AUTO_DRAIN))


def delay_lines(config) -> bool | str:
    """`config.delay_lines` as SidewaysModel takes it, as `drain`."""
    return _true_false_or_auto(config.get("delay_lines", options.AUTO_DRAIN))


def _true_false_or_auto(value) -> bool | str:
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def pipeline_chunk(config) -> int | str:
    """`config.pipeline_chunk` ("auto" when absent) as SidewaysModel takes it."""
    chunk = config.get("pipeline_chunk", options.AUTO_CHUNK)
    return int(chunk) if isinstance(chunk, str) and chunk.isdigit() else chunk


def build_model(config, info: DataInfo) -> SidewaysModel:
    """The compiled SidewaysModel of `config.model`, `config.mode` and `config.engine`.

    Adam runs at `config.learning_rate`; with the optional field `config.lr_decay_steps`
    (> 0), its learning rate decays to 0 along a cosine over that many steps. Optional:
    `config.model.temporal_window` and `temporal_shift` (a classifier that sees motion,
    `models.vgg_classifier`), `config.model.skips` (skip connections between stages:
    `models.skip_classifier` or `models.unet`, default False), `config.stash_depth`
    (Sideways' stash, default 0: the paper's), `config.drain` and `config.delay_lines`
    (default "auto"),
    `config.delay_warmup_steps` (the delay-aware learning rate, default 0: off),
    `config.precision` (the Keras dtype policy of the model, default "float32"; the global
    policy is left as it was), streaming (a stateful Sideways model) when
    `config.data.stream_chunks` is set, and `config.placement` (the model's `placement`;
    `--cluster` sets it). A value the model refuses is a ConfigError naming `config.model`,
    which the commands print as one line.
    """
    try:
        with dtype_policy(config.get("precision", "float32")):
            return _build_model(config, info)
    except ConfigError:
        raise
    except ValueError as error:
        raise ConfigError(f"config.model: {error}") from error


def _delay_warmup_steps(config) -> int:
    """`config.delay_warmup_steps`, for the paper's pairing and partial stashes: a full
    stash leaves no frame gap to scale (the motion configs set it for `stash_depth=0`)."""
    return 0 if stash_depth(config) == FULL_STASH else config.get("delay_warmup_steps", 0)


@contextlib.contextmanager
def dtype_policy(name: str):
    """Makes `name` Keras' global dtype policy within the block, then puts back the last."""
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def _build_model(config, info: DataInfo) -> SidewaysModel:
    m = config.model
    if info.task == "classification":
        if not info.num_classes:
            raise ValueError(
                "Classification needs the number of classes (config.data.num_classes)."
            )
        inputs = None
        if m.get("skips", False):
            stages, inputs = models.skip_classifier(info.num_classes, m.num_stages, m.width)
        else:
            stages = models.vgg_classifier(
                info.num_classes,
                m.num_stages,
                m.width,
                temporal_window=m.get("temporal_window", 1),
                temporal_shift=m.get("temporal_shift", 0.0),
            )
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metrics = ["accuracy"]
    else:
        inputs = None
        if m.get("skips", False):
            stages, inputs = models.unet(config.data.channels, m.num_stages, m.width)
        else:
            stages = models.encoder_decoder(config.data.channels, m.num_stages, m.width)
        loss = keras.losses.MeanSquaredError()
        metrics = []
    model = SidewaysModel(
        stages,
        inputs=inputs,
        mode=config.mode,
        engine=config.engine,
        stateful=config.mode == "sideways" and _stream_chunks(config) > 0,
        stash_depth=stash_depth(config),
        drain=drain(config),
        delay_lines=delay_lines(config),
        delay_warmup_steps=_delay_warmup_steps(config),
        pipeline_chunk=pipeline_chunk(config),
        placement=config.get("placement"),  # set by the training command's --cluster
        name=f"{m.name}_{config.mode}",
    )
    learning_rate = config.learning_rate
    if config.get("lr_decay_steps", 0):
        learning_rate = keras.optimizers.schedules.CosineDecay(
            learning_rate, decay_steps=config.lr_decay_steps
        )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=metrics)
    return model
