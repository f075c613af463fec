"""The tick-by-tick engine over a clip batch: lanes in groups, priming, and streams.

A batch of clips runs through `pipeline.run_ticks` in groups of as many lanes as the
pipeline buffers hold (`PipelineBuffers.capacity`), each group primed on its first frame;
a stream (`stateful`) instead continues where the buffers stood.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import keras
import tensorflow as tf

from keras_sideways.engines import pipeline, tick_layers
from keras_sideways.engines.buffers import PipelineBuffers
from keras_sideways.engines.gradients import EngineResult, LossFn, stage_weights, zero_sums


def sideways_gradients(
    stages: Sequence[keras.layers.Layer],
    buffers: PipelineBuffers,
    video: tf.Tensor,
    target: tf.Tensor,
    loss_fn: LossFn,
    sample_weight: tf.Tensor | None = None,
    stateful: bool = False,
) -> EngineResult:
    """Sideways pseudo-gradients of one clip batch, tick by tick (docs/algorithm.md).

    Without `stateful`, the batch is cut into groups of `buffers.capacity` lanes (the last
    one zero-padded and left out of the loss), and each group is primed on its first
    frame. With `stateful`, the batch must fill the buffers exactly, and only a pipeline
    that was never primed (or was reset) is primed: the clip continues the last one.
    Each stage's pseudo-gradient is averaged over the ticks in which it had a valid error.
    Stage k runs on its device of `buffers.graph`. Batch normalisation normalises each
    tick over the real lanes of its group, and its step statistics (the mean over ticks
    and groups, by lanes) come back in `statistics`, for one moving-statistics update.
    """
    buffers.check_ticking()
    layers = tick_layers.TickLayers(stages)
    with layers.patched():
        return _sideways_gradients(
            stages, buffers, video, target, loss_fn, sample_weight, stateful, layers
        )


def _sideways_gradients(
    stages, buffers, video, target, loss_fn, sample_weight, stateful, layers
) -> EngineResult:
    graph = buffers.graph
    batch, time = tf.shape(video)[0], tf.shape(video)[1]
    capacity = buffers.capacity
    aligned = graph.align_targets(target, time)
    first, count = graph.scored_ticks(time)  # with a drain, the tail runs on the last frame
    video = graph.drained(video)
    # The count before this chunk, read now: the variable gains the chunk's ticks below.
    ticks_before = tf.identity(buffers.ticks.value) if stateful else tf.constant(0, tf.int64)
    step_seeds = None if stateful else layers.draw_seeds()  # a stream keeps its own

    def group(start, lanes):
        """Primes (unless streaming on) and runs lanes start..start+lanes, padded."""
        clip = _pad_lanes(video[start : start + lanes], capacity)
        targets = aligned[start : start + lanes]
        weights = None if sample_weight is None else sample_weight[start : start + lanes]
        share = tf.cast(lanes, tf.float32) / tf.cast(batch, tf.float32)  # sums to the mean
        index = start // capacity

        def tick_loss(t, out):
            scored = targets if targets.shape.rank == 1 else targets[:, t]
            loss = loss_fn(scored, out[:lanes], weights) * share
            if graph.drain:  # the fill's primed frame 0 and the tail are not scored
                loss = loss * tf.cast((t >= first) & (t < first + count), loss.dtype)
            return loss

        if stateful:
            seeds = tf.cond(
                buffers.primed.value > 0,
                lambda: _stream_seeds(buffers, layers),
                lambda: _prime_stream(buffers, layers, stages, clip[:, 0]),
            )
        else:
            seeds = step_seeds
            with layers.rows(tick_layers.TickRows(seeds, 0, index, lanes)):
                buffers.prime(stages, clip[:, 0])
        sums, loss, outputs, statistics = pipeline.run_ticks(
            stages, buffers, clip, tick_loss, layers, seeds, lanes, index
        )
        return sums, loss, outputs, [(m * share, v * share) for m, v in statistics]

    sums, loss_sum, outputs, statistics = _over_groups(
        group, video, capacity, stateful, stages, layers, buffers
    )
    if stateful:
        buffers.ticks.assign_add(tf.cast(time, tf.int64))
    valid = graph.valid_error_ticks(ticks_before, time)
    top_shape = pipeline.output_spec(stages, graph, buffers.activations, video[:, 0]).shape[1:]
    outputs.set_shape([video.shape[0], video.shape[1], *top_shape])
    if graph.drain:
        outputs, aligned = outputs[:, first : first + count], _scored(aligned, first, count)
    time_f = tf.cast(time, tf.float32)
    ticks_f = tf.cast(tf.shape(video)[1], tf.float32)  # the statistics' ticks, the tail's too
    return EngineResult(
        gradients=[
            [s / tf.cast(tf.maximum(count, 1), s.dtype) for s in stage_sums]
            for stage_sums, count in zip(sums, valid)
        ],
        loss=loss_sum / time_f,
        outputs=outputs,
        targets=aligned,
        valid_ticks=valid,
        statistics=[
            (layer, mean / ticks_f, variance / ticks_f)
            for layer, (mean, variance) in zip(layers.recording_norms(), statistics)
        ],
    )


def _scored(aligned: tf.Tensor, first, count) -> tf.Tensor:
    """The targets of the scored ticks (clip labels as they are)."""
    return aligned if aligned.shape.rank == 1 else aligned[:, first : first + count]


def _summed(a: tuple, b: tuple) -> tuple:
    """Two groups' (per-stage sums, loss, batch-norm statistics), added."""
    return (
        [[x + y for x, y in zip(s, t)] for s, t in zip(a[0], b[0])],
        a[1] + b[1],
        [(m + n, v + w) for (m, v), (n, w) in zip(a[2], b[2])],
    )


