"""Backprop, the baseline engine, against Keras' own gradient of the same loss."""

import keras
import numpy as np
import tensorflow as tf
from conftest import CLIP_LOSS, random_video, tiny_conv_stages

from keras_sideways.engines import bp


def test_frame_loss_weights_clips_and_averages_frames():
    mse = keras.losses.MeanSquaredError()
    outputs = tf.constant([[[1.0], [3.0]], [[2.0], [2.0]]])  # [batch 2, time 2, 1]
    target = tf.zeros([2, 2, 1])
    assert float(bp.frame_loss(mse, target, outputs, None)) == (1 + 9 + 4 + 4) / 4
    weights = tf.constant([1.0, 0.0])  # a clip's weight applies to each of its frames
    assert float(bp.frame_loss(mse, target, outputs, weights)) == (1 + 9) / 4
    labels = tf.constant([0, 1])  # clip labels count for every frame
    logits = tf.constant([[[5.0, 0.0], [5.0, 0.0]], [[0.0, 5.0], [5.0, 0.0]]])
    per_frame = keras.losses.sparse_categorical_crossentropy(
        tf.constant([0, 0, 1, 1]), tf.reshape(logits, [4, 2]), from_logits=True
    )
    np.testing.assert_allclose(
        bp.frame_loss(CLIP_LOSS, labels, logits, None), np.mean(per_frame), rtol=1e-6
    )


def test_bp_gradients_equal_keras_gradients_of_the_sequential_model():
    stages = tiny_conv_stages(num_stages=4)
    video = random_video(batch=3, time=4, seed=5)
    labels = np.array([0, 1, 2])
    sequential = keras.Sequential(stages)
    frames = video.reshape(12, 8, 8, 1)
    sequential(frames)
    result = bp.bp_gradients(stages, tf.constant(video), tf.constant(labels), CLIP_LOSS)
    with tf.GradientTape() as tape:
        loss = CLIP_LOSS(np.repeat(labels, 4), sequential(frames, training=True))
    expected = tape.gradient(loss, sequential.trainable_variables)
    flat = [g for stage in result.gradients for g in stage]
    assert len(flat) == len(expected)
    for got, want in zip(flat, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(result.loss, loss, rtol=1e-6)
    assert result.outputs.shape == (3, 4, 3)


def test_a_layer_shared_by_two_stages_gets_its_gradient_once():
    # The tape gives each place of a shared variable the whole gradient; the model sums
    # the stages' gradients, so BP's step was twice the gradient (Sideways' was right).
    from conftest import assert_all_close

    import keras_sideways as ks

    shared = keras.layers.Conv2D(2, 3, padding="same", activation="tanh")
    head = keras.Sequential([keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    head.build((None, 8, 8, 2))
    model = ks.SidewaysModel([keras.layers.Conv2D(2, 1), shared, shared, head], mode="bp")
    model.compile(optimizer="sgd", loss=CLIP_LOSS)
    video, labels = random_video(batch=2, time=3, seed=2), np.array([0, 2])
    grads = model.compute_gradients(video, labels)
    frames = tf.constant(video.reshape(6, 8, 8, 1))
    with tf.GradientTape() as tape:
        per_frame = head(shared(shared(model.stages[0](frames))))
        loss = CLIP_LOSS(np.repeat(labels, 3), per_frame)
    assert len(model.trainable_variables) == 6  # the shared layer's once
    assert_all_close(grads, tape.gradient(loss, model.trainable_variables), model)
    stash_zero = model.compute_gradients(video, labels, mode="sideways")  # not BP: sanity
    assert len(stash_zero) == 6
