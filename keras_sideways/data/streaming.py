"""Long videos as consecutive chunks, for training a stateful pipeline (`stateful=True`).

A Sideways pipeline fills for L-1 ticks after priming: its bottom stages first receive
errors born from the primed first frame. Trained on separate clips, it pays that fill on
every clip. Streamed, it pays it once per video: `consecutive_chunks` cuts each batch of
long videos into chunks that continue one another lane by lane, and
`callbacks.ResetPipeline(every_n_batches=...)` primes the pipeline afresh where a new
batch of videos begins.
"""

from __future__ import annotations

import tensorflow as tf

from keras_sideways.data import clip_pipeline as cp


def _describe(spec) -> str:
    """An element spec in words, for error messages: its structure and shapes."""
    if isinstance(spec, tf.TensorSpec):
        return f"a bare tensor of shape {spec.shape}"
    if isinstance(spec, dict):
        return "a dict of " + ", ".join(f"{k!r}: {_describe(v)}" for k, v in spec.items())
    if isinstance(spec, tuple):
        return f"a {len(spec)}-tuple (" + ", ".join(_describe(v) for v in spec) + ")"
    return repr(spec)


def _check_elements(element_spec) -> tuple[tf.TensorSpec, ...]:
    """The (video, labels[, sample weights]) specs of a dataset's elements, checked."""
    if (
        not isinstance(element_spec, tuple)
        or len(element_spec) not in (2, 3)
        or not all(isinstance(spec, tf.TensorSpec) for spec in element_spec)
    ):
        raise ValueError(
            "consecutive_chunks expects elements (video, clip labels) or (video, clip "
            f"labels, sample weights); got {_describe(element_spec)}. Map the dataset to "
            "such tuples first, e.g. dataset.map(lambda x: (x['video'], x['label']))."
        )
    video_spec, target_spec, *weight_spec = element_spec
    if video_spec.shape.rank != 5:
        unbatched = " (unbatched? batch it with drop_remainder=True)"
        raise ValueError(
            "consecutive_chunks expects batches of videos [batch, time, height, width, "
            f"channels]; got video of shape {video_spec.shape}"
            f"{unbatched if video_spec.shape.rank == 4 else ''}."
        )
    if target_spec.shape.rank != 1:
        raise ValueError(
            "consecutive_chunks streams clip labels [batch] only (stateful=True); got "
            f"targets of shape {target_spec.shape}."
        )
    if weight_spec and weight_spec[0].shape.rank != 1:
        raise ValueError(
            "consecutive_chunks streams per-clip sample weights [batch] only; got sample "
            f"weights of shape {weight_spec[0].shape}."
        )
    return tuple(element_spec)


def consecutive_chunks(dataset: tf.data.Dataset, chunk_length: int) -> tf.data.Dataset:
    """Cuts every batch of videos [batch, time, ...] into consecutive chunks of frames.

    Args:
        dataset: batches of (video, clip labels), or (video, clip labels, per-clip sample
            weights), with a fixed batch size and clip length, e.g.
            `moving_digits(..., clip_length=64, drop_remainder=True)`.
        chunk_length: frames per chunk; it must divide the videos' length.

    Returns:
        A dataset of (video chunk [batch, chunk_length, ...], labels [batch][, sample
        weights [batch]]): the chunks of one batch of videos in order, then those of the
        next; every chunk carries its videos' labels and weights. Lane b of each chunk
        continues lane b of the chunk before. Its `chunks_per_video` attribute is the
        number of chunks a batch of videos becomes: reset the pipeline that often. It
        keeps `dataset`'s `epoch` attribute, if any.

    Raises:
        ValueError: for elements other than such tuples (bare videos, dicts), unbatched
            videos, per-frame targets or weights, an unknown batch size or clip length, or
            a chunk length that does not divide the clip length.
    """
    chunk_length = cp.check_positive_int("chunk_length", chunk_length)
    video_spec = _check_elements(dataset.element_spec)[0]
    batch, time = video_spec.shape[0], video_spec.shape[1]
    if batch is None or time is None:
        raise ValueError(
            "consecutive_chunks needs batches of a fixed size and clip length (a stateful "
            f"pipeline's lanes are fixed): got video batches of shape {video_spec.shape}. "
            "Batch with drop_remainder=True."
        )
    if time % chunk_length:
        raise ValueError(
            f"chunk_length must divide the clip length {time}; got chunk_length={chunk_length}."
        )
    count = time // chunk_length

    def split(video, *per_clip):  # per_clip: the labels, and the sample weights if any
        chunks = tf.reshape(video, [batch, count, chunk_length, *video.shape[2:]])
        chunks = tf.transpose(chunks, [1, 0, 2, *range(3, chunks.shape.rank)])
        repeated = tuple(tf.repeat(x[None], count, axis=0) for x in per_clip)
        return tf.data.Dataset.from_tensor_slices((chunks, *repeated))

    chunked = dataset.flat_map(split)
    batches = dataset.cardinality()
    if batches >= 0:  # flat_map hides it; Keras needs it to know an epoch's steps
        chunked = chunked.apply(tf.data.experimental.assert_cardinality(batches * count))
    chunked = chunked.prefetch(tf.data.AUTOTUNE)
    chunked.chunks_per_video = count
    if hasattr(dataset, "epoch"):  # the builders' variable that callbacks.SetDataEpoch sets
        chunked.epoch = dataset.epoch
    return chunked
