"""Sideways pseudo-gradients batched in time, whole clips or chunks of consecutive ticks.

docs/algorithm.md ("The same pseudo-gradients, batched in time"): with weights fixed during a
clip, stage k at tick t of the pipeline computes f_k on its input of that tick, and that
input is stage k-1's output of tick t-1 (the primed value at t = 0, which is stage k-1's
output of tick 0). So each stage can process all B*T ticks in one call, its input being
the output of the stage below shifted by one tick. Going down, the error of stage k at
tick t is the input-gradient of stage k+1 at tick t-1 (zero at t = 0, as primed). One
forward and one backward pass per stage over every tick: the FLOPs and batch shapes of
BP, the numbers of the tick-by-tick engine.

Cut into chunks of C consecutive ticks (docs/algorithm.md, "Blocks of ticks"), the passes
become L x T/C blocks: stage k's forward pass over chunk c needs only stage k-1's over
chunks c and c-1, and its backward pass only stage k+1's backward over chunks c and c-1
(and its own forward over c, on the tape). Blocks of different stages and chunks are
independent, so TensorFlow runs them concurrently, as the pipeline runs its stages within
a tick, with ops C times bigger than a tick's. C = T is the batched engine; C = 1 has the
tick engine's parallelism (and the batched engine's memory, all activations of the clip).

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


def shift_ticks(x: tf.Tensor, before: tf.Tensor | None = None) -> tf.Tensor:
    """[batch, time, ...] -> the value of the tick before: x[:, max(t-1, 0)].

    `before` [batch, 1, ...] is the value of the tick before the first (a chunk's: the
    last tick of the chunk before); None repeats the first, as primed.
    """
    return tf.concat([x[:, :1] if before is None else before, x[:, :-1]], axis=1)


def delay_errors(g: tf.Tensor, before: tf.Tensor | None = None) -> tf.Tensor:
    """[batch, time, ...] -> the error that arrives one tick later: zero at t = 0.

    `before` [batch, 1, ...] is the error of the tick before the first (a chunk's: the
    last of the chunk before); None is a clip's start, where none arrives.
    """
    return tf.concat([tf.zeros_like(g[:, :1]) if before is None else before, g[:, :-1]], axis=1)


def chunk_bounds(time: int | tf.Tensor, chunk: int | None) -> list[tuple]:
    """(first tick, ticks) of each chunk of `chunk` consecutive ticks, the last one
    shorter if `chunk` does not divide `time`; None: one chunk of every tick."""
    if chunk is None:
        return [(0, time)]
    return [(start, min(chunk, time - start)) for start in range(0, time, chunk)]


def batched_sideways_gradients(
    stages: Sequence[keras.layers.Layer],
    video: tf.Tensor,
    target: tf.Tensor,
    loss_fn: LossFn,
    sample_weight: tf.Tensor | None = None,
    devices: Sequence[str | None] | None = None,
    stash: Sequence[int] | None = None,
    capacity: int | None = None,
    chunk: int | None = None,
) -> EngineResult:
    """The pseudo-gradients of `pipeline.sideways_gradients`, one batched pass per stage.

    With `stash[k]` = D_k > 0, stage k's backward pass runs at its inputs of D_k ticks
    earlier (a second forward pass over the lagged inputs), as the pipeline's stash does.
    `capacity` is the pipeline's number of lanes: batch normalisation and dropout treat
    the batch in groups of that many lanes, as the pipeline runs it (None: one group).
    `chunk` cuts the clip into blocks of that many ticks that run concurrently (the clip
    length must then be static); None makes one block of the whole clip.
    """
    if chunk is not None and (video.shape[1] is None or chunk < 1):
        raise ValueError(
            f"Chunks of ticks need a clip of static length and a chunk >= 1; got clip "
            f"length {video.shape[1]} and chunk {chunk!r}."
        )
    layers = tick_layers.TickLayers(stages)
    with layers.patched():
        return _batched_sideways_gradients(
            stages, video, target, loss_fn, sample_weight, devices, stash, capacity, layers, chunk
        )


def _batched_sideways_gradients(
    stages, video, target, loss_fn, sample_weight, devices, stash, capacity, layers, chunk
) -> EngineResult:
    num_stages = len(stages)
    devices = devices or [None] * num_stages
    stash = list(stash or [0] * num_stages)
    time = tf.shape(video)[1] if chunk is None else video.shape[1]
    bounds = chunk_bounds(time, chunk)
    pieces = [video[:, start : start + size] for start, size in bounds] if chunk else [video]
    aligned = ticks.align_targets(target, num_stages, tf.shape(video)[1])
    weights = stage_weights(stages)
    batch = tf.shape(video)[0]
    lanes = capacity or video.shape[0] or batch
    seeds = layers.draw_seeds()
    sizes = [stage_window(stage) for stage in stages]
    time_f = tf.cast(tf.shape(video)[1], tf.float32)

    def rows(c, lag=0):
        """The rows of chunk c's ticks, holding the inputs of `lag` ticks before."""
        start, size = bounds[c]
        indices = tf.maximum(tf.range(start, start + size) - lag, 0)
        return tick_layers.ClipRows(seeds, batch, size, lanes, indices)

    def chunk_loss(c, out):
        """Chunk c's share of the mean over B*T tick losses (each error scaled by 1/T)."""
        start, size = bounds[c]
        scored = aligned if target.shape.rank == 1 else aligned[:, start : start + size]
        share = tf.cast(size, tf.float32) / time_f
        frames = clips.batch_to_frames(out, pieces[c])
        return frame_loss(loss_fn, scored, frames, sample_weight) * share

    # Forward: each stage over each chunk on its own tape (at the stashed inputs).
    frames = pieces  # stage k's inputs, chunk by chunk, [batch, ticks, ...]
    inputs, outputs, tapes, losses = [], [], [], []
    for k, stage in enumerate(stages):
        stage_inputs, stage_outputs, stage_tapes, ups = [], [], [], []
        for c in range(len(bounds)):
            tape = tf.GradientTape(watch_accessed_variables=False)
            with device_scope(devices[k]):
                if stash[k]:
                    with layers.rows(
                        rows(c), record=True
                    ):  # what moves up; the tape sees the stash
                        up = stage(_stage_input(frames, bounds, c, sizes[k]), training=True)
                x = _stage_input(frames, bounds, c, sizes[k], stash[k])
            with (
                device_scope(devices[k]),
                tape,
                layers.rows(rows(c, stash[k]), record=not stash[k]),
            ):
                tape.watch(weights[k])
                if k > 0:
                    tape.watch(x)
                out = stage(x, training=True)
                if k == num_stages - 1:
                    losses.append(chunk_loss(c, out))
            stage_inputs.append(x)
            stage_outputs.append(out)
            stage_tapes.append(tape)
            ups.append(clips.batch_to_frames(up if stash[k] else out, pieces[c]))
        inputs.append(stage_inputs)
        outputs.append(stage_outputs)
        tapes.append(stage_tapes)
        # The next stage's input at tick t is this one's output at t-1.
        frames = [shift_ticks(up, ups[c - 1][:, -1:] if c else None) for c, up in enumerate(ups)]

    # Backward: one vector-Jacobian product per stage and chunk, errors delayed by one tick.
    grads = [None] * num_stages
    errors = None  # the input-gradients of the stage above, chunk by chunk
    for k in reversed(range(num_stages)):
        stage_grads, input_grads = [], []
        for c in range(len(bounds)):
            sources = ([inputs[k][c]] if k > 0 else []) + weights[k]
            with device_scope(devices[k]):
                if k == num_stages - 1:
                    g = tapes[k][c].gradient(losses[c], sources)
                else:
                    delayed = delay_errors(errors[c], errors[c - 1][:, -1:] if c else None)
                    g = tapes[k][c].gradient(
                        outputs[k][c], sources, output_gradients=clips.frames_to_batch(delayed)
                    )
            g = dense(g, sources)
            if k > 0:  # a window's input-gradients are summed: the error of its tick
                error = g.pop(0)
                error = tf.reduce_sum(error, axis=1) if sizes[k] > 1 else error
                input_grads.append(clips.batch_to_frames(error, pieces[c]))
            stage_grads.append(g)
        errors = input_grads
        grads[k] = [tf.add_n(list(parts)) for parts in zip(*stage_grads)]

    # Average each stage over its valid ticks (the 1/T above becomes 1/count).
    valid = ticks.valid_error_ticks(num_stages, tf.constant(0, tf.int64), tf.shape(video)[1])
    grads = [
        [g * (time_f / tf.cast(tf.maximum(count, 1), g.dtype)) for g in stage_grads]
        for stage_grads, count in zip(grads, valid)
    ]
    top = [clips.batch_to_frames(out, piece) for out, piece in zip(outputs[-1], pieces)]
    return EngineResult(
        gradients=grads,
        loss=tf.add_n(losses),
        outputs=top[0] if len(top) == 1 else tf.concat(top, axis=1),
        targets=aligned,
        valid_ticks=valid,
        statistics=[
            (layer, mean, variance)
            for layer, (mean, variance) in zip(layers.recording_norms(), layers.take_statistics())
        ],
    )


def _stage_input(frames: list, bounds: list, c: int, window: int, lag: int = 0) -> tf.Tensor:
    """A stage's input at the ticks of chunk c, [batch·ticks, ...], from its inputs chunk
    by chunk `frames`: those of `lag` ticks earlier, in causal windows of `window` ticks
    (oldest first, [batch·ticks, window, ...]); before the clip, its first input."""
    if window == 1 and lag == 0:
        return clips.frames_to_batch(frames[c])
    start, size = bounds[c]
    reach = start - lag - (window - 1)  # the earliest tick needed
    first = 0
    while c and bounds[first][0] + bounds[first][1] <= reach:
        first += 1
    seen = frames[c] if first == c else tf.concat(frames[first : c + 1], axis=1)
    wanted = tf.range(start, start + size) - lag
    return windows.gathered_windows(seen, wanted, window, first=bounds[first][0])
