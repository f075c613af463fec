"""Passes whose order and clip keys are functions of (seed, epoch, position) alone."""

import numpy as np
import pytest
import tensorflow as tf

from keras_sideways.data import epochs


def source(size=10):
    """(index, a string whose length varies) pairs: elements of different shapes."""
    return tf.data.Dataset.range(size).map(lambda i: (i, tf.strings.as_string(tf.range(i))))


def indices(dataset):
    return [int(element[0]) for element in dataset]


def test_windows_are_reordered_in_place_from_the_seed():
    def order(seed):
        return indices(epochs.shuffle_in_windows(source(), 4, tf.constant(seed, tf.int64)))

    first = order([1, 2])
    assert first == order([1, 2]) and first != order([1, 3])
    assert [sorted(first[i : i + 4]) for i in (0, 4, 8)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert first != list(range(10))
    elements = list(epochs.shuffle_in_windows(source(), 4, tf.constant([1, 2], tf.int64)))
    assert all(len(text) == index for index, text in elements)  # whole elements move


def test_a_pass_is_drawn_from_its_epoch_alone():
    passes = epochs.epoch_passes(source(), seed=3, shuffle_window=10)
    assert int(passes.cardinality()) == 10
    orders = [indices(passes) for _ in range(3)]
    assert int(passes.epoch.numpy()) == 3  # each pass took the next epoch
    assert len({tuple(order) for order in orders}) == 3
    assert all(sorted(order) == list(range(10)) for order in orders)

    resumed = epochs.epoch_passes(source(), seed=3, shuffle_window=10)
    resumed.epoch.assign(2)  # as callbacks.SetDataEpoch does
    assert indices(resumed) == orders[2]
    other_seed = epochs.epoch_passes(source(), seed=4, shuffle_window=10)
    assert indices(other_seed) != orders[0]


def test_clip_keys_follow_the_example_not_its_place_in_the_order():
    def keys(window, epoch):
        passes = epochs.epoch_passes(source(), seed=3, shuffle_window=window, clip_keys=True)
        passes.epoch.assign(epoch)
        return {int(index): int(key) for index, _, key in passes}

    first = keys(0, epoch=0)
    assert keys(10, epoch=0) == first  # the same keys, however the pass is ordered
    assert keys(0, epoch=1) != first
    assert len(set(first.values())) == 10 and min(first.values()) >= 0


def test_single_tensor_elements_pass_through():
    passes = epochs.epoch_passes(tf.data.Dataset.range(3), seed=0, clip_keys=True)
    assert [int(x) for x, _ in passes] == [0, 1, 2]
    unkeyed = epochs.epoch_passes(tf.data.Dataset.range(3), seed=0)
    assert [int(x) for x in unkeyed] == [0, 1, 2]


@pytest.mark.parametrize("size", [0, 1])
def test_tiny_sources(size):
    passes = epochs.epoch_passes(tf.data.Dataset.range(size), seed=0, shuffle_window=4)
    assert int(passes.cardinality()) == size
    np.testing.assert_array_equal(list(passes.as_numpy_iterator()), np.arange(size))
