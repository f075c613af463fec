"""Temporal layers: what they compute, where they may sit, and that they save."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import CLIP_LOSS, random_video, tiny_temporal_stages

import keras_sideways as ks


def test_causal_temporal_conv_is_a_causal_conv3d_at_the_newest_frame():
    layer = ks.layers.CausalTemporalConv(5, 3, window=3)
    windows = tf.constant(random_video(batch=4, time=3, size=6, channels=2))  # [N, W, H, W, C]
    out = layer(windows)
    reference = keras.layers.Conv3D(5, (3, 3, 3), padding="valid")
    reference.build(windows.shape)
    kernel = layer.conv.kernel.numpy()  # [3, 3, W*C, F]: slot i holds channels i*C:(i+1)*C
    reference.kernel.assign(np.stack([kernel[:, :, 2 * i : 2 * i + 2] for i in range(3)]))
    reference.bias.assign(layer.conv.bias)
    padded = tf.pad(windows, [[0, 0], [0, 0], [1, 1], [1, 1], [0, 0]])  # "same" in space
    np.testing.assert_allclose(out, reference(padded)[:, 0], rtol=1e-5, atol=1e-6)


def test_temporal_shift_takes_the_last_channels_from_the_frame_before():
    window = tf.constant(np.arange(2 * 8, dtype="float32").reshape(1, 2, 8))
    out = ks.layers.TemporalShift(0.25)(window).numpy()
    np.testing.assert_array_equal(out[0], [8, 9, 10, 11, 12, 13, 6, 7])


@pytest.mark.parametrize(
    "stage, message",
    [
        (
            keras.Sequential([keras.layers.Conv2D(2, 3), ks.layers.TemporalShift()]),
            "must be a stage or the first layer of a keras.Sequential stage",
        ),
    ],
)
def test_a_temporal_layer_inside_a_stage_is_refused_by_name(stage, message):
    with pytest.raises(ValueError, match=message):
        ks.SidewaysModel([stage, keras.layers.Dense(2)])


def test_a_stage_that_declares_a_frame_input_before_its_temporal_layer_is_told_so():
    # The message said the layer must be the first of its Sequential, which it was.
    with pytest.raises(ValueError, match="declares no keras.Input"):
        keras.Sequential([keras.Input((8, 8, 2)), ks.layers.TemporalShift(0.5)])


def test_bad_windows_are_refused():
    with pytest.raises(ValueError, match="window must be a whole number >= 2"):
        ks.layers.CausalTemporalConv(4, window=1)
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        ks.layers.TemporalShift(0.0)
    with pytest.raises(ValueError, match=r"takes a window of its stage's inputs.*window 3"):
        ks.layers.CausalTemporalConv(4, window=3)(tf.zeros([2, 8, 8, 1]))


def test_a_temporal_stage_keeps_its_stash_in_its_history():
    # The tick-by-tick loop (pipeline_chunk=1) keeps stashes and histories; blocks keep none.
    model = ks.SidewaysModel(
        tiny_temporal_stages(), stash_depth=[1, 0, 2, 0], engine="pipeline", pipeline_chunk=1
    )
    model(random_video())
    assert model.windows == [3, 2, 1, 2] and model.stash == [1, 0, 2, 0]
    buffers = model.buffers
    assert buffers.stashes[0] is None and buffers.stashes[2] is not None  # no ring: history
    assert buffers.histories[0].shape[0] == 3 - 1 + 1 and buffers.histories[1].shape[0] == 1


def test_a_temporal_model_saves_loads_and_exports(tmp_path):
    video, labels = random_video(batch=2, time=6), np.array([0, 1])
    model = ks.SidewaysModel(tiny_temporal_stages(), engine="pipeline")
    model.compile(optimizer="adam", loss=CLIP_LOSS)
    model.fit(video, labels, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.windows == [3, 2, 1, 2]
    np.testing.assert_allclose(loaded(video), model(video), rtol=1e-5, atol=1e-6)
    exported = tf.saved_model.load(model.export(str(tmp_path / "export")))
    streamed = [exported.stream(tf.constant(video[:, t]))["output"] for t in range(6)]
    np.testing.assert_allclose(
        np.stack(streamed, axis=1), model.pipelined_call(video), rtol=1e-5, atol=1e-6
    )
