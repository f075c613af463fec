"""Engine results lined up with a model's variables."""

import keras
import numpy as np
import tensorflow as tf

from keras_sideways.engines import gradients


def test_dense_replaces_missing_gradients_with_zeros():
    sources = [tf.ones([2]), tf.ones([3])]
    out = gradients.dense([tf.constant([1.0, 2.0]), None], sources)
    np.testing.assert_array_equal(out[0], [1, 2])
    np.testing.assert_array_equal(out[1], [0, 0, 0])


def test_stage_gradients_in_variable_order_sum_shared_variables():
    shared = keras.layers.Dense(2, use_bias=False)
    first, second = (
        keras.Sequential([shared]),
        keras.Sequential([shared, keras.layers.Dense(1, use_bias=False)]),
    )
    first(tf.ones([1, 2]))
    second(tf.ones([1, 2]))
    variables = [second.trainable_variables[1], shared.kernel]  # any order
    indices = gradients.stage_variable_indices(variables, [first, second])
    assert indices == [[1], [1, 0]]
    grads = gradients.in_variable_order(
        variables,
        [first, second],
        [[tf.fill([2, 2], 1.0)], [tf.fill([2, 2], 2.0), tf.fill([2, 1], 5.0)]],
    )
    np.testing.assert_array_equal(grads[0], np.full([2, 1], 5.0))
    np.testing.assert_array_equal(grads[1], np.full([2, 2], 3.0))  # 1 + 2: used twice
