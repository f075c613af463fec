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


@pytest.mark.parametrize("num_stages", [2, 3, 4, 5, 6])
def test_unet_sends_each_encoder_level_to_its_decoder_level_and_trains(num_stages):
    shape = (16, 16) if num_stages % 2 else None  # None: the size of the frames it is given
    stages, inputs = models.unet(channels=3, num_stages=num_stages, width=2, frame_shape=shape)
    assert len(stages) == len(inputs) == num_stages
    if num_stages == 5:  # the decoder stages read the encoder stages of their level
        assert inputs == [[ks.VIDEO], [0], [1], [1, 2], [0, 3]]
    model = ks.SidewaysModel(stages, inputs=inputs)
    model.compile(optimizer="adam", loss="mse")
    video = random_video(batch=2, time=num_stages + 1, size=16, channels=3)
    out = model(video)
    assert out.shape == (2, num_stages + 1, 16, 16, 3) and np.all((out >= 0) & (out <= 1))
    before = [v.numpy() for v in model.trainable_variables]
    assert np.all(np.isfinite(model.train_on_batch(video, video)))
    assert all(np.any(b != v.numpy()) for b, v in zip(before, model.trainable_variables))


@pytest.mark.parametrize("num_stages", [2, 5, 8])
def test_skip_classifier_feeds_every_stage_to_the_top_and_trains(num_stages):
    stages, inputs = models.skip_classifier(num_classes=7, num_stages=num_stages, width=2)
    below = list(range(num_stages - 2))
    assert inputs == [ks.VIDEO, *below, [num_stages - 2, *below]]
    # The defaults hold the skips in delay lines (exact); the paper's pairing keeps them short.
    assert ks.SidewaysModel(stages, inputs=inputs).graph.is_balanced
    model = ks.SidewaysModel(stages, inputs=inputs, stash_depth=0)
    # Every stage is one edge from the top; the chain's paths are still there.
    assert [model.graph.shortest_height(k) for k in range(num_stages - 1)] == [1] * (num_stages - 1)
    assert model.graph.height(0) == num_stages - 1
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    video = random_video(batch=2, time=num_stages + 1, size=16, channels=3)
    assert model(video).shape == (2, num_stages + 1, 7)
    before = [v.numpy() for v in model.trainable_variables]
    assert np.all(np.isfinite(model.train_on_batch(video, np.array([0, 1]))))
    assert all(np.any(b != v.numpy()) for b, v in zip(before, model.trainable_variables))


def test_a_skip_classifier_saves_and_loads(tmp_path):
    stages, inputs = models.skip_classifier(num_classes=3, num_stages=4, width=2)
    model = ks.SidewaysModel(stages, inputs=inputs)
    video = random_video(batch=2, time=4, size=16, channels=3)
    model.compile(optimizer="adam", loss="mse")
    expected = model(video)
    model.save(tmp_path / "skips.keras")
    loaded = keras.models.load_model(tmp_path / "skips.keras")
    np.testing.assert_allclose(loaded(video), expected, atol=1e-6)
