"""SidewaysModel's options: what is refused, and which engine "auto" picks."""

import keras
import pytest

import keras_sideways as ks
from keras_sideways import options


def test_auto_engine_is_batched_unless_streaming_or_spread_over_devices():
    assert options.resolve_engine("auto", stateful=False, spread=False) == "batched"
    assert options.resolve_engine("auto", stateful=True, spread=False) == "pipeline"
    assert options.resolve_engine("auto", stateful=False, spread=True) == "pipeline"
    assert options.resolve_engine("batched", stateful=False, spread=True) == "batched"
    # Stages with a random layer the batched engine cannot key by tick (GaussianNoise, ...).
    assert options.resolve_engine("auto", False, False, batched_ok=False) == "pipeline"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mode="backprop"), "Unknown mode 'backprop'; expected one of sideways, bp"),
        (dict(engine="fast"), "Unknown engine 'fast'; expected one of auto, pipeline, batched"),
        (dict(mode="bp", stateful=True), "mode='bp' has no pipeline"),
        (dict(engine="batched", stateful=True), "cannot stream"),
        (dict(placement="/CPU:0"), "one per stage.*got '/CPU:0'"),
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
