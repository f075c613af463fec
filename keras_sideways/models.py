"""Reference video models, already cut into per-frame stages for SidewaysModel.

Each model is a list of small units (a convolution, a convolution and a pooling, the head),
and `num_stages` groups consecutive units into that many stages, as evenly as it can.
`unet` and `skip_classifier` are graphs of stages (skip connections between stages): they
return (stages, inputs) for `SidewaysModel(stages, inputs=inputs)`.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import keras

from keras_sideways import layers
from keras_sideways.graph import VIDEO

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
    if isinstance(temporal_window, bool) or not isinstance(temporal_window, numbers.Integral):
        raise ValueError(f"temporal_window must be a whole number >= 1; got {temporal_window!r}.")
    if isinstance(temporal_shift, bool) or not isinstance(temporal_shift, numbers.Real):
        raise ValueError(f"temporal_shift must be a number in [0, 1]; got {temporal_shift!r}.")
    temporal_window, temporal_shift = int(temporal_window), float(temporal_shift)
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


# ------------------------------------------------------------------ graphs of stages
# Models whose stages form a graph (docs/algorithm.md, "Stage graphs"): each returns
# (stages, inputs) for `SidewaysModel(stages, inputs=inputs)`.

# The U-Net's six units (ending at these layers) and, per number of stages, where it is
# cut: every skip leaves a cut, so every tensor that crosses a cut is a stage's output.
_UNET_CUTS = {
    2: ["enc1"],
    3: ["enc1", "dec2"],
    4: ["enc1", "enc2", "dec2"],
    5: ["enc1", "enc2", "mid", "dec2"],
    6: ["enc1", "enc2", "mid", "dec2", "dec1"],
}
MAX_STAGES.update(unet=6, skip_classifier=8)


def unet(
    channels: int, num_stages: int = 5, width: int = 16, frame_shape: tuple | None = None
) -> tuple[list, list]:
    """`encoder_decoder` with U-Net skips: each encoder level also feeds its decoder level.

    Units: enc1 (stride 2, `width`), enc2 (stride 2, 2 x `width`), mid; dec2 upsamples
    [mid, enc2] (concatenated: the skip at 1/4 resolution), dec1 upsamples [dec2, enc1] (the
    skip at 1/2), and a last convolution reconstructs the frame in [0, 1]. Cut at the
    units of `_UNET_CUTS`, so that with 5 stages the graph is [VIDEO, 0, 1, [1, 2], [0, 3]]:
    the decoder stages read the encoder stages of their level, and the bottom stage's
    error reaches it from dec1 in 2 edges instead of 4.

    Args:
        channels: the channels of the frames to reconstruct.
        num_stages: 2 to 6.
        width: the channels of the first encoder layer.
        frame_shape: (height, width) of the frames, multiples of 4; None: any such size,
            known when the model is built.

    Returns:
        (stages, inputs) for `SidewaysModel(stages, inputs=inputs)` (per-frame targets).
    """
    from keras_sideways.cutting import cut  # cutting reads the stage graph

    if channels < 1 or width < 1:
        raise ValueError(f"Expected channels >= 1 and width >= 1; got {channels}, {width}.")
    if num_stages not in _UNET_CUTS:
        raise ValueError(f"unet can be cut into 2 to 6 stages; got num_stages={num_stages}.")
    if frame_shape is not None and (len(frame_shape) != 2 or any(s % 4 for s in frame_shape)):
        raise ValueError(f"unet needs frame sides that are multiples of 4; got {frame_shape}.")

    def conv(filters, name, transpose=False, **kwargs):
        layer = keras.layers.Conv2DTranspose if transpose else keras.layers.Conv2D
        return layer(filters, 3, padding="same", activation="relu", name=name, **kwargs)

    frame = keras.Input((*(frame_shape or (None, None)), channels))
    enc1 = conv(width, "enc1", strides=2)(frame)
    enc2 = conv(2 * width, "enc2", strides=2)(enc1)
    mid = conv(2 * width, "mid")(enc2)
    skip2 = keras.layers.Concatenate(name="skip2")([mid, enc2])
    dec2 = conv(width, "dec2", transpose=True, strides=2)(skip2)
    skip1 = keras.layers.Concatenate(name="skip1")([dec2, enc1])
    dec1 = conv(width, "dec1", transpose=True, strides=2)(skip1)
    out = keras.layers.Conv2D(channels, 3, padding="same", activation="sigmoid", name="out")(dec1)
    return cut(keras.Model(frame, out, name="unet"), at=_UNET_CUTS[num_stages])


@keras.saving.register_keras_serializable(package="keras_sideways")
class SkipHead(keras.layers.Layer):
    """The top of `skip_classifier`: `unit` on its first input, then every input averaged
    over its positions, concatenated, and a dense layer to `num_classes` logits."""

    def __init__(self, num_classes: int, unit: keras.layers.Layer, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.unit = unit
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.dense = keras.layers.Dense(num_classes)

    def build(self, input_shapes):
        input_shapes = _as_list(input_shapes, shapes=True)  # one source: a shape
        first = self.unit.compute_output_shape(input_shapes[0])
        channels = first[-1] + sum(shape[-1] for shape in input_shapes[1:])
        self.unit.build(input_shapes[0])
        self.dense.build((first[0], channels))

    def call(self, inputs):
        inputs = _as_list(inputs)
        pooled = [self.pool(self.unit(inputs[0]))] + [self.pool(x) for x in inputs[1:]]
        return self.dense(keras.ops.concatenate(pooled, axis=-1))

    def compute_output_shape(self, input_shapes):
        return (_as_list(input_shapes, shapes=True)[0][0], self.num_classes)

    def get_config(self):
        unit = keras.saving.serialize_keras_object(self.unit)
        return {**super().get_config(), "num_classes": self.num_classes, "unit": unit}

    @classmethod
    def from_config(cls, config):
        config = dict(config, unit=keras.saving.deserialize_keras_object(config["unit"]))
        return cls(**config)


def _as_list(x, shapes: bool = False) -> list:
    """A stage's input (or input shape) as the list of its sources'."""
    single = not isinstance(x[0], (list, tuple)) if shapes else not isinstance(x, (list, tuple))
    return [x] if single else list(x)


def skip_classifier(num_classes: int, num_stages: int = 5, width: int = 16) -> tuple[list, list]:
    """`vgg_classifier` whose every stage also feeds the top: Skip-Sideways' idea.

    The stages below the top are `vgg_classifier`'s; the top (`SkipHead`) runs the last
    unit on stage L-2's output, as the chain does, and also pools the outputs of stages
    0 ... L-3, so the graph is [VIDEO, 0, 1, ..., [L-2, 0, 1, ..., L-3]]. Every stage is
    then one edge from the top: besides the errors that come down the chain (born
    2(L-1-k) frames before the activation they meet), it receives at every tick an error
    born 2 frames before. (The paper's figure 1 sends a unit to several units of the next
    computation step; its exact topology is not given: this is the one defined here.)

    Returns:
        (stages, inputs) for `SidewaysModel(stages, inputs=inputs)`. Outputs are logits.
    """
    chain = vgg_classifier(num_classes, num_stages, width)
    *units, _, _ = _flat_layers(chain[-1])  # the top's units, less the pooling and dense
    top = SkipHead(num_classes, keras.Sequential(units), name="skip_head")
    below = list(range(num_stages - 2))
    return chain[:-1] + [top], [VIDEO, *below, [num_stages - 2, *below]]


def _flat_layers(stage: keras.layers.Layer) -> list:
    """A stage's layers, nested Sequentials opened."""
    if not isinstance(stage, keras.Sequential):
        return [stage]
    return [layer for inner in stage.layers for layer in _flat_layers(inner)]
