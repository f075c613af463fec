"""The single-device fast path: Sideways pseudo-gradients batched in time.

docs/algorithm.md ("The same pseudo-gradients, batched in time"): with weights fixed during a
clip, stage k at tick t of the pipeline computes f_k on its input of that tick, and that
input is stage k-1's output of tick t-1 (the primed value at t = 0, which is stage k-1's
output of tick 0). So each stage can process all B*T ticks in one call, its input being
the output of the stage below shifted by one tick. Going down, the error of stage k at
tick t is the input-gradient of stage k+1 at tick t-1 (zero at t = 0, as primed). One
forward and one backward pass per stage over every tick: the FLOPs and batch shapes of
BP, the numbers of the tick-by-tick engine.

Batch normalisation and random layers keep that equality (`tick_layers.ClipRows`): each
frame is normalised with the statistics of its tick and group of lanes, and each dropout
mask is the one the pipeline draws for that tick and group.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from keras_sideways import clips
from keras_sideways.engines import tick_layers, ticks, windows
from keras_sideways.engines.bp import frame_loss
from keras_sideways.engines.gradients import EngineResult, LossFn, dense, stage_weights
from keras_sideways.layers import stage_window
from keras_sideways.placement import device_scope


def shift_ticks(x: tf.Tensor) -> tf.Tensor:
    """[batch, time, ...] -> the value of the tick before: x[:, max(t-1, 0)]."""
    return tf.concat([x[:, :1], x[:, :-1]], axis=1)


def delay_errors(g: tf.Tensor) -> tf.Tensor:
    """[batch, time, ...] -> the error that arrives one tick later: zero at t = 0."""
    return tf.concat([tf.zeros_like(g[:, :1]), g[:, :-1]], axis=1)


def batched_sideways_gradients(
    stages: Sequence[keras.layers.Layer],
    video: tf.Tensor,
    target: tf.Tensor,
    loss_fn: LossFn,
    sample_weight: tf.Tensor | None = None,
    devices: Sequence[str | None] | None = None,
    stash: Sequence[int] | None = None,
    capacity: int | None = None,
) -> EngineResult:
    """The pseudo-gradients of `pipeline.sideways_gradients`, one batched pass per stage.

    With `stash[k]` = D_k > 0, stage k's backward pass runs at its inputs of D_k ticks
    earlier (a second forward pass over the lagged inputs), as the pipeline's stash does.
    `capacity` is the pipeline's number of lanes: batch normalisation and dropout treat
    the batch in groups of that many lanes, as the pipeline runs it (None: one group).
    """
    layers = tick_layers.TickLayers(stages)
    with layers.patched():
        return _batched_sideways_gradients(
            stages, video, target, loss_fn, sample_weight, devices, stash, capacity, layers
        )


def _batched_sideways_gradients(
    stages, video, target, loss_fn, sample_weight, devices, stash, capacity, layers
) -> EngineResult:
    num_stages = len(stages)
    devices = devices or [None] * num_stages
    stash = list(stash or [0] * num_stages)
    time = tf.shape(video)[1]
    aligned = ticks.align_targets(target, num_stages, time)
    weights = stage_weights(stages)
    batch = tf.shape(video)[0]
    seeds = layers.draw_seeds()

    def rows(lag=0):
        """The rows of every tick, holding the inputs of `lag` ticks before (primed: 0)."""
        lanes = capacity or video.shape[0] or batch
        return tick_layers.ClipRows(seeds, batch, time, lanes, ticks.lagged_indices(time, lag))

    # Forward: every stage over every tick, each on its own tape (at the stashed inputs).
    x = clips.frames_to_batch(video)
    inputs, outputs, tapes = [], [], []
    sizes = [stage_window(stage) for stage in stages]
    for k, stage in enumerate(stages):
        tape = tf.GradientTape(watch_accessed_variables=False)
        with device_scope(devices[k]):
            if stash[k]:
                with layers.rows(rows(), record=True):  # what moves up; the tape sees the stash
                    up = stage(windows.stage_input(x, sizes[k], video), training=True)
                lagged = tf.gather(
                    clips.batch_to_frames(x, video), ticks.lagged_indices(time, stash[k]), axis=1
                )
                x = clips.frames_to_batch(lagged)
        x = windows.stage_input(x, sizes[k], video)  # a temporal stage: causal windows
        with device_scope(devices[k]), tape, layers.rows(rows(stash[k]), record=not stash[k]):
            tape.watch(weights[k])
            if k > 0:
                tape.watch(x)
            out = stage(x, training=True)
            if k == num_stages - 1:
                # The mean over B*T tick losses: each tick's error arrives scaled by 1/T.
                loss = frame_loss(
                    loss_fn, aligned, clips.batch_to_frames(out, video), sample_weight
                )
        inputs.append(x)
        outputs.append(out)
        tapes.append(tape)
        up = up if stash[k] else out
        x = clips.frames_to_batch(shift_ticks(clips.batch_to_frames(up, video)))

    # Backward: one vector-Jacobian product per stage, errors delayed by one tick.
    grads = [None] * num_stages
    error = None
    for k in reversed(range(num_stages)):
        sources = ([inputs[k]] if k > 0 else []) + weights[k]
        with device_scope(devices[k]):
            if k == num_stages - 1:
                g = tapes[k].gradient(loss, sources)
            else:
                delayed = clips.frames_to_batch(delay_errors(clips.batch_to_frames(error, video)))
                g = tapes[k].gradient(outputs[k], sources, output_gradients=delayed)
        g = dense(g, sources)
        if k > 0:  # a window's input-gradients are summed: the error of its tick
            error = g.pop(0)
            error = tf.reduce_sum(error, axis=1) if sizes[k] > 1 else error
        grads[k] = g

    # Average each stage over its valid ticks (the 1/T above becomes 1/count).
    valid = ticks.valid_error_ticks(num_stages, tf.constant(0, tf.int64), time)
    time_f = tf.cast(time, tf.float32)
    grads = [
        [g * (time_f / tf.cast(tf.maximum(count, 1), g.dtype)) for g in stage_grads]
        for stage_grads, count in zip(grads, valid)
    ]
    return EngineResult(
        gradients=grads,
        loss=loss,
        outputs=clips.batch_to_frames(outputs[-1], video),
        targets=aligned,
        valid_ticks=valid,
        statistics=[
            (layer, mean, variance)
            for layer, (mean, variance) in zip(layers.recording_norms(), layers.take_statistics())
        ],
    )
