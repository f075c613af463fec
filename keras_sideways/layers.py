"""Temporal layers: stages that see a causal window of their recent inputs.

Every other stage is a per-frame function. A temporal layer is the first layer of its
stage (the stage itself, or the first layer of a `keras.Sequential` stage) and takes the
stage's inputs of this tick and the `window - 1` ticks before, oldest first,
[N, window, ...], giving one output per frame, [N, ...]. Every engine feeds it that
window (docs/algorithm.md, "Temporal stages"): BP and the batched engine gather it from
the clip (a causal window, the first frame repeated before the clip starts, as priming
does), the pipeline keeps the last `window - 1` inputs of the stage in its buffers, so
its memory still does not grow with clip length.
"""

from __future__ import annotations

import numbers

import keras
import tensorflow as tf
from keras import ops

from keras_sideways.engines import tick_layers


class TemporalLayer(keras.layers.Layer):
    """Base of the layers that read a causal window [N, window, ...] of a stage's inputs.

    Subclasses set `self.window` (frames seen: this one and `window - 1` before) and
    implement `call(window)`.
    """

    def __init__(self, window: int, **kwargs):
        super().__init__(**kwargs)
        if isinstance(window, bool) or not isinstance(window, numbers.Integral) or window < 2:
            raise ValueError(
                f"{type(self).__name__}: window must be a whole number >= 2 (frames seen, "
                f"this one included); got {window!r}."
            )
        self.window = int(window)

    def get_config(self):
        return {**super().get_config(), "window": self.window}


@keras.saving.register_keras_serializable(package="keras_sideways")
class CausalTemporalConv(TemporalLayer):
    """A causal (window × k × k) convolution over a stage's last `window` input frames.

    Equivalent to a Conv3D with kernel (window, k, k), "valid" in time and "same" in
    space, at the window's newest frame: the frames are stacked on the channel axis and
    one Conv2D with `window * channels` input channels runs on them.

    Args:
        filters: output channels.
        kernel_size: the spatial kernel size (int or pair).
        window: the frames seen, this one included (>= 2).
        **kwargs: passed to `keras.layers.Conv2D` (activation, strides, initializers ...),
            plus `name`.
    """

    def __init__(self, filters: int, kernel_size=3, window: int = 3, **kwargs):
        # None is Keras' default: keras.config.image_data_format()
        data_format = kwargs.get("data_format") or keras.config.image_data_format()
        if data_format != "channels_last":
            raise ValueError(
                "CausalTemporalConv takes video [batch, time, height, width, channels] and "
                f"stacks its window on the channels: data_format must be 'channels_last'; "
                f"got {data_format!r}."
            )
        base = {k: kwargs.pop(k) for k in ("name", "trainable", "dtype") if k in kwargs}
        super().__init__(window, **base)
        self.conv_kwargs = dict(kwargs, padding=kwargs.get("padding", "same"))
        self.filters, self.kernel_size = filters, kernel_size
        self.conv = keras.layers.Conv2D(filters, kernel_size, **self.conv_kwargs)

    def build(self, input_shape):
        check_window_shape(self, input_shape, rank=5)
        *_, height, width, channels = input_shape
        self.conv.build((input_shape[0], height, width, self.window * channels))

    def call(self, window):
        stacked = ops.concatenate([window[:, i] for i in range(self.window)], axis=-1)
        return self.conv(stacked)

    def compute_output_shape(self, input_shape):
        *_, height, width, channels = input_shape
        return self.conv.compute_output_shape(
            (input_shape[0], height, width, self.window * channels)
        )

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            **{
                k: keras.saving.serialize_keras_object(v) if not _plain(v) else v
                for k, v in self.conv_kwargs.items()
            },
        }


