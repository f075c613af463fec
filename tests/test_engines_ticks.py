"""The pipeline's clock: frame gaps, valid errors, fill and target alignment."""

import numpy as np
import tensorflow as tf

from keras_sideways.engines import ticks
from keras_sideways.graph import StageGraph

chain = StageGraph.chain


def test_frame_gaps_shrink_to_zero_at_the_top():
    assert [ticks.frame_gap(5, k) for k in range(5)] == [8, 6, 4, 2, 0]
    assert ticks.bottom_gap(3) == 4 and ticks.bottom_gap(8) == 14


def test_valid_ticks_of_a_clip():
    # 4 stages, 5 frames: stage k's first valid error arrives at tick 3 - k.
    assert [chain(4).first_valid_tick(k) for k in range(4)] == [3, 2, 1, 0]
    assert [chain(4).valid_ticks(5, k) for k in range(4)] == [2, 3, 4, 5]
    assert chain(5).valid_ticks(2, 0) == 0  # too short a clip: the bottom starves


def test_the_fill_and_the_frames_that_reach_the_loss():
    # Clips of 8 through 5 stages: the bottom's 4 valid errors were all born from frame 0.
    assert ticks.primed_ticks(8, 5, 0) == 4
    assert ticks.primed_ticks(16, 5, 0) == 5
    assert ticks.loss_frames(16, 5) == 12  # frames 0 ... 11 reach the top
    assert ticks.loss_frames(3, 5) == 1


def test_valid_error_ticks_as_tensors():
    counts = chain(4).valid_error_ticks(tf.constant(0), tf.constant(5))
    assert [int(c) for c in counts] == [chain(4).valid_ticks(5, k) for k in range(4)]
    # A streamed chunk continues where the pipeline stood: every error is already valid.
    counts = chain(4).valid_error_ticks(tf.constant(5), tf.constant(5))
    assert [int(c) for c in counts] == [5, 5, 5, 5]
    counts = chain(4).valid_error_ticks(tf.constant(1), tf.constant(5))
    assert [int(c) for c in counts] == [3, 4, 5, 5]


def test_targets_are_aligned_with_the_frame_at_the_top():
    np.testing.assert_array_equal(chain(3).aligned_target_indices(5), [0, 0, 0, 1, 2])
    frames = tf.constant([[10, 11, 12, 13, 14]])
    np.testing.assert_array_equal(chain(3).align_targets(frames, 5), [[10, 10, 10, 11, 12]])
    labels = tf.constant([7, 8])
    np.testing.assert_array_equal(chain(3).align_targets(labels, 5), [7, 8])  # clip labels


def test_a_stash_shortens_the_frame_gap_and_is_capped_by_it():
    assert [ticks.frame_gap(5, k, stash=3) for k in range(5)] == [5, 3, 1, 0, 0]
    assert ticks.stash_depths(5, 3) == [3, 3, 3, 2, 0]  # no stage keeps more than its gap
    assert ticks.stash_depths(5, "full") == [8, 6, 4, 2, 0]
    assert ticks.stash_depths(5, 0) == [0] * 5
    assert ticks.stash_depths(3, [9, 1, 5]) == [4, 1, 0]
