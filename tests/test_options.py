"""SidewaysModel's options: what is refused, and which engine "auto" picks."""

import warnings

import keras
import numpy as np
import pytest
from conftest import CLIP_LOSS, random_video, tiny_conv_stages

import keras_sideways as ks
from keras_sideways import options


def test_auto_engine_is_batched_unless_streaming_or_spread_over_devices():
    assert options.resolve_engine("auto", stateful=False, spread=False) == "batched"
    assert options.resolve_engine("auto", stateful=True, spread=False) == "pipeline"
    assert options.resolve_engine("auto", stateful=False, spread=True) == "pipeline"
    assert options.resolve_engine("batched", stateful=False, spread=True) == "batched"
    # Stages with a random layer the batched engine cannot key by tick (GaussianNoise, ...).
    assert options.resolve_engine("auto", False, False, batched_ok=False) == "pipeline"


def test_one_device_written_several_ways_is_one_device():
    # Counted as three, it made "auto" pick the pipeline engine and plan a block for each.
    one = ks.SidewaysModel(tiny_conv_stages(num_stages=3), placement=["/CPU:0"] * 3)
    written = ["/cpu:0", "CPU:0", "/job:localhost/replica:0/task:0/device:CPU:0"]
    many = ks.SidewaysModel(tiny_conv_stages(num_stages=3), placement=written)
    for model in (one, many):
        model.build((2, 6, 8, 8, 1))
    assert many.resolved_engine == one.resolved_engine == "batched"
    assert many.resolved_chunk(6) == one.resolved_chunk(6)


def test_auto_chunk_makes_a_block_per_worker_between_two_and_the_stages():
    resolve = options.resolve_chunk
    assert resolve("auto", 16, False, workers=2, stages=5) == 8
    assert resolve("auto", 16, False, workers=1, stages=5) == 8  # at least 2 blocks
    assert resolve("auto", 16, False, workers=16, stages=5) == 4  # at most one per stage
    assert resolve("auto", 7, False, workers=2, stages=5) == 4  # the last block shorter
    assert resolve(5, 16, False) == 5
    assert resolve(32, 16, False) == 16  # one block: the batched engine's passes
    # Tick by tick: asked for, streaming, an unknown clip length, unkeyable noise.
    assert resolve(1, 16, False) is None
    assert resolve("auto", 16, True) is None
    assert resolve("auto", None, False) is None
    assert resolve("auto", 16, False, keyed=False) is None
    with pytest.raises(ValueError, match="pipeline_chunk=4 .* static length"):
        resolve(4, None, False)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mode="backprop"), "Unknown mode 'backprop'; expected one of sideways, bp"),
        (dict(engine="fast"), "Unknown engine 'fast'; expected one of auto, pipeline, batched"),
        (dict(mode="bp", stateful=True), "mode='bp' has no pipeline"),
        (dict(engine="batched", stateful=True), "cannot stream"),
        (dict(placement="/CPU:0"), "one per stage.*got '/CPU:0'"),
        (dict(pipeline_chunk=0), "pipeline_chunk must be 'auto' or an int >= 1.*got 0"),
        (dict(pipeline_chunk="4"), "pipeline_chunk must be 'auto' or an int >= 1.*got '4'"),
        (dict(pipeline_chunk=True), "pipeline_chunk must be 'auto' or an int >= 1.*got True"),
        (dict(stateful=True, pipeline_chunk=4), "must be 1 or 'auto' then; got 4"),
    ],
)
def test_bad_options_are_refused_by_name(kwargs, message):
    stages = [keras.layers.Dense(2), keras.layers.Dense(2)]
    with pytest.raises(ValueError, match=message):
        ks.SidewaysModel(stages, **kwargs)