@keras.saving.register_keras_serializable(package="keras_sideways")
class TemporalShift(TemporalLayer):
    """Online temporal shift (TSM): part of the channels come from the frame before.

    The last `max(1, round(fraction * channels))` channels of the output are the previous frame's
    (the first frame's own before the clip starts), the rest this frame's. No weights: put
    it first in a `keras.Sequential` stage, before the convolutions that mix the channels.

    Args:
        fraction: the share of channels taken from the frame before (TSM's 1/8 default).
    """

    def __init__(self, fraction: float = 0.125, **kwargs):
        window = kwargs.pop("window", 2)  # always 2 (its config's): this frame and the one before
        if window != 2:
            raise ValueError(
                f"TemporalShift sees 2 frames, this one and the one before; got window={window!r} "
                "(a wider window is CausalTemporalConv's)."
            )
        super().__init__(2, **kwargs)
        if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
            raise ValueError(
                f"TemporalShift: fraction must be a number in (0, 1]; got {fraction!r}."
            )
        if not 0 < fraction <= 1:
            raise ValueError(f"TemporalShift: fraction must be in (0, 1]; got {fraction!r}.")
        self.fraction = float(fraction)

    def build(self, input_shape):
        check_window_shape(self, input_shape, rank=None)

    def call(self, window):
        channels = window.shape[-1]
        shifted = max(1, round(self.fraction * channels))
        kept = channels - shifted
        return ops.concatenate([window[:, 1, ..., :kept], window[:, 0, ..., kept:]], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *input_shape[2:])

    def get_config(self):
        config = super().get_config()
        config.pop("window")
        return {**config, "fraction": self.fraction}


@keras.saving.register_keras_serializable(package="keras_sideways")
class Relay(keras.layers.Layer):
    """One tick of a delay line (`SidewaysModel(delay_lines=...)`, docs/algorithm.md,
    "Delay lines"): a stage that passes its input on unchanged, one tick later in the
    pipeline. It has no weights and never casts (a float32 skip stays float32 under mixed
    precision)."""

    def __init__(self, **kwargs):
        super().__init__(autocast=False, **kwargs)

    def call(self, x):
        return x

    def compute_output_shape(self, input_shape):
        return input_shape


def _plain(value) -> bool:
    return value is None or isinstance(value, (int, float, str, bool, tuple, list))


def check_window_shape(layer: TemporalLayer, input_shape, rank: int | None) -> None:
    """ValueError unless `input_shape` is a window [N, layer.window, ...] (of `rank`)."""
    if (rank is not None and len(input_shape) != rank) or (
        len(input_shape) < 3 or input_shape[1] != layer.window
    ):
        expected = "[N, window, H, W, C]" if rank == 5 else "[N, window, ...]"
        raise ValueError(
            f"{layer.name} ({type(layer).__name__}) takes a window of its stage's inputs, "
            f"{expected} with window {layer.window}; got shape {tuple(input_shape)}. It must "
            "be a stage, or the first layer of a keras.Sequential stage, which declares no "
            "keras.Input (an Input fixes a frame's shape where the stage reads a window)."
        )


@tf.autograph.experimental.do_not_convert  # plain Python on the stage's structure
def stage_window(stage: keras.layers.Layer) -> int:
    """The frames a stage sees per tick: its temporal layer's window, or 1 (per frame).

    The temporal layer is the stage, or the first layer of a (nested) Sequential stage.

    Raises ValueError for a temporal layer that is not the stage's first layer.
    """
    first = stage
    while isinstance(first, keras.Sequential) and first.layers:  # nested Sequentials too
        first = first.layers[0]
    window = first.window if isinstance(first, TemporalLayer) else 1
    inner = [
        layer
        for layer in _sublayers(stage)
        if isinstance(layer, TemporalLayer) and layer is not first
    ]
    if inner:
        raise ValueError(
            f"{inner[0].name} ({type(inner[0]).__name__}) must be a stage or the first layer "
            f"of a keras.Sequential stage (it reads the stage's inputs); it is inside stage "
            f"{stage.name}."
        )
    return window


def _sublayers(layer: keras.layers.Layer) -> list:
    return tick_layers.sublayers([layer])[1:]  # the layer itself comes first
