"""Argument checks and clip frame indices shared by the video builders."""

import numpy as np
import pytest
import tensorflow as tf

from keras_sideways.data import clip_pipeline as cp


@pytest.mark.parametrize("value", [0, -3, 2.0, "4", True, None])
def test_check_positive_int_names_argument_and_value(value):
    with pytest.raises(ValueError, match=r"clip_length to be a positive integer; got") as error:
        cp.check_positive_int("clip_length", value)
    assert repr(value) in str(error.value)


@pytest.mark.parametrize("size, pair", [(8, (8, 8)), ((4, 6), (4, 6)), ([5, 3], (5, 3))])
def test_image_size_pair(size, pair):
    assert cp.image_size_pair(size) == pair


@pytest.mark.parametrize("size", [0, (4,), (4, 0), (4, 5, 6), "32", 3.0, (2.0, 2)])
def test_image_size_pair_rejects(size):
    with pytest.raises(ValueError, match="image_size to be a positive int or a"):
        cp.image_size_pair(size)


def test_check_choice_names_choices_and_value():
    with pytest.raises(ValueError, match=r"target to be one of 'label', 'frames'; got 'mask'"):
        cp.check_choice("target", "mask", cp.TARGETS)


def test_clip_span():
    assert cp.clip_span(1, 5) == 1
    assert cp.clip_span(4, 1) == 4
    assert cp.clip_span(4, 3) == 10


def test_centre_start_and_indices():
    start = cp.clip_start(tf.constant(20), cp.clip_span(4, 3))
    assert int(start) == 5  # 10 spare frames, half before the clip
    indices = cp.clip_frame_indices(start, 20, 4, 3)
    np.testing.assert_array_equal(indices, [5, 8, 11, 14])


def test_random_start_covers_every_valid_start():
    span, frames = cp.clip_span(3, 2), 9  # starts 0..4 are valid
    starts = {int(cp.clip_start(frames, span, tf.constant(k, tf.int64))) for k in range(50)}
    assert starts == {0, 1, 2, 3, 4}


def test_short_video_starts_at_zero_and_repeats_last_frame():
    span = cp.clip_span(4, 3)
    for key in (None, tf.constant(7, tf.int64)):
        start = cp.clip_start(5, span, key)
        assert int(start) == 0
        np.testing.assert_array_equal(cp.clip_frame_indices(start, 5, 4, 3), [0, 3, 4, 4])
