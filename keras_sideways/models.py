"""Reference video models, already cut into per-frame stages for SidewaysModel.

Each model is a list of small units (a convolution, a convolution and a pooling, the head),
and `num_stages` groups consecutive units into that many stages, as evenly as it can.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_sideways import layers

# How many stages each reference model can be cut into, at most (its number of units).
MAX_STAGES = {"vgg_classifier": 8, "encoder_decoder": 6}


def split_into_stages(units: Sequence[keras.layers.Layer], num_stages: int, name: str) -> list:
    """Groups consecutive `units` into `num_stages` stages (a Sequential each when > 1 unit)."""
    if not 2 <= num_stages <= len(units):
        raise ValueError(
            f"{name} can be cut into 2 to {len(units)} stages; got num_stages={num_stages}."
        )
    bounds = [round(i * len(units) / num_stages) for i in range(num_stages + 1)]
    stages = []
    for k, (start, stop) in enumerate(zip(bounds, bounds[1:])):
        group = list(units[start:stop])
        stage = group[0] if len(group) == 1 else keras.Sequential(group, name=f"{name}_stage{k}")
        stages.append(stage)
    return stages


def vgg_classifier(
    num_classes: int,
    num_stages: int = 5,
    width: int = 16,
    temporal_window: int = 1,
    temporal_shift: float = 0.0,
) -> list:
    """A small VGG-style frame classifier: a strided stem, 4 conv-conv-pool blocks, a head.

    Each block doubles the channels of the last and halves the resolution, so every block
    costs about the same, and so do the 8 units it is cut at (a block's first conv; its
    second conv with the pooling): good for balancing stages over devices.

    Args:
        num_classes: the number of output logits.
        num_stages: how many pipeline stages to cut it into, 2 to 8.
        width: the channels of the first block (doubled in each later block).
        temporal_window: > 1 makes it a video model: the stem becomes a causal temporal
            convolution over that many frames (`layers.CausalTemporalConv`), which sees
            motion. 1: per-frame.
        temporal_shift: > 0 starts every stage above the first with a temporal shift of
            that share of channels (`layers.TemporalShift`, online TSM). 0: none.

    Returns:
        The stages, bottom first, for `SidewaysModel`. Outputs are logits.
    """
    if num_classes < 1 or width < 2:
        raise ValueError(f"Expected num_classes >= 1 and width >= 2; got {num_classes}, {width}.")
    if isinstance(temporal_window, bool) or not isinstance(temporal_window, int):
        raise ValueError(f"temporal_window must be a whole number >= 1; got {temporal_window!r}.")
    if temporal_window < 1 or not 0 <= temporal_shift <= 1:
        raise ValueError(
            "Expected temporal_window >= 1 and 0 <= temporal_shift <= 1; got "
            f"{temporal_window}, {temporal_shift}."
        )

    def conv(channels, **kwargs):
        return keras.layers.Conv2D(
            channels,
            3,
            padding="same",
            activation="relu",
            kernel_initializer="he_normal",
            **kwargs,
        )

    def conv_pool(channels):
        return keras.Sequential([conv(channels), keras.layers.MaxPooling2D(padding="same")])

    stem = conv(width // 2, strides=2)
    if temporal_window > 1:
        stem = layers.CausalTemporalConv(
            width // 2,
            3,
            window=temporal_window,
            strides=2,
            activation="relu",
            kernel_initializer="he_normal",
        )
    units = [keras.Sequential([stem, conv(width)]), conv_pool(width)]
    for block in range(1, 4):
        channels = width * 2**block
        units += [conv(channels), conv_pool(channels)]
    head = keras.Sequential(
        [units.pop(), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(num_classes)]
    )
    stages = split_into_stages(units + [head], num_stages, "vgg")
    if temporal_shift:
        stages[1:] = [
            keras.Sequential(
                [layers.TemporalShift(temporal_shift), *_layers_of(stage)], name=stage.name
            )
            for stage in stages[1:]
        ]
    return stages


def _layers_of(stage: keras.layers.Layer) -> list:
    return list(stage.layers) if isinstance(stage, keras.Sequential) else [stage]


def encoder_decoder(channels: int, num_stages: int = 4, width: int = 16) -> list:
    """A convolutional encoder-decoder that reconstructs each frame, values in [0, 1].

    Frame height and width must be multiples of 4 (two stride-2 downsamplings).

    Args:
        channels: the channels of the frames to reconstruct.
        num_stages: how many pipeline stages to cut it into, 2 to 6.
        width: the channels of the first encoder layer.

    Returns:
        The stages, bottom first, for `SidewaysModel` (per-frame targets, e.g. MSE).
    """
    if channels < 1 or width < 1:
        raise ValueError(f"Expected channels >= 1 and width >= 1; got {channels}, {width}.")
    units = [
        keras.layers.Conv2D(width, 3, strides=2, padding="same", activation="relu"),
        keras.layers.Conv2D(2 * width, 3, strides=2, padding="same", activation="relu"),
        keras.layers.Conv2D(2 * width, 3, padding="same", activation="relu"),
        keras.layers.Conv2DTranspose(width, 3, strides=2, padding="same", activation="relu"),
        keras.layers.Conv2DTranspose(width, 3, strides=2, padding="same", activation="relu"),
        keras.layers.Conv2D(channels, 3, padding="same", activation="sigmoid"),
    ]
    return split_into_stages(units, num_stages, "encoder_decoder")
