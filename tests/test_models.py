"""The reference models: cut into any allowed number of stages, shapes right."""

import numpy as np
import pytest
from conftest import random_video

import keras_sideways as ks
from keras_sideways import models


@pytest.mark.parametrize("num_stages", [2, 5, 9])
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


def test_same_model_splits_into_the_same_units():
    # Nine units in 3 stages: 3 each.
    stages = models.vgg_classifier(num_classes=2, num_stages=3, width=2)
    assert [len(s.layers) for s in stages] == [3, 3, 3]


@pytest.mark.parametrize("num_stages", [1, 10])
def test_impossible_stage_counts_are_refused(num_stages):
    with pytest.raises(ValueError, match=f"2 to 9 stages; got num_stages={num_stages}"):
        models.vgg_classifier(num_classes=2, num_stages=num_stages)
