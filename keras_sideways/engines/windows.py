"""The inputs a temporal stage sees: causal windows, gathered from a clip or kept by tick.

A stage of window W (`layers.stage_window`) reads its inputs of this tick and the W-1
before, oldest first, [N, W, ...]; before the first tick its input is the primed one (the
first frame's), so a window that reaches back before the clip repeats it. The pipeline
keeps a stage's last W-1 inputs as its history, [W-1, N, ...] (time-major), shifted by
one at every tick. Per-frame stages (W = 1) get their input unchanged.
"""

from __future__ import annotations

import tensorflow as tf

from keras_sideways import clips


def clip_windows(frames: tf.Tensor, window: int) -> tf.Tensor:
    """[batch, time, ...] -> every tick's causal window, [batch·time, window, ...]."""
    return gathered_windows(frames, tf.range(tf.shape(frames)[1]), window)


def gathered_windows(
    frames: tf.Tensor, wanted: tf.Tensor, window: int, first: int = 0
) -> tf.Tensor:
    """The causal windows of the ticks `wanted` [n] (those before 0 read tick 0, the primed
    input) from `frames` [batch, time, ...], which holds ticks first, first+1, ...:
    [batch·n, window, ...], oldest first ([batch·n, ...] for a window of 1)."""
    lagged = [
        tf.gather(frames, tf.maximum(wanted - back, 0) - first, axis=1)
        for back in reversed(range(window))
    ]
    return clips.frames_to_batch(lagged[0] if window == 1 else tf.stack(lagged, axis=2))


def stage_input(x: tf.Tensor, window: int, video: tf.Tensor) -> tf.Tensor:
    """A stage's input for all ticks at once: `x` [batch·time, ...] of a clip shaped like
    `video`, or its causal windows when `window` > 1."""
    if window == 1:
        return x
    return clip_windows(clips.batch_to_frames(x, video), window)


def tick_window(history: tf.Tensor | None, x: tf.Tensor) -> tf.Tensor:
    """The window of one tick, [N, W, ...], from the last W-1 inputs and this one `x`."""
    if history is None:
        return x
    ordered = tf.concat([tf.cast(history, x.dtype), x[None]], axis=0)
    return tf.transpose(ordered, [1, 0, *range(2, ordered.shape.rank)])


def next_history(history: tf.Tensor | None, x: tf.Tensor) -> tf.Tensor | None:
    """The last W-1 inputs after a tick whose input was `x`."""
    if history is None:
        return None
    return tf.concat([history[1:], tf.cast(x, history.dtype)[None]], axis=0)


def primed_history(x: tf.Tensor, window: int) -> tf.Tensor | None:
    """The history at priming: the primed input `x`, W-1 times (None for W = 1)."""
    if window == 1:
        return None
    return tf.broadcast_to(x[None], tf.concat([[window - 1], tf.shape(x)], axis=0))


def primed_histories(windows, inputs) -> dict:
    """{k: stage k's history at priming} for the temporal stages; `inputs` bottom first."""
    return {k: primed_history(inputs[k], w) for k, w in enumerate(windows) if w > 1}


def advanced(histories: dict, inputs) -> dict:
    """The histories after a tick whose stage inputs were `inputs`, bottom first."""
    return {k: next_history(h, inputs[k]) for k, h in histories.items()}


def window_shape(shape: tuple, window: int) -> tuple:
    """The shape a stage is called on: `shape` [N, ...], with the window axis if W > 1."""
    return tuple(shape) if window == 1 else (shape[0], window, *shape[1:])


# ----------------------------------------------------------------- whole errors
# With `StageGraph.whole_errors`, a temporal stage sends down each frame's whole error: the
# input-gradients of the W windows that hold the frame, summed. The window of tick s holds
# its inputs of ticks s-W+1 ... s; its input-gradient at position i (oldest first) belongs
# to the input of tick s-W+1+i, whose last window is that of tick s-W+1+i + W-1 = s+i. So
# the share of tick s at position i is complete, and sent, at tick s+i; the shares of
# positions before the stage's first valid input (the primed input, which the clip's first
# frame gave) are that input's, sent with it. (docs/algorithm.md, "Temporal stages".)


def whole_error_tick(pending, grads, tick, first):
    """One tick of a temporal stage's whole errors, for the tick-by-tick loop.

    Args:
        pending: [W-1, N, ...], the shares already summed for ticks tick ... tick+W-2.
        grads: [N, W, ...], this tick's input-gradients over its window, oldest first.
        tick: this tick, since priming.
        first: the tick the first whole error is sent: the stage's first valid tick + W-1.
            Before it, the shares of the primed input move on with it.

    Returns:
        (the error sent down at this tick [N, ...], zero before `first`; the next pending).
    """
    shares = tf.transpose(grads, [1, 0, *range(2, grads.shape.rank)])  # [W, N, ...]
    summed = tf.concat([tf.cast(pending, shares.dtype), tf.zeros_like(shares[:1])], axis=0) + shares
    sent = tf.cast(tick >= first, summed.dtype)
    later = tf.concat([summed[1:2] + summed[0] * (1 - sent), summed[2:]], axis=0)
    return summed[0] * sent, tf.cast(later, pending.dtype)


def whole_errors(grads: tf.Tensor, first: int, back: int = 0) -> tf.Tensor:
    """A temporal stage's whole errors over a clip's ticks, from its input-gradients over
    the window of every tick, [batch, ticks, W, ...] -> [batch, ticks, ...].

    The share of tick s at window position i goes to tick max(s + i - `back`, `first`),
    and is dropped past the last tick: with `back` = 0 and `first` the stage's first valid
    tick + W-1, the errors the tick-by-tick loop sends (`whole_error_tick`); with `back` =
    W-1 and `first` = 0, each frame's error when row s is frame s (the transpose of the
    causal windows' gather, as BP computes it).
    """
    ticks, window = grads.shape[1] or tf.shape(grads)[1], grads.shape[2]
    shares = tf.transpose(grads, [1, 2, 0, *range(3, grads.shape.rank)])  # [T, W, B, ...]
    source = tf.range(ticks)[:, None] + tf.range(window)[None, :] - back
    target = tf.maximum(source, first)
    target = tf.where(target < ticks, target, -1)  # a negative segment is dropped
    flat = tf.reshape(shares, tf.concat([[-1], tf.shape(shares)[2:]], axis=0))
    summed = tf.math.unsorted_segment_sum(flat, tf.reshape(target, [-1]), ticks)
    return tf.transpose(summed, [1, 0, *range(2, grads.shape.rank - 1)])
