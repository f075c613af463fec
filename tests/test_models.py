"""The reference models: cut into any allowed number of stages, shapes right."""

import keras
import numpy as np
import pytest
from conftest import random_video

import keras_sideways as ks
from keras_sideways import models


@pytest.mark.parametrize("num_stages", [2, 5, 8])
def test_vgg_classifier_cuts_into_stages(num_stages):
    stages = models.vgg_classifier(num_classes=7, num_stages=num_stages, width=2)
    assert len(stages) == num_stages
    model = ks.SidewaysModel(stages)
    assert model(random_video(batch=2, time=3, size=16, channels=3)).shape == (2, 3, 7)


@pytest.mark.parametrize("num_stages", [2, 4, 6])
def test_encoder_decoder_reconstructs_frame_shape(num_stages):
    model = ks.SidewaysModel(models.encoder_decoder(channels=3, num_stages=num_stages, width=2))
    out = model(random_video(batch=2, time=3, size=16, channels=3))
    assert out.shape == (2, 3, 16, 16, 3)
    assert np.all((out.numpy() >= 0) & (out.numpy() <= 1))


def test_units_are_grouped_evenly_and_in_order():
    assert len(models.vgg_classifier(num_classes=2, num_stages=8, width=2)) == 8
    stages = models.split_into_stages(
        [keras.layers.Dense(1, name=f"u{i}") for i in range(8)], 3, "units"
    )
    assert [[layer.name for layer in s.layers] for s in stages] == [
        ["u0", "u1", "u2"],
        ["u3", "u4"],
        ["u5", "u6", "u7"],
    ]


@pytest.mark.parametrize("num_stages", [1, 9])
def test_impossible_stage_counts_are_refused(num_stages):
    with pytest.raises(ValueError, match=f"2 to 8 stages; got num_stages={num_stages}"):
        models.vgg_classifier(num_classes=2, num_stages=num_stages)


def test_vgg_classifier_becomes_a_video_model_with_temporal_options():
    stages = models.vgg_classifier(4, num_stages=5, width=8, temporal_window=3, temporal_shift=0.25)
    model = ks.SidewaysModel(stages)
    assert model.windows == [3, 2, 2, 2, 2]
    assert ks.SidewaysModel(models.vgg_classifier(4, num_stages=5, width=8)).windows == [1] * 5
    with pytest.raises(ValueError, match="temporal_window >= 1 and 0 <= temporal_shift <= 1"):
        models.vgg_classifier(4, temporal_window=0)
