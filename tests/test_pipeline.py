"""The tick-by-tick engine against a slow reference, against BP on static video, and its counts."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import random_video, tiny_conv_stages

import keras_sideways as ks
from keras_sideways import pipeline

CLIP_LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
FRAME_LOSS = keras.losses.MeanSquaredError()


def reference_pseudo_gradients(stages, video, target, loss_fn):
    """SIDEWAYS.md written plainly: a Python loop over ticks, one GradientTape per stage.

    Buffers are Python lists, swapped whole at the end of each tick. A stage's gradient
    is averaged over the ticks t >= L-1-k, the ones whose error was born from a loss.
    """
    video = tf.constant(video)
    target = tf.constant(target)
    depth, time = len(stages), video.shape[1]
    clip_labels = target.shape.rank == 1

    activations, x = [], video[:, 0]  # priming: one synchronised forward pass
    for stage in stages[:-1]:
        x = stage(x, training=True)
        activations.append(x)
    errors = [tf.zeros_like(a) for a in activations]

    sums = [[tf.zeros_like(v) for v in s.trainable_variables] for s in stages]
    counts = [0] * depth
    for t in range(time):
        inputs = [video[:, t]] + activations
        new_activations, new_errors = [None] * (depth - 1), [None] * (depth - 1)
        for k, stage in enumerate(stages):
            weights = stage.trainable_variables
            with tf.GradientTape() as tape:
                tape.watch(inputs[k])
                out = stage(inputs[k], training=True)
                if k == depth - 1:
                    y = target if clip_labels else target[:, max(t - depth + 1, 0)]
                    loss = loss_fn(y, out)
            if k == depth - 1:
                grads = tape.gradient(loss, [inputs[k]] + weights)
            else:
                grads = tape.gradient(out, [inputs[k]] + weights, output_gradients=errors[k])
                new_activations[k] = out
            if k > 0:
                new_errors[k - 1] = grads[0]
            if t >= depth - 1 - k:
                counts[k] += 1
                sums[k] = [s + g for s, g in zip(sums[k], grads[1:])]
        activations, errors = new_activations, new_errors
    return [g / max(c, 1) for s, c in zip(sums, counts) for g in s]


def compiled_model(stages, mode="sideways", loss=CLIP_LOSS, engine="pipeline", **kwargs):
    model = ks.SidewaysModel(stages, mode=mode, engine=engine, **kwargs)
    model.compile(optimizer="sgd", loss=loss)
    return model


def clip_labels(batch):
    return np.arange(batch) % 3


def frame_targets(video):
    """A per-frame regression target [batch, time, 3] that differs from frame to frame."""
    return video.mean(axis=(2, 3)).repeat(3, axis=-1) * np.array([1.0, -1.0, 0.5], "float32")


def assert_all_close(actual, expected, model, rtol=1e-4, atol=1e-6):
    assert len(actual) == len(expected) == len(model.trainable_variables)
    for a, e, v in zip(actual, expected, model.trainable_variables):
        np.testing.assert_allclose(
            np.asarray(a), np.asarray(e), rtol=rtol, atol=atol, err_msg=v.path
        )


ENGINES = ["pipeline", "batched"]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("targets", ["clip", "frames"])
def test_static_video_sideways_equals_bp(targets, engine):
    video = np.repeat(random_video(batch=2, time=6)[:, :1], 6, axis=1)
    target = clip_labels(2) if targets == "clip" else frame_targets(video)
    loss = CLIP_LOSS if targets == "clip" else FRAME_LOSS
    model = compiled_model(tiny_conv_stages(num_stages=4), loss=loss, engine=engine)
    sideways = model.compute_gradients(video, target)
    bp = model.compute_gradients(video, target, mode="bp")
    assert_all_close(sideways, bp, model)
    assert all(np.abs(g).max() > 0 for g in bp)  # the comparison is not between zeros


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("targets", ["clip", "frames"])
def test_engine_matches_slow_reference_on_random_video(targets, engine):
    video = random_video(batch=2, time=7, seed=1)
    target = clip_labels(2) if targets == "clip" else frame_targets(video)
    loss = CLIP_LOSS if targets == "clip" else FRAME_LOSS
    stages = tiny_conv_stages(num_stages=5)
    model = compiled_model(stages, loss=loss, engine=engine)
    engine = model.compute_gradients(video, target)
    reference = reference_pseudo_gradients(stages, video, target, loss)
    assert_all_close(engine, reference, model)


def test_batch_larger_than_buffers_is_run_in_padded_groups():
    stages = tiny_conv_stages(num_stages=4)
    model = compiled_model(stages)
    model.build((2, 5, 8, 8, 1))  # buffers of 2 lanes; the batch of 3 needs two groups
    video = random_video(batch=3, time=5, seed=2)
    engine = model.compute_gradients(video, clip_labels(3))
    reference = reference_pseudo_gradients(stages, video, clip_labels(3), CLIP_LOSS)
    assert_all_close(engine, reference, model)


@pytest.mark.parametrize("engine", ENGINES)
def test_engines_agree_on_random_video_with_weights_and_regularisers(engine):
    stages = tiny_conv_stages(num_stages=5)
    stages[-1].kernel_regularizer = keras.regularizers.L2(0.1)
    video = random_video(batch=3, time=6, seed=6)
    weights = np.array([1.0, 0.5, 2.0], "float32")
    model = compiled_model(stages, engine=engine)
    other = compiled_model(stages, engine="batched" if engine == "pipeline" else "pipeline")
    assert_all_close(
        model.compute_gradients(video, clip_labels(3), sample_weight=weights),
        other.compute_gradients(video, clip_labels(3), sample_weight=weights),
        model,
    )
    assert len(model.losses) == 1  # the regulariser was in play


@pytest.mark.parametrize("engine", ENGINES)
def test_sideways_differs_from_bp_on_random_video(engine):
    video = random_video(batch=2, time=6, seed=3)
    model = compiled_model(tiny_conv_stages(num_stages=4), engine=engine)
    sideways = model.compute_gradients(video, clip_labels(2))
    bp = model.compute_gradients(video, clip_labels(2), mode="bp")
    bottom_kernel = 0  # the bottom stage pairs frames furthest apart: 2(L-1) = 6
    difference = np.abs(sideways[bottom_kernel] - bp[bottom_kernel]).max()
    assert difference > 1e-2 * np.abs(bp[bottom_kernel]).max()


def test_pipeline_output_lags_by_depth_minus_one():
    class Scale(keras.layers.Layer):
        def build(self, shape):
            self.w = self.add_weight(shape=(), initializer="ones")

        def call(self, x):
            return x * self.w

    model = compiled_model([keras.layers.Flatten(), Scale(), Scale(), Scale()], loss=FRAME_LOSS)
    video = np.arange(6, dtype="float32").reshape(1, 6, 1, 1, 1)
    model.build(video.shape)
    result = pipeline.sideways_gradients(
        model.stages, model.buffers, tf.constant(video), tf.zeros([1, 6, 1]), model._tick_loss
    )
    # Frame t reaches the top at tick t+3; before that the primed frame 0 is repeated.
    np.testing.assert_array_equal(result.outputs.numpy().ravel(), [0, 0, 0, 0, 1, 2])
    np.testing.assert_array_equal([int(c) for c in result.valid_ticks], [3, 4, 5, 6])


def test_valid_error_ticks():
    counts = pipeline.valid_error_ticks(4, tf.constant(0), tf.constant(5))
    assert [int(c) for c in counts] == [2, 3, 4, 5]
    # A streamed chunk continues where the pipeline stood: every error is already valid.
    counts = pipeline.valid_error_ticks(4, tf.constant(5), tf.constant(5))
    assert [int(c) for c in counts] == [5, 5, 5, 5]


@pytest.mark.parametrize("engine", ENGINES)
def test_clip_shorter_than_pipeline_gives_zero_gradient(engine):
    model = compiled_model(tiny_conv_stages(num_stages=5), engine=engine)
    video = random_video(batch=2, time=3)
    with pytest.warns(UserWarning, match="too short"):
        grads = model.compute_gradients(video, clip_labels(2))
    # Stages 0 and 1 of 5 first get a valid error at ticks 4 and 3: never in 3 frames.
    starved = model.stages[0].trainable_variables + model.stages[1].trainable_variables
    for v, g in zip(model.trainable_variables, grads):
        if any(v is s for s in starved):
            assert np.all(np.asarray(g) == 0), v.path
        else:
            assert np.abs(np.asarray(g)).max() > 0, v.path
