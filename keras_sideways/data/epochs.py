"""Passes over a dataset whose every random draw is a function of (seed, epoch, position).

`tf.data`'s `shuffle(reshuffle_each_iteration=True)` and `Dataset.random` draw afresh each
time this process makes an iterator, so a run resumed at epoch 3 would draw epoch 0's order
and clip starts again, and end with other weights than a run that was never stopped. The
builders' training sets instead draw from stateless random ops seeded by the builder's
seed, the pass's epoch and the example's position, and read the epoch from a variable,
`dataset.epoch`, as each pass begins:

- `callbacks.SetDataEpoch(dataset)` sets it to `fit`'s epoch at every epoch start, so a run
  resumed at epoch k draws epoch k's data, as the uninterrupted run did;
- without it, each pass takes the next epoch (0, 1, 2, ... as iterators are made), so every
  pass is still reshuffled.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

ALGORITHM = "philox"  # named: "auto_select" may pick another generator on another device
ORDER, CLIP_START = 0, 1  # independent random streams of one (seed, epoch)


def epoch_seed(seed: int, epoch: tf.Tensor, stream: int) -> tf.Tensor:
    """The stateless seed, int64 [2], of one random stream (ORDER, CLIP_START) of an epoch."""
    base = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
    return _fold_in(base, stream)


def _fold_in(seed: tf.Tensor, data) -> tf.Tensor:
    data = tf.cast(data, tf.int64)
    return tf.random.experimental.stateless_fold_in(seed, data, alg=ALGORITHM)


def clip_key(seed: int, epoch: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """A random non-negative int64 for example `index` in an epoch: where its clip starts."""
    return tf.random.stateless_uniform(
        [],
        _fold_in(epoch_seed(seed, epoch, CLIP_START), index),
        minval=0,
        maxval=tf.int64.max,
        dtype=tf.int64,
        alg=ALGORITHM,
    )


def shuffle_in_windows(dataset: tf.data.Dataset, window: int, seed: tf.Tensor) -> tf.data.Dataset:
    """`dataset` with each run of `window` consecutive elements put in a random order.

    Window j's order is drawn from `seed` (int64 [2]) and j alone. Elements may differ in
    shape (encoded videos of any length): a window is a ragged batch while it is reordered.
    """

    def reorder(j, elements):
        size = tf.shape(tf.nest.flatten(elements)[0], out_type=tf.int64)[0]
        order = tf.random.experimental.stateless_shuffle(
            tf.range(size), _fold_in(seed, j), alg=ALGORITHM
        )
        return tf.nest.map_structure(lambda t: tf.gather(t, order), elements)

    return dataset.ragged_batch(window).enumerate().map(reorder).unbatch()


def epoch_passes(
    source: tf.data.Dataset,
    seed: int,
    *,
    shuffle_window: int = 0,
    clip_keys: bool = False,
    per_pass: Callable[[tf.data.Dataset], tf.data.Dataset] | None = None,
) -> tf.data.Dataset:
    """`source` once per pass, reordered and keyed from (seed, epoch, position) alone.

    Args:
        source: a dataset of tuples (or of single tensors), in a fixed order.
        seed: non-negative int.
        shuffle_window: reorder each run of this many consecutive elements every pass
            (`shuffle_in_windows`; at least the source's length: the whole source).
            0: keep the source's order.
        clip_keys: follow each element with a random non-negative int64 drawn from
            (seed, epoch, index in `source`): `clip_key`.
        per_pass: applied to each pass's dataset (it must keep the source's length). A
            pass it reads again (`repeat`) is the same epoch's; repeating the passes
            would begin the next epoch.

    Returns:
        The passes: `source`'s elements, or `(*element, key)` with `clip_keys`. Its `epoch`
        attribute is the int64 `tf.Variable` holding the epoch the next pass draws; each
        pass reads it as it begins and advances it by one (`callbacks.SetDataEpoch` sets it
        to `fit`'s epoch instead). The length is `source`'s when that is known.
    """
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="data_epoch")

    def one_pass(this_epoch):
        indexed = source.enumerate()
        if shuffle_window:
            order_seed = epoch_seed(seed, this_epoch, ORDER)
            indexed = shuffle_in_windows(indexed, shuffle_window, order_seed)
        if not clip_keys:
            drawn = indexed.map(lambda index, element: element)
        else:

            def keyed(index, element):
                key = clip_key(seed, this_epoch, index)
                return (*element, key) if isinstance(element, tuple) else (element, key)

            drawn = indexed.map(keyed)
        return drawn if per_pass is None else per_pass(drawn)

    # The epoch is read when the pass's first element is asked for, after fit's
    # on_epoch_begin: iterators pull lazily.
    begin = tf.data.Dataset.from_tensors(0).map(lambda _: epoch.assign_add(1) - 1)
    passes = begin.flat_map(one_pass)
    length = int(source.cardinality())
    if length >= 0:  # flat_map hides it; Keras needs it to know an epoch's steps
        passes = passes.apply(tf.data.experimental.assert_cardinality(length))
    passes.epoch = epoch
    return passes
