"""Batch norm and random layers in a tick: grouped statistics, keyed masks, patching."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import stages_with

from keras_sideways.engines import tick_layers


def test_grouped_moments_are_each_groups_mean_and_variance_over_all_but_channels():
    x = np.random.default_rng(0).normal(size=(5, 3, 3, 2)).astype("float32")
    ids = tf.constant([1, 0, 1, -1, 0])  # row 3 is padding: in no group
    mean, variance, counts = tick_layers.grouped_moments(tf.constant(x), ids, 2, axis=-1)
    np.testing.assert_array_equal(counts, [2, 2])
    for group, rows in ((0, [1, 4]), (1, [0, 2])):
        np.testing.assert_allclose(mean[group], x[rows].mean(axis=(0, 1, 2)), rtol=1e-5)
        np.testing.assert_allclose(variance[group], x[rows].var(axis=(0, 1, 2)), rtol=1e-5)


def test_the_batched_rows_draw_the_masks_the_pipeline_draws():
    seed = tf.constant([7, 11], tf.int64)
    batch, time, capacity = 3, 4, 2
    clip = tick_layers.ClipRows(None, batch, time, capacity, tf.range(time))
    drawn = tf.reshape(clip.uniform(seed, batch * time, [5], False), [batch, time, 5])
    for t in range(time):
        for group in range(2):
            tick = tick_layers.TickRows(None, t, group)
            lanes = tick.uniform(seed, capacity, [5], False)[: batch - group * capacity]
            np.testing.assert_array_equal(
                drawn[group * capacity : (group + 1) * capacity, t], lanes
            )
    assert len(np.unique(drawn.numpy())) == batch * time * 5  # fresh per lane and tick


def test_batch_norm_of_a_tick_normalises_over_its_real_lanes_only():
    norm = keras.layers.BatchNormalization()
    x = np.random.default_rng(1).normal(size=(4, 2, 2, 3)).astype("float32")
    x[3] = 100.0  # a padding lane
    norm(x)
    layers = tick_layers.TickLayers([norm])
    with layers.patched(), layers.rows(tick_layers.TickRows(None, 0, lanes=3), record=True):
        y = norm(tf.constant(x), training=True)
    ((mean, variance),) = layers.take_statistics()
    reference = keras.layers.BatchNormalization()
    reference(x)
    np.testing.assert_allclose(y[:3], reference(x[:3], training=True), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(mean, x[:3].mean(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(variance, x[:3].var(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_array_equal(norm.moving_mean, np.zeros(3))  # not moved by the tick


def test_update_moving_statistics_is_keras_momentum_update_unless_skipped():
    norm = keras.layers.BatchNormalization(momentum=0.75)
    norm(np.zeros((1, 2), "float32"))
    mean, variance = tf.constant([4.0, 8.0]), tf.constant([5.0, 9.0])
    tick_layers.update_moving_statistics([(norm, mean, variance)], tf.constant(False))
    np.testing.assert_array_equal(norm.moving_mean, [0.0, 0.0])
    tick_layers.update_moving_statistics([(norm, mean, variance)], tf.constant(True))
    np.testing.assert_allclose(norm.moving_mean, [1.0, 2.0])
    np.testing.assert_allclose(norm.moving_variance, [0.75 + 1.25, 0.75 + 2.25])


def test_layers_are_found_nested_and_given_back_as_they_were():
    stages = stages_with("dropout") + [
        keras.Sequential([keras.Sequential([keras.layers.GaussianNoise(0.1)])]),
    ]
    layers = tick_layers.TickLayers(stages)
    assert [type(x).__name__ for x in layers.random] == ["Dropout", "Dropout", "GaussianNoise"]
    noise = layers.random[-1]
    generator = noise.seed_generator
    with layers.patched():
        assert "call" in vars(layers.random[0]) and noise.seed_generator is not generator
    assert all("call" not in vars(x) for x in layers.random)
    assert noise.seed_generator is generator
    assert tick_layers.unkeyable_layers(stages) == [noise]
    assert len(tick_layers.batch_norms(stages_with("batch_norm"))) == 2


@pytest.mark.parametrize(
    "layer, engine, message",
    [
        (keras.layers.GaussianDropout(0.2, name="g"), "batched", "GaussianDropout layer 'g'"),
        (keras.layers.BatchNormalization(renorm=True, name="r"), "pipeline", "renorm=True"),
    ],
)
def test_check_stages_names_the_layer(layer, engine, message):
    stages = [keras.Sequential([keras.layers.Dense(2), layer]), keras.layers.Dense(2)]
    with pytest.raises(ValueError, match=message):
        tick_layers.check_stages(stages, engine)
    tick_layers.check_stages([keras.layers.Dense(2), keras.layers.Dropout(0.5)], "batched")


@pytest.mark.parametrize("layer", [keras.layers.Dropout(0.5), keras.layers.GaussianNoise(1.0)])
def test_noise_is_a_function_of_step_seed_tick_and_group(layer):
    layers = tick_layers.TickLayers([layer])
    x = tf.ones([2, 6])
    seeds = layers.draw_seeds()

    def noisy(tick, group=0, step_seeds=seeds):
        with layers.rows(tick_layers.TickRows(step_seeds, tick, group)):
            return layer(x, training=True).numpy()

    with layers.patched():
        again = noisy(3)  # what a stash's second pass at the input of tick 3 meets
        np.testing.assert_array_equal(noisy(3), again)
        for other in (noisy(4), noisy(3, group=1), noisy(3, step_seeds=layers.draw_seeds())):
            assert np.any(other != again)
