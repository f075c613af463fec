"""The tick-by-tick engine: against a slow reference, its groups, its lag, its one tick."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import (
    CLIP_LOSS,
    FRAME_LOSS,
    LAYER_KINDS,
    NORMALISATIONS,
    assert_all_close,
    clip_labels,
    compiled_model,
    engine_against_reference,
    frame_targets,
    random_video,
    reference_pseudo_gradients,
    stages_with,
    tiny_conv_stages,
    tiny_temporal_stages,
)

import keras_sideways as ks
from keras_sideways.engines import lanes, pipeline, tick_layers


@pytest.mark.parametrize("targets", ["clip", "frames"])
def test_engine_matches_slow_reference_on_random_video(targets):
    model, gradients, reference = engine_against_reference("pipeline", targets)
    assert_all_close(gradients, reference, model)


@pytest.mark.parametrize("stash_depth", [0, "full"], ids=str)
@pytest.mark.parametrize("kind", NORMALISATIONS)
def test_engine_matches_slow_reference_with_normalisation(kind, stash_depth):
    # The reference calls Keras' layers tick by tick, so its batch norm normalises each
    # tick over the lanes: what Sideways defines (docs/algorithm.md).
    stages = stages_with(kind)
    video = random_video(batch=3, time=6, seed=9)
    model = compiled_model(stages, stash_depth=stash_depth)
    gradients = model.compute_gradients(video, clip_labels(3))
    reference = reference_pseudo_gradients(
        stages, video, clip_labels(3), CLIP_LOSS, model.stash, model.graph.drain
    )
    assert_all_close(gradients, reference, model)


def test_batch_larger_than_buffers_is_run_in_padded_groups():
    stages = tiny_conv_stages(num_stages=4)
    model = compiled_model(stages)
    model.build((2, 5, 8, 8, 1))  # buffers of 2 lanes; the batch of 3 needs two groups
    video = random_video(batch=3, time=5, seed=2)
    engine = model.compute_gradients(video, clip_labels(3))
    reference = reference_pseudo_gradients(stages, video, clip_labels(3), CLIP_LOSS)
    assert_all_close(engine, reference, model)


def test_pipeline_output_lags_by_depth_minus_one():
    class Scale(keras.layers.Layer):
        def build(self, shape):
            self.w = self.add_weight(shape=(), initializer="ones")

        def call(self, x):
            return x * self.w

    model = compiled_model([keras.layers.Flatten(), Scale(), Scale(), Scale()], loss=FRAME_LOSS)
    video = np.arange(6, dtype="float32").reshape(1, 6, 1, 1, 1)
    model.build(video.shape)
    result = lanes.sideways_gradients(
        model.stages, model.buffers, tf.constant(video), tf.zeros([1, 6, 1]), model._tick_loss
    )
    # Frame t reaches the top at tick t+3; before that the primed frame 0 is repeated.
    np.testing.assert_array_equal(result.outputs.numpy().ravel(), [0, 0, 0, 0, 1, 2])
    np.testing.assert_array_equal([int(c) for c in result.valid_ticks], [3, 4, 5, 6])


def shifted_forward(stages, video):
    """The pipeline's outputs written plainly: stage k sees stage k-1's output one tick late
    (a temporal stage: its last W of them, the first repeated before the clip)."""
    x = tf.constant(video)
    for k, stage in enumerate(stages):
        if k > 0:
            x = tf.concat([x[:, :1], x[:, :-1]], axis=1)  # frame 0 while priming
        size, time = ks.layers.stage_window(stage), x.shape[1]
        frames = tf.reshape(x, [-1, *x.shape[2:]])
        if size > 1:
            ticks = [[max(t - j, 0) for j in reversed(range(size))] for t in range(time)]
            frames = tf.reshape(tf.gather(x, ticks, axis=1), [-1, size, *x.shape[2:]])
        out = stage(frames, training=False)
        x = tf.reshape(out, [x.shape[0], x.shape[1], *out.shape[1:]])
    return x.numpy()


@pytest.mark.parametrize("kind", [None, *LAYER_KINDS])
def test_pipelined_forward_is_the_shifted_forward_pass(kind):
    stages = tiny_conv_stages(num_stages=4) if kind is None else stages_with(kind)
    model = compiled_model(stages)
    video = random_video(batch=2, time=7, seed=4)
    if kind is not None:
        model.train_on_batch(video, clip_labels(2))  # batch norm: moving statistics moved
    state = [v.numpy() for v in model.non_trainable_variables]
    np.testing.assert_allclose(
        model.pipelined_call(video).numpy(), shifted_forward(stages, video), rtol=1e-5, atol=1e-6
    )
    for before, v in zip(state, model.non_trainable_variables):  # inference changes nothing
        np.testing.assert_array_equal(before, v.numpy(), err_msg=v.path)


def test_dropout_masks_are_fresh_at_every_tick_and_call():
    stages = [keras.layers.Dropout(0.5), keras.layers.Dropout(0.5), keras.layers.Flatten()]
    video = tf.ones([2, 8, 4, 4, 1])  # a static video: only the masks change
    first = pipeline.pipelined_forward(stages, video, training=True).numpy()
    second = pipeline.pipelined_forward(stages, video, training=True).numpy()
    assert set(np.unique(first)) <= {0.0, 4.0}  # two masks of rate 0.5: kept values x 2 x 2
    assert all(np.any(first[:, t] != first[:, t + 1]) for t in range(2, 7))
    assert np.any(first != second)  # a fresh seed for every call (every training step)
    inference = pipeline.pipelined_forward(stages, video, training=False).numpy()
    np.testing.assert_array_equal(inference, np.ones_like(inference))


def test_pipelined_forward_with_temporal_stages_is_the_shifted_forward_pass():
    stages = tiny_temporal_stages()
    model = compiled_model(stages)
    video = random_video(batch=2, time=7, seed=4)
    np.testing.assert_allclose(
        model.pipelined_call(video).numpy(), shifted_forward(stages, video), rtol=1e-5, atol=1e-6
    )


def test_a_tick_reads_only_the_state_of_the_tick_before():
    class AddOne(keras.layers.Layer):
        def call(self, x):
            return x + 1.0

    stages = [AddOne(), AddOne(), AddOne()]
    activations = [tf.constant([10.0]), tf.constant([20.0])]
    outputs = pipeline.forward_tick(stages, tf.constant([0.0]), activations)
    # Stage k adds one to what stage k-1 held one tick earlier, not to this tick's output.
    assert [float(o[0]) for o in outputs] == [1.0, 11.0, 21.0]
    primed = pipeline.prime(stages, tf.constant([0.0]))
    assert [float(a[0]) for a in primed] == [1.0, 2.0]  # A_0, A_1 of frame 0; no top


STASHES = [1, 3, "full", [2, 0, 4, 1, 0]]


@pytest.mark.parametrize("stash_depth", STASHES, ids=str)
@pytest.mark.parametrize("targets", ["clip", "frames"])
def test_stashed_inputs_match_the_slow_reference(targets, stash_depth):
    model, gradients, reference = engine_against_reference("pipeline", targets, stash_depth, 9, 7)
    assert_all_close(gradients, reference, model)
    video = random_video(batch=2, time=9, seed=7)  # what engine_against_reference used
    target = clip_labels(2) if targets == "clip" else frame_targets(video)
    loss = CLIP_LOSS if targets == "clip" else FRAME_LOSS
    plain = reference_pseudo_gradients(model.stages, video, target, loss)  # no stash
    assert not np.allclose(gradients[0], plain[0], rtol=1e-3)  # the stash changed the bottom


def streamed_buffers(stages, chunks):
    """The pipeline state of a stream with a full stash after `chunks`, weights held still
    and the stages' dropout seeds as they were at the start (both streams draw alike)."""
    seeds = [(v, v.numpy()) for v in tick_layers.state_variables(stages) if "seed" in v.path]
    model = ks.SidewaysModel(stages, stateful=True, stash_depth="full")
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=CLIP_LOSS)
    for chunk in chunks:
        model.train_on_batch(chunk, clip_labels(2))
    for variable, value in seeds:
        variable.assign(value)
    return model.buffers


