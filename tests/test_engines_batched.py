"""The batched-in-time engine: its shifts, the slow reference, and the pipeline engine."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import (
    FRAME_LOSS,
    LAYER_KINDS,
    assert_all_close,
    clip_labels,
    compiled_model,
    engine_against_reference,
    random_video,
    stages_with,
    tiny_conv_stages,
)

from keras_sideways.engines import batched, windows


def test_shift_and_delay_move_values_one_tick_later():
    x = tf.constant([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])[..., None]
    # Activations: tick t sees tick t-1's value, frame 0 while primed.
    np.testing.assert_array_equal(batched.shift_ticks(x)[..., 0], [[1, 1, 2], [4, 4, 5]])
    # Errors: tick t receives tick t-1's input-gradient, nothing at tick 0.
    np.testing.assert_array_equal(batched.delay_errors(x)[..., 0], [[0, 1, 2], [0, 4, 5]])


@pytest.mark.parametrize("targets", ["clip", "frames"])
def test_batched_engine_matches_slow_reference_on_random_video(targets):
    model, gradients, reference = engine_against_reference("batched", targets)
    assert_all_close(gradients, reference, model)


def test_batched_and_pipeline_engines_agree_with_weights_and_regularisers():
    stages = tiny_conv_stages(num_stages=5)
    stages[-1].kernel_regularizer = keras.regularizers.L2(0.1)
    video = random_video(batch=3, time=6, seed=6)
    weights = np.array([1.0, 0.5, 2.0], "float32")
    model = compiled_model(stages, engine="batched")
    other = compiled_model(stages, engine="pipeline")
    assert_all_close(
        model.compute_gradients(video, clip_labels(3), sample_weight=weights),
        other.compute_gradients(video, clip_labels(3), sample_weight=weights),
        model,
    )
    assert len(model.losses) == 1  # the regulariser was in play


def test_valid_ticks_and_targets_are_reported():
    stages = tiny_conv_stages(num_stages=4)
    model = compiled_model(stages, loss=FRAME_LOSS, engine="batched")
    video = random_video(batch=2, time=6, seed=2)
    model.build(video.shape)
    target = np.arange(6, dtype="float32")[None, :, None].repeat(2, 0).repeat(3, 2)
    result = batched.batched_sideways_gradients(
        stages, tf.constant(video), tf.constant(target), model._tick_loss
    )
    assert [int(c) for c in result.valid_ticks] == [3, 4, 5, 6]
    # Tick t is scored against the frame that reached the top: max(t - 3, 0).
    np.testing.assert_array_equal(result.targets[0, :, 0], [0, 0, 0, 0, 1, 2])


@pytest.mark.parametrize("stash_depth", [1, 3, "full", [2, 0, 4, 1, 0]], ids=str)
@pytest.mark.parametrize("targets", ["clip", "frames"])
def test_stashed_inputs_match_the_slow_reference(targets, stash_depth):
    model, gradients, reference = engine_against_reference("batched", targets, stash_depth, 9, 7)
    assert_all_close(gradients, reference, model)
    assert model.buffers.stashes == [None] * 5  # the batched engine keeps no rings


@pytest.mark.parametrize("targets", ["clip", "frames"])
@pytest.mark.parametrize("stash_depth", [0, 1, "full"], ids=str)
def test_temporal_stages_match_the_slow_reference(targets, stash_depth):
    model, gradients, reference = engine_against_reference(
        "batched", targets, stash_depth, temporal=True
    )
    assert_all_close(gradients, reference, model)


STASH_DRAIN = [(0, False), ("full", False), ("full", True)]


@pytest.mark.parametrize("stash_depth, drain", STASH_DRAIN, ids=str)
@pytest.mark.parametrize("kind", LAYER_KINDS)
def test_engines_agree_with_normalisation_and_dropout_in_padded_groups(kind, stash_depth, drain):
    # Buffers of 2 lanes and a batch of 3: the pipeline runs a group of 2 and a padded
    # group of 1; batch norm normalises each tick over a group's real lanes, and dropout
    # draws the masks of (step, tick, group), in both engines (drained: the batched
    # engine by frame, each frame with the masks of the tick it passed).
    stages = stages_with(kind)
    video = random_video(batch=3, time=6, seed=6)
    options = dict(stash_depth=stash_depth, drain=drain)
    fast = compiled_model(stages, engine="batched", **options)
    slow = compiled_model(stages, engine="pipeline", **options)
    for model in (fast, slow):
        model.build((2, 6, 8, 8, 1))
    assert_all_close(
        fast.compute_gradients(video, clip_labels(3)),
        slow.compute_gradients(video, clip_labels(3)),
        fast,
    )


def test_whole_errors_by_hand():
    # Window 2 over 4 ticks; tick s's input-gradient at position i is (s + 1) * 10^i.
    grads = tf.constant([[[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]]])[..., None]
    # As the loop sends them, the first at tick 2: shares of tick s, position i at s + i,
    # those before tick 2 with it, and 40 (due at tick 4) past the clip.
    sent = windows.whole_errors(grads, first=2)
    np.testing.assert_array_equal(sent[0, :, 0], [0, 0, 1 + 10 + 2 + 20 + 3, 30 + 4])
    pending, ticked = tf.zeros([1, 1, 1]), []
    for tick in range(4):
        error, pending = windows.whole_error_tick(pending, grads[:, tick], tick, first=2)
        ticked.append(float(error[0, 0]))
    assert ticked == [0, 0, 36, 34]
    # By frame (row s is frame s): frame m's error from the windows of frames m and m+1,
    # frame -1's share (the first window's oldest, the primed input) with frame 0's.
    by_frame = windows.whole_errors(grads, first=0, back=1)
    np.testing.assert_array_equal(by_frame[0, :, 0], [1 + 10 + 2, 20 + 3, 30 + 4, 40])


# A full stash: temporal stages send whole errors. Undrained, the batched passes run tick
# by tick (not by frame) and send them at the loop's ticks; in blocks of 2 ticks, a
# frame's error takes shares from the next blocks.
@pytest.mark.parametrize("engine, chunk", [("batched", None), ("pipeline", 1), ("pipeline", 2)])
@pytest.mark.parametrize("drain", [False, True])
def test_whole_errors_of_temporal_stages_match_the_slow_reference(engine, chunk, drain):
    options = {} if chunk is None else {"pipeline_chunk": chunk}
    model, gradients, reference = engine_against_reference(
        engine, "frames", "full", time=6, seed=8, temporal=True, drain=drain, **options
    )
    assert model.graph.whole_errors
    assert_all_close(gradients, reference, model)


# Blocks of ticks: the pipeline engine's default on clips of a static length.


def test_chunk_bounds_cover_the_clip_in_order():
    assert batched.chunk_bounds(7, 3) == [(0, 3), (3, 3), (6, 1)]
    assert batched.chunk_bounds(4, 4) == [(0, 4)]
    assert batched.chunk_bounds(5, None) == [(0, 5)]


def test_shift_and_delay_carry_the_tick_before_a_chunk():
    x = tf.constant([[3.0, 4.0]])[..., None]
    before = tf.constant([[2.0]])[..., None]
    np.testing.assert_array_equal(batched.shift_ticks(x, before)[..., 0], [[2, 3]])
    np.testing.assert_array_equal(batched.delay_errors(x, before)[..., 0], [[2, 3]])


# Chunks of 2, of 3 (the last one shorter), and of the whole clip.
@pytest.mark.parametrize("chunk", [2, 3, 7])
@pytest.mark.parametrize("stash_depth", [0, 3, "full"], ids=str)
@pytest.mark.parametrize("targets", ["clip", "frames"])
def test_blocks_of_ticks_match_the_slow_reference(targets, stash_depth, chunk):
    model, gradients, reference = engine_against_reference(
        "pipeline", targets, stash_depth, 7, 7, pipeline_chunk=chunk
    )
    assert model.resolved_chunk(7) == chunk
    assert_all_close(gradients, reference, model)


@pytest.mark.parametrize("chunk", [2, 3])
@pytest.mark.parametrize("stash_depth", [0, "full"], ids=str)
def test_temporal_stages_in_blocks_of_ticks_match_the_slow_reference(stash_depth, chunk):
    # Windows and stashes that reach back across one or more chunk boundaries.
    model, gradients, reference = engine_against_reference(
        "pipeline", "frames", stash_depth, temporal=True, pipeline_chunk=chunk
    )
    assert_all_close(gradients, reference, model)


@pytest.mark.parametrize("kind", LAYER_KINDS)
def test_blocks_of_ticks_agree_with_ticks_with_normalisation_and_dropout(kind):
    # Chunks of 4 and 2 ticks over a clip of 6 in padded groups of lanes: the same
    # per-tick statistics, moving statistics and dropout masks as tick by tick.
    stages = stages_with(kind)
    video = random_video(batch=3, time=6, seed=6)
    blocks = compiled_model(stages, pipeline_chunk=4, stash_depth="full")
    ticks = compiled_model(stages, pipeline_chunk=1, stash_depth="full")
    for model in (blocks, ticks):
        model.build((2, 6, 8, 8, 1))
    assert_all_close(
        blocks.compute_gradients(video, clip_labels(3)),
        ticks.compute_gradients(video, clip_labels(3)),
        blocks,
    )
    # One training step of each from the same state (the models share their stages).
    state = [v for stage in stages for v in stage.variables]
    before = [v.numpy() for v in state]
    results = []
    for model in (blocks, ticks):
        for variable, value in zip(state, before):
            variable.assign(value)
        model.fit(video, clip_labels(3), batch_size=3, epochs=1, verbose=0)
        results.append([v.numpy() for v in state])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