def test_stages_must_be_two_or_more_keras_layers():
    with pytest.raises(ValueError, match="at least two stages.*got 1"):
        options.check_stages([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="stage 1 is a builtin_function_or_method"):
        options.check_stages([keras.layers.Dense(2), len])
    sequential = keras.Sequential([keras.layers.Dense(2), keras.layers.Dense(3)])
    assert options.check_stages(sequential) == sequential.layers


@pytest.mark.parametrize("stateful", ["no", "false", 1, None])
def test_stateful_must_be_a_bool(stateful):
    # A truthy string made a stream: buffers carried across batches, not BP's gradient.
    with pytest.raises(ValueError, match=f"stateful must be True or False; got {stateful!r}"):
        ks.SidewaysModel(tiny_conv_stages(num_stages=3), stateful=stateful)


def test_a_delay_warmup_with_no_frame_gap_warns_that_it_does_nothing():
    with pytest.warns(UserWarning, match="delay_warmup_steps=100 does nothing here.*stash"):
        ks.SidewaysModel(tiny_conv_stages(num_stages=3), delay_warmup_steps=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the paper's pairing: it scales
        ks.SidewaysModel(tiny_conv_stages(num_stages=3), stash_depth=0, delay_warmup_steps=100)


def test_compute_gradients_before_compile_names_compile():
    model = ks.SidewaysModel(tiny_conv_stages(num_stages=3))
    with pytest.raises(ValueError, match=r"needs the loss: call compile\("):
        model.compute_gradients(random_video(batch=2, time=3), np.array([0, 1]))


def test_a_stash_depth_per_stage_may_be_a_numpy_array(tmp_path):
    stages = tiny_conv_stages(num_stages=3)
    model = ks.SidewaysModel(stages, stash_depth=np.array([2, 1, 0]))
    assert model.stash == [2, 1, 0]
    # Its config kept the array, and load_model refused the file save had written.
    model.compile(optimizer="sgd", loss=CLIP_LOSS)
    video = random_video(batch=2, time=4)
    model.fit(video, np.array([0, 1]), epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.stash == [2, 1, 0] and loaded.stash_depth == [2, 1, 0]
    np.testing.assert_allclose(loaded.predict(video, verbose=0), model.predict(video, verbose=0))
    # With delay lines, the depths are the given stages' (the relays' were counted too).
    skips = ks.SidewaysModel(
        tiny_conv_stages(num_stages=4),
        inputs=[ks.VIDEO, 0, np.array([0, 1]), 2],  # an array of sources: "ambiguous"
        stash_depth=np.array([2, 1, 0, 0]),
    )
    assert skips.stash_depth == [2, 1, 0, 0] and skips.stage_sources[2] == [0, 1]


def test_numpy_numbers_are_taken_where_python_ones_are():
    # Each was refused quoting a value that met its rule ("an int >= 1; got np.int64(3)").
    assert ks.SidewaysModel(tiny_conv_stages(), pipeline_chunk=np.int64(3)).pipeline_chunk == 3
    assert ks.layers.CausalTemporalConv(4, 3, window=np.int64(3)).window == 3
    assert ks.layers.TemporalShift(np.float32(0.25)).fraction == 0.25
    temporal = ks.models.vgg_classifier(
        3, num_stages=3, temporal_window=np.int64(3), temporal_shift=np.float32(0.25)
    )
    assert ks.SidewaysModel(temporal).windows == [3, 2, 2]
    with pytest.raises(ValueError, match="TemporalShift sees 2 frames.*got window=4"):
        ks.layers.TemporalShift(0.25, window=4)  # taken and ignored


@pytest.mark.parametrize("placement", [[0, 0, 0], ["/CPU:0", 1, "/CPU:0"]])
def test_a_placement_of_other_than_device_names_is_named(placement):
    with pytest.raises(ValueError, match="placement must name one device per stage.*got 0|got 1"):
        ks.SidewaysModel(tiny_conv_stages(num_stages=3), placement=placement)


@pytest.mark.parametrize("batch", [0, -1, 1.5, True, "x"])
def test_stash_bytes_takes_a_batch_of_at_least_one(batch):
    model = ks.SidewaysModel(tiny_conv_stages(num_stages=3), engine="pipeline", stash_depth=1)
    model.build((2, 4, 8, 8, 1))
    assert model.stash_bytes(4) == 2 * model.stash_bytes(2) > 0
    with pytest.raises(ValueError, match=f"batch must be a whole number >= 1.*got {batch!r}"):
        model.stash_bytes(batch)


def test_temporal_layers_refuse_what_they_cannot_compute():
    with pytest.raises(ValueError, match="fraction must be a number in \\(0, 1\\]; got 'x'"):
        ks.layers.TemporalShift("x")
    with pytest.raises(ValueError, match="fraction must be a number.*got True"):
        ks.layers.TemporalShift(True)
    with pytest.raises(ValueError, match="data_format must be 'channels_last'"):
        ks.layers.CausalTemporalConv(4, 3, window=3, data_format="channels_first")
    ks.layers.CausalTemporalConv(4, 3, window=3, data_format=None)  # Keras' default: taken