@pytest.mark.parametrize("kind", [None, "batch_norm", "dropout"])
def test_a_stream_continues_its_stash_across_chunks(kind):
    stages = tiny_conv_stages(num_stages=4) if kind is None else stages_with(kind)
    video = random_video(batch=2, time=10, seed=8)
    whole = streamed_buffers(stages, [video])
    parts = streamed_buffers(stages, [video[:, :4], video[:, 4:7], video[:, 7:]])
    depth = len(stages)
    assert [0 if r is None else r.shape[0] for r in parts.stashes] == [
        2 * (depth - 1 - k) for k in range(depth)
    ]
    assert int(parts.ticks.numpy()) == 10
    assert (parts.seeds is None) == (kind != "dropout")  # a stream keeps its dropout seeds
    for a, b in zip(whole.variables, parts.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)


def test_a_temporal_stream_carries_its_held_errors_across_chunks():
    # A full stash: the temporal stages 1 and 3 send whole errors, holding shares of the
    # next tick's (window 2) in `pending`, which a stream carries from chunk to chunk.
    stages = tiny_temporal_stages()
    video = random_video(batch=2, time=10, seed=10)
    whole = streamed_buffers(stages, [video])
    parts = streamed_buffers(stages, [video[:, :3], video[:, 3:7], video[:, 7:]])
    assert sorted(parts.pending) == [1, 3] and parts.graph.stash == (8, 5, 3, 0)
    assert "pending_1" in parts.named_variables  # a stream's checkpoint keeps them
    assert np.abs(parts.pending[1].numpy()).sum() > 0
    for a, b in zip(whole.variables, parts.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)


