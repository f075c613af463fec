"""Clip batches: layout checks, frame flattening, per-frame targets and clip scores."""

import numpy as np
import pytest
import tensorflow as tf

from keras_sideways import clips


@pytest.mark.parametrize(
    "shape, dtype, message",
    [
        ((2, 4, 8, 8), "float32", r"rank 5.*got rank 4 with shape \[2, 4, 8, 8\]"),
        ((2, 0, 8, 8, 1), "float32", r"at least one frame.*\[2, 0, 8, 8, 1\]"),
        ((2, 4, 8, 8, 1), "uint8", "float video.*got dtype uint8.*tf.cast"),
    ],
)
def test_bad_video_is_named(shape, dtype, message):
    with pytest.raises(ValueError, match=message):
        clips.check_video(tf.zeros(shape, dtype))


def test_bad_targets_and_weights_are_named():
    video = tf.zeros([2, 4, 8, 8, 1])
    with pytest.raises(ValueError, match="got a scalar"):
        clips.check_target(video, tf.constant(1))
    with pytest.raises(ValueError, match=r"same batch size.*target \[3\]"):
        clips.check_target(video, tf.zeros([3]))
    with pytest.raises(ValueError, match=r"video's time \(4\); got target \[2, 5, 1\]"):
        clips.check_target(video, tf.zeros([2, 5, 1]))
    with pytest.raises(ValueError, match=r"one per clip; got \[2, 4\]"):
        clips.check_sample_weight(video, tf.zeros([2, 4]))
    clips.check_target(video, tf.zeros([2, 4, 3]))  # per-frame targets are fine


def test_frames_round_trip_batch_major():
    video = tf.reshape(tf.range(2 * 3 * 2, dtype=tf.float32), [2, 3, 2])
    flat = clips.frames_to_batch(video)
    assert flat.shape == (6, 2)
    np.testing.assert_array_equal(flat[3], [6, 7])  # clip 1, frame 0
    np.testing.assert_array_equal(clips.batch_to_frames(flat, video), video)


def test_clip_labels_repeat_for_every_frame():
    np.testing.assert_array_equal(clips.per_frame(tf.constant([4, 7]), 3), [4, 4, 4, 7, 7, 7])
    frames = tf.constant([[[1.0], [2.0]], [[3.0], [4.0]]])
    np.testing.assert_array_equal(clips.per_frame(frames, 2), [[1], [2], [3], [4]])


def test_clip_probabilities_average_per_frame_probabilities():
    logits = tf.constant(
        [[[0.0, np.log(3.0)], [np.log(3.0), 0.0]]]
    )  # softmax: .25/.75 then .75/.25
    np.testing.assert_allclose(clips.clip_probabilities(logits, True), [[0.5, 0.5]], rtol=1e-6)
    probabilities = tf.constant([[[0.2, 0.8], [0.6, 0.4]]])
    np.testing.assert_allclose(clips.clip_probabilities(probabilities, False), [[0.4, 0.6]])
    one_unit = tf.constant([[[0.0], [np.log(3.0)]]])  # sigmoid: 0.5 then 0.75
    np.testing.assert_allclose(clips.clip_probabilities(one_unit, True), [[0.625]], rtol=1e-6)


def test_a_stream_needs_clip_labels_and_its_first_batch_size():
    video = tf.zeros([2, 4, 8, 8, 1])
    with pytest.raises(ValueError, match=r"clip labels \[batch\] only: per-frame targets \[2, 4"):
        clips.check_stream_batch(video, tf.zeros([2, 4, 3]), capacity=2)
    with pytest.raises(ValueError, match="fixes the batch size to 3.*batch of 2"):
        clips.check_stream_batch(video, tf.zeros([2]), capacity=3)
    clips.check_stream_batch(video, tf.zeros([2]), capacity=None)  # before the buffers exist


def test_losses_are_read_for_classification_and_logits():
    import keras

    assert clips.is_classification_loss("sparse_categorical_crossentropy")
    assert clips.is_classification_loss(keras.losses.CategoricalCrossentropy())
    assert not clips.is_classification_loss(keras.losses.MeanSquaredError())
    assert clips.loss_takes_logits(keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert not clips.loss_takes_logits(keras.losses.SparseCategoricalCrossentropy())
    assert not clips.loss_takes_logits("sparse_categorical_crossentropy")  # a name: probabilities


def test_a_clip_shorter_than_the_pipeline_is_warned_about():
    with pytest.warns(UserWarning, match="bottom 2 stage.*at least 5 frames"):
        assert clips.warn_if_too_short(3, 5)
    assert not clips.warn_if_too_short(5, 5) and not clips.warn_if_too_short(None, 5)
