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


def consecutive_chunks(dataset: tf.data.Dataset, chunk_length: int) -> tf.data.Dataset:
    """Cuts every batch of videos [batch, time, ...] into consecutive chunks of frames.

    Args:
        dataset: batches of (video, clip labels) with a fixed batch size and clip length,
            e.g. `moving_digits(..., clip_length=64, drop_remainder=True)`.
        chunk_length: frames per chunk; it must divide the videos' length.

    Returns:
        A dataset of (video chunk [batch, chunk_length, ...], labels [batch]): the chunks
        of one batch of videos in order, then those of the next. Lane b of each chunk
        continues lane b of the chunk before. Its `chunks_per_video` attribute is the
        number of chunks a batch of videos becomes: reset the pipeline that often. It
        keeps `dataset`'s `epoch` attribute, if any.

    Raises:
        ValueError: for per-frame targets, an unknown batch size or clip length, or a
            chunk length that does not divide the clip length.
    """
    chunk_length = cp.check_positive_int("chunk_length", chunk_length)
    video_spec, target_spec = dataset.element_spec[:2]
    batch, time = video_spec.shape[0], video_spec.shape[1]
    if target_spec.shape.rank != 1:
        raise ValueError(
            "consecutive_chunks streams clip labels [batch] only (stateful=True); got "
            f"targets of shape {target_spec.shape}."
        )
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

    def split(video, target):
        chunks = tf.reshape(video, [batch, count, chunk_length, *video.shape[2:]])
        chunks = tf.transpose(chunks, [1, 0, 2, *range(3, chunks.shape.rank)])
        targets = tf.repeat(target[None], count, axis=0)
        return tf.data.Dataset.from_tensor_slices((chunks, targets))

    chunked = dataset.map(lambda video, target, *_: (video, target)).flat_map(split)
    batches = dataset.cardinality()
    if batches >= 0:  # flat_map hides it; Keras needs it to know an epoch's steps
        chunked = chunked.apply(tf.data.experimental.assert_cardinality(batches * count))
    chunked = chunked.prefetch(tf.data.AUTOTUNE)
    chunked.chunks_per_video = count
    if hasattr(dataset, "epoch"):  # the builders' variable that callbacks.SetDataEpoch sets
        chunked.epoch = dataset.epoch
    return chunked