@pytest.mark.parametrize(
    "stash_depth, message",
    [
        (-1, ">= 0 for every stage; got -1"),
        ("deep", "int >= 0, 'full' or a list of 4 ints.*got 'deep'"),
        ([1, 2], "one depth per stage \\(4\\); got 2"),
        (1.5, "got 1.5"),
    ],
)
def test_bad_stash_depths_are_refused_by_name(stash_depth, message):
    with pytest.raises(ValueError, match=message):
        ks.SidewaysModel(tiny_conv_stages(num_stages=4), stash_depth=stash_depth)


@pytest.mark.parametrize("targets", ["clip", "frames"])
@pytest.mark.parametrize("stash_depth", [0, 1, "full"], ids=str)
def test_temporal_stages_match_the_slow_reference(targets, stash_depth):
    model, gradients, reference = engine_against_reference(
        "pipeline", targets, stash_depth, temporal=True
    )
    assert_all_close(gradients, reference, model)


@pytest.mark.parametrize("chunk, rings", [("auto", False), (1, True)])
def test_stash_rings_are_kept_only_where_the_tick_loop_runs(chunk, rings):
    # engine="pipeline" runs clips of a known length in blocks of ticks (engines.batched),
    # which keep no rings; pipeline_chunk=1 runs the loop over ticks, which does.
    model = compiled_model(tiny_conv_stages(num_stages=4), stash_depth=2, pipeline_chunk=chunk)
    model.build((2, 6, 8, 8, 1))
    assert [r is not None for r in model.buffers.stashes] == [rings, rings, rings, False]
    if not rings:
        with pytest.raises(ValueError, match="keep no stash or window history for stages"):
            lanes.sideways_gradients(
                model.stages, model.buffers, random_video(2, 6), clip_labels(2), CLIP_LOSS
            )


@pytest.mark.parametrize("stash_depth", [0, "full"], ids=str)
def test_a_streams_first_chunk_averages_each_stage_over_its_valid_ticks(stash_depth):
    # Primed afresh, a stream's first chunk is a clip: the same pseudo-gradients as the
    # same clip undrained. The stream read its tick count after adding the chunk's ticks,
    # so it divided stage k's sum by T, not by its T - (L-1-k) valid ticks: 0.625, 0.75,
    # 0.875 and 1 of them here.
    video, labels = random_video(batch=2, time=8, seed=9), clip_labels(2)
    options = dict(engine="pipeline", pipeline_chunk=1, stash_depth=stash_depth, drain=False)
    streamed = compiled_model(tiny_conv_stages(num_stages=4), stateful=True, **options)
    clip = compiled_model(tiny_conv_stages(num_stages=4), **options)
    for model in (streamed, clip):
        model.build(video.shape)
    clip.set_weights(streamed.get_weights())
    assert_all_close(
        streamed.compute_gradients(video, labels), clip.compute_gradients(video, labels), clip
    )
