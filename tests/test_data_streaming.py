"""Long videos as consecutive chunks, and a stateful model trained on them."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_conv_stages

import keras_sideways as ks
from keras_sideways import data


def long_digits(**kwargs):
    args = dict(clip_length=12, image_size=9, num_clips=8, batch_size=4, drop_remainder=True)
    return data.moving_digits("train", **dict(args, **kwargs))


def test_chunks_continue_each_lane_in_order():
    videos = long_digits(shuffle=False)
    chunks = data.consecutive_chunks(videos, chunk_length=4)
    assert chunks.chunks_per_video == 3
    got = list(chunks)
    assert len(got) == 2 * 3  # 8 videos in batches of 4, 3 chunks each
    for g, (video, label) in enumerate(videos):
        joined = np.concatenate([got[3 * g + i][0].numpy() for i in range(3)], axis=1)
        np.testing.assert_array_equal(joined, video.numpy())
        for i in range(3):
            np.testing.assert_array_equal(got[3 * g + i][1], label)


def test_a_stateful_model_is_reset_where_each_batch_of_videos_begins():
    chunks = data.consecutive_chunks(long_digits(), chunk_length=4)
    model = ks.SidewaysModel(tiny_conv_stages(classes=10), stateful=True)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(True))
    seen = []

    class Ticks(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if model.buffers is not None:
                seen.append(int(model.buffers.ticks.numpy()))

    reset = ks.callbacks.ResetPipeline(every_n_batches=chunks.chunks_per_video)
    model.fit(chunks, epochs=2, verbose=0, callbacks=[reset, Ticks()])
    # Ticks since priming at each step: 0, 4, 8 per batch of videos, over 2 x 2 of them.
    assert seen == [0, 4, 8] * 4, seen  # 2 epochs of 2 batches of videos, 3 chunks each
    assert int(model.buffers.ticks.numpy()) == 12


def test_per_clip_sample_weights_are_carried_like_the_labels():
    videos = long_digits(shuffle=False)
    weighted = videos.map(lambda v, y: (v, y, tf.cast(y, tf.float32) / 10.0))
    chunks = data.consecutive_chunks(weighted, chunk_length=4)
    assert len(chunks.element_spec) == 3
    got = list(chunks)
    assert len(got) == 2 * 3
    for g, (video, label) in enumerate(videos):
        for i in range(3):
            chunk, chunk_label, weight = got[3 * g + i]
            np.testing.assert_array_equal(chunk, video[:, 4 * i : 4 * i + 4])
            np.testing.assert_array_equal(chunk_label, label)
            np.testing.assert_allclose(weight, label.numpy() / 10.0)


@pytest.mark.parametrize(
    "dataset, chunk, message",
    [
        (lambda: long_digits(drop_remainder=False), 4, "fixed size.*drop_remainder=True"),
        (lambda: long_digits(), 5, "must divide the clip length 12; got chunk_length=5"),
        (lambda: long_digits(target="frames"), 4, "clip labels .* only"),
        (lambda: long_digits(), 0, "chunk_length"),
        (
            lambda: long_digits().map(lambda v, y: v),
            4,
            r"elements \(video, clip labels\) .*; got a bare tensor of shape \(4, 12, 9, 9, 1\)",
        ),
        (
            lambda: long_digits().map(lambda v, y: {"video": v, "label": y}),
            4,
            r"got a dict of 'video': a bare tensor .* Map the dataset to such tuples",
        ),
        (
            lambda: long_digits().unbatch(),
            4,
            r"batches of videos .* got video of shape \(12, 9, 9, 1\) \(unbatched\?",
        ),
        (
            lambda: long_digits().map(lambda v, y: (v, y, tf.ones_like(v))),
            4,
            r"per-clip sample weights \[batch\] only; got sample weights of shape \(4, 12",
        ),
        (lambda: long_digits().map(lambda v, y: (v, y, y, y)), 4, "got a 4-tuple"),
    ],
)
def test_bad_streams_are_refused_by_name(dataset, chunk, message):
    with pytest.raises(ValueError, match=message):
        data.consecutive_chunks(dataset(), chunk_length=chunk)


def test_reset_every_n_batches_needs_one_step_per_execution():
    with pytest.raises(
        ValueError, match=r"every_n_batches \(or None\) to be a positive integer; got 0"
    ):
        ks.callbacks.ResetPipeline(every_n_batches=0)
    model = ks.SidewaysModel(tiny_conv_stages(), stateful=True)
    model.compile(optimizer="sgd", loss="mse", steps_per_execution=2)
    reset = ks.callbacks.ResetPipeline(every_n_batches=2)
    reset.set_model(model)
    with pytest.raises(ValueError, match="steps_per_execution=2"):
        reset.on_train_begin()


def test_a_streams_arrays_are_taken_in_their_order():
    # Keras' fit shuffles arrays by default: each lane then continued other videos' chunks,
    # silently. Chunk-major arrays: batch i holds chunk i of the same 2 videos.
    rng = np.random.default_rng(3)
    chunks, labels = rng.random((8, 3, 8, 8, 1), np.float32), np.tile([0, 1], 4)
    in_order = tf.data.Dataset.from_tensor_slices((chunks, labels)).batch(2, drop_remainder=True)
    weights = []
    for x, y in ((chunks, labels), (in_order, None)):
        keras.utils.set_random_seed(5)
        model = ks.SidewaysModel(tiny_conv_stages(), stateful=True)
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        model.fit(x, y, batch_size=None if y is None else 2, epochs=2, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="cannot shuffle its arrays; got shuffle=True"):
        model.fit(chunks, labels, batch_size=2, shuffle=True, verbose=0)
