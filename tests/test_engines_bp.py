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