def _over_groups(group, video, capacity, stateful, stages, layers, buffers) -> tuple:
    """Runs `group(start, lanes)` over the batch in groups of `capacity` lanes; returns the
    per-stage sums, loss and statistics added over the groups, and the outputs joined.

    A known batch (or a stream's one group) runs a fixed number of groups with static
    shapes, which XLA can compile; a batch of unknown size runs them in a tf.while_loop.
    """
    batch, static_batch = tf.shape(video)[0], video.shape[0]
    if stateful or static_batch is not None:
        count = 1 if stateful else -(-static_batch // capacity)
        results = [
            group(
                g * capacity, capacity if stateful else min(capacity, static_batch - g * capacity)
            )
            for g in range(count)
        ]
        totals = functools.reduce(_summed, [(s, loss, st) for s, loss, _, st in results])
        outputs = tf.concat([r[2] for r in results], axis=0)[:batch]
    else:

        def body(g, totals, outputs):
            start = g * capacity
            sums, loss, out, statistics = group(start, tf.minimum(capacity, batch - start))
            return g + 1, _summed(totals, (sums, loss, statistics)), outputs.write(g, out)

        num_groups = (batch + capacity - 1) // capacity
        zeros = (zero_sums(stage_weights(stages)), tf.constant(0.0), layers.zero_statistics())
        spec = pipeline.output_spec(stages, buffers.graph, buffers.activations, video[:, 0])
        _, totals, outputs = tf.while_loop(
            lambda g, *_: g < num_groups,
            body,
            (tf.constant(0), zeros, tf.TensorArray(spec.dtype, num_groups, infer_shape=False)),
            parallel_iterations=1,
        )
        outputs = outputs.concat()[:batch]
    return (*totals[:2], outputs, totals[2])


def _stream_seeds(buffers: PipelineBuffers, layers: tick_layers.TickLayers) -> tf.Tensor:
    """The seeds a primed stream keeps for its random layers."""
    if buffers.seeds is None:
        if layers.random:
            raise ValueError(
                f"The stages hold {len(layers.random)} random layers, but the pipeline "
                "buffers keep no seeds for them: build them with random_layers="
                f"{len(layers.random)}."
            )
        return layers.draw_seeds()  # no random layers: an empty [0, 2]
    return tf.convert_to_tensor(buffers.seeds.value)


def _prime_stream(buffers, layers, stages, frame) -> tf.Tensor:
    """Primes a stream on `frame` with fresh seeds, which it keeps; returns them."""
    seeds = layers.draw_seeds()
    with layers.rows(tick_layers.TickRows(seeds, 0)):
        buffers.prime(stages, frame)
    if buffers.seeds is not None:
        buffers.seeds.assign(seeds)
    return tf.identity(seeds)


def _pad_lanes(x: tf.Tensor, capacity: int) -> tf.Tensor:
    padding = [[0, capacity - tf.shape(x)[0]]] + [[0, 0]] * (x.shape.rank - 1)
    padded = tf.pad(x, padding)
    padded.set_shape([capacity, *x.shape[1:]])
    return padded
