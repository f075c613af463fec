"""The tick-by-tick Sideways engine: buffers, priming, the tick, and valid-error counts.

The semantics are those of docs/algorithm.md ("Sideways, tick by tick"). At tick t
every stage k reads only the buffers written at tick t-1: its input (the frame x_t, or
the activation buffer A_{k-1}) and its error (the loss gradient at the top, or the error
buffer E_k). It runs forward and a vector-Jacobian product at that input, accumulates
its weight pseudo-gradient, and only then are all buffers overwritten at once
(A_k <- out_k, E_{k-1} <- g_in). Within a tick the L stage computations are therefore
independent, and TensorFlow may run them concurrently.

`tick` and `prime` are the only places that step the pipeline: training (`run_ticks`),
`pipelined_forward` (`SidewaysModel.pipelined_call`) and the exported `stream` endpoint
all use them. In training mode every stage call is made inside `tick_layers` rows of
its tick, which give batch normalisation and random layers their per-tick meaning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import tensorflow as tf

from keras_sideways.engines import tick_layers, ticks, windows
from keras_sideways.engines.gradients import (
    EngineResult,
    LossFn,
    dense,
    stage_weights,
    zero_sums,
)
from keras_sideways.layers import stage_window
from keras_sideways.placement import device_scope


def tick(
    stages: Sequence[keras.layers.Layer],
    frame: tf.Tensor,
    activations: Sequence[tf.Tensor],
    run_stage: Callable[[int, keras.layers.Layer, tf.Tensor], Any],
    devices: Sequence[str | None] | None = None,
) -> list:
    """One tick: every stage k runs on its input of the previous tick, on `devices[k]`.

    Stage 0's input is `frame`, stage k's is `activations[k-1]` (A_{k-1}, the output of
    stage k-1 one tick earlier). `run_stage(k, stage, input)` does the stage's work (a
    forward pass, or forward and backward) and its results are returned, bottom first.
    Nothing is written: the caller shifts its state, so no stage sees another's output of
    this tick, and the stages are independent.
    """
    devices = devices or [None] * len(stages)
    inputs = [frame, *activations]
    results = []
    for k, stage in enumerate(stages):
        with device_scope(devices[k]):
            results.append(run_stage(k, stage, inputs[k]))
    return results


def forward_tick(stages, frame, activations, training=False, devices=None, histories=None):
    """The outputs of every stage at one tick, bottom first (see `tick`).

    `histories` ({k: the last W-1 inputs of temporal stage k}) give those stages their
    windows; the caller advances them (`windows.advanced`).
    """
    histories = histories or {}

    def run(k, stage, x):
        return stage(windows.tick_window(histories.get(k), x), training=training)

    return tick(stages, frame, activations, run, devices)


def prime(
    stages: Sequence[keras.layers.Layer],
    frame: tf.Tensor,
    training: bool = False,
    devices: Sequence[str | None] | None = None,
) -> list:
    """The primed activations A_0 ... A_{L-2}: one synchronised forward pass of `frame`.

    A temporal stage sees a window of its primed input only (`windows.primed_history`).
    """
    devices = devices or [None] * len(stages)
    x, activations = frame, []
    for stage, device in zip(stages[:-1], devices):
        window = stage_window(stage)
        with device_scope(device):
            x = stage(windows.tick_window(windows.primed_history(x, window), x), training=training)
        activations.append(x)
    return activations


def pipelined_forward(
    stages: Sequence[keras.layers.Layer],
    video: tf.Tensor,
    training: bool = False,
    devices: Sequence[str | None] | None = None,
) -> tf.Tensor:
    """The top stage's output at every tick of a freshly primed pipeline, [batch, time, ...].

    The output at tick t belongs to frame max(t - L + 1, 0): what a streaming deployment
    emits, one frame in and one output out per tick. In training mode batch normalisation
    uses each tick's statistics (its moving statistics stay) and dropout fresh masks.
    """
    layers = tick_layers.TickLayers(stages)
    with layers.patched():
        seeds = layers.draw_seeds() if training else None
        with layers.rows(tick_layers.TickRows(seeds, 0)):
            activations = prime(stages, video[:, 0], training, devices)
        sizes = [stage_window(stage) for stage in stages]
        histories = windows.primed_histories(sizes, [video[:, 0], *activations])
        time = tf.shape(video)[1]
        top_spec = _top_spec(stages, activations[-1])

        def body(t, activations, histories, top_outputs):
            frame = video[:, t]
            with layers.rows(tick_layers.TickRows(seeds, t)):
                outputs = forward_tick(stages, frame, activations, training, devices, histories)
            histories = windows.advanced(histories, [frame, *activations])
            return t + 1, outputs[:-1], histories, top_outputs.write(t, outputs[-1])

        top_outputs = tf.TensorArray(top_spec.dtype, size=time, element_shape=top_spec.shape)
        _, _, _, top_outputs = tf.while_loop(
            lambda t, *_: t < time, body, (tf.constant(0), activations, histories, top_outputs)
        )
    return _time_major_to_batch_major(top_outputs.stack())


def _time_major_to_batch_major(x: tf.Tensor) -> tf.Tensor:
    return tf.transpose(x, [1, 0] + list(range(2, x.shape.rank)))


class PipelineBuffers:
    """Per-stage activation and error buffers, held as non-trainable Keras variables.

    They are the state of a run, not weights: `SidewaysModel` keeps them apart from its
    weights (not counted as parameters, and saved only for a stream: `named_variables`).

    For each stage k < L-1: `activations[k]` is A_k, the stage's output at the previous
    tick, and `errors[k]` is E_k, the gradient of the loss with respect to that output,
    computed by stage k+1 at the previous tick. `ticks` counts the ticks run since the
    last priming (it decides which errors are valid); `primed` is 1 once primed.
    The first axis of every buffer holds `capacity` independent streams (lanes).
    With `stash[k]` = D_k > 0, `stashes[k]` holds stage k's inputs of its last D_k ticks,
    [D_k, capacity, ...], slot `tick mod D_k` (the input of `frame_shape` for stage 0).
    With `window[k]` = W_k > 1 (a temporal stage), `histories[k]` holds its last
    W_k - 1 + D_k inputs, oldest first, [W_k - 1 + D_k, capacity, ...]: its windows of this
    tick and of D_k ticks ago (its stash; no ring then).
    With `random_layers` > 0, `seeds` [random_layers, 2] holds the seeds the stream's
    random layers key their noise with, drawn at priming (`tick_layers`).
    """

    def __init__(
        self,
        output_shapes: Sequence[tuple],
        capacity: int,
        dtype: str = "float32",
        devices: Sequence[str | None] | None = None,
        frame_shape: tuple | None = None,
        stash: Sequence[int] | None = None,
        window: Sequence[int] | None = None,
        random_layers: int = 0,
    ):
        self.capacity = capacity
        num_stages = len(output_shapes) + 1
        devices = devices or [None] * num_stages
        self.stash = list(stash or [0] * num_stages)
        self.activations, self.errors, self.stashes = [], [], []
        for k, (shape, device) in enumerate(zip(output_shapes, devices)):
            with device_scope(device):  # both buffers of stage k live on its device
                for kind, buffers in (("activation", self.activations), ("error", self.errors)):
                    buffers.append(_state_variable((capacity, *shape), dtype, f"{kind}_{k}"))
        input_shapes = [frame_shape, *output_shapes]
        self.window = list(window or [1] * num_stages)
        for k, (depth, device) in enumerate(zip(self.stash, devices)):
            if depth == 0 or self.window[k] > 1:  # a temporal stage stashes in its history
                self.stashes.append(None)
                continue
            if input_shapes[k] is None:
                raise ValueError("A stash needs the frame shape of stage 0's input.")
            with device_scope(device):  # stage k's last `depth` inputs, a ring by tick
                shape = (depth, capacity, *input_shapes[k])
                self.stashes.append(_state_variable(shape, dtype, f"stash_{k}"))
        self.histories = {}
        for k, (size, device) in enumerate(zip(self.window, devices)):
            if size > 1:
                if input_shapes[k] is None:
                    raise ValueError("A temporal stage 0 needs the frame shape of its input.")
                with device_scope(device):  # the stage's last W-1+D inputs, oldest first
                    shape = (size - 1 + self.stash[k], capacity, *input_shapes[k])
                    self.histories[k] = _state_variable(shape, dtype, f"history_{k}")
        self.ticks = _state_variable((), "int64", "ticks")
        self.primed = _state_variable((), "int32", "primed")
        self.seeds = (
            _state_variable((random_layers, 2), "int64", "seeds") if random_layers else None
        )

    @property
    def variables(self) -> list:
        """Every buffer: activations, errors, stashes, histories, ticks, primed, seeds."""
        return list(self.named_variables.values())

    @property
    def named_variables(self) -> dict:
        """Every buffer by a stable name ("activation_0", "error_0", "stash_1", ...), in
        the order of `variables`: how a stream's checkpoint stores them."""
        named = {f"activation_{k}": v for k, v in enumerate(self.activations)}
        named.update({f"error_{k}": v for k, v in enumerate(self.errors)})
        named.update({f"stash_{k}": v for k, v in enumerate(self.stashes) if v is not None})
        named.update({f"history_{k}": v for k, v in self.histories.items()})
        named.update(ticks=self.ticks, primed=self.primed)
        if self.seeds is not None:
            named["seeds"] = self.seeds
        return named

    def reset(self) -> None:
        """Clears every buffer: the next clip is primed afresh."""
        for v in self.variables:
            v.assign(tf.zeros(v.shape, v.dtype))

    def prime(self, stages: Sequence[keras.layers.Layer], frame: tf.Tensor, devices=None) -> None:
        """Fills A_k with one synchronised forward pass of `frame`; zeroes the errors.

        A stage's stash is filled with its primed input: before the clip, the first one.
        """
        devices = devices or [None] * len(stages)
        primed = prime(stages, frame, True, devices)
        for buffer, x, device in zip(self.activations, primed, devices):
            with device_scope(device):
                buffer.assign(x)
        for ring, x, device in zip(self.stashes, [frame, *primed], devices):
            if ring is not None:
                with device_scope(device):
                    ring.assign(tf.broadcast_to(tf.cast(x, ring.dtype)[None], ring.shape))
        inputs = [frame, *primed]
        for k, history in self.histories.items():
            with device_scope(devices[k]):
                history.assign(
                    tf.cast(
                        windows.primed_history(inputs[k], self.window[k] + self.stash[k]),
                        history.dtype,
                    )
                )
        for buffer in self.errors:
            buffer.assign(tf.zeros(buffer.shape, buffer.dtype))
        self.ticks.assign(0)
        self.primed.assign(1)


def _state_variable(shape, dtype, name):
    # Under tf.distribute every replica streams its own lanes: the buffers are per-replica
    # state (synchronised on read; a checkpoint keeps the first replica's).
    return keras.Variable(
        initializer="zeros",
        shape=shape,
        dtype=dtype,
        trainable=False,
        synchronization="on_read",
        aggregation="only_first_replica",
        name=f"pipeline_{name}",
    )


def run_ticks(
    stages: Sequence[keras.layers.Layer],
    buffers: PipelineBuffers,
    video: tf.Tensor,
    tick_loss: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
    devices: Sequence[str | None] | None = None,
    layers: tick_layers.TickLayers | None = None,
    seeds: tf.Tensor | None = None,
    lanes: tf.Tensor | int | None = None,
    group: tf.Tensor | int = 0,
):
    """Runs the pipeline over every frame of `video` [capacity, time, ...].

    Stage k runs on `devices[k]` (None: wherever TensorFlow puts it). `tick_loss(t,
    top_output)` gives the loss of tick t. `layers` (patched by the caller), `seeds`,
    `lanes` (the real ones, first) and `group` (of lanes) are what the stages' batch-norm
    and random layers see (`tick_layers.TickRows`); without `layers` they are made here.
    Returns the per-stage sums of pseudo-gradients over the ticks, the sum of tick
    losses, the top stage's output at every tick, [capacity, time, ...], and per
    recording batch norm the sums over the ticks of its (mean, variance).
    """
    if layers is None:
        layers = tick_layers.TickLayers(stages)
        with layers.patched():
            seeds = layers.draw_seeds()
            return run_ticks(stages, buffers, video, tick_loss, devices, layers, seeds, lanes)
    num_stages = len(stages)
    devices = devices or [None] * num_stages
    weights = stage_weights(stages)
    time = tf.shape(video)[1]
    top_spec = _top_spec(stages, buffers.activations[-1])
    since_priming = tf.convert_to_tensor(buffers.ticks.value)  # the ring slots continue

    def rows_at(tick):
        return tick_layers.TickRows(seeds, tick, group, lanes)

    def body(t, sums, loss_sum, top_outputs, statistics):
        errors = [tf.convert_to_tensor(e) for e in buffers.errors]
        slot = tf.cast(since_priming, tf.int32) + t  # the tick since priming

        def forward_and_backward(k, stage, x):
            """Stage k's output, input-gradient and weight pseudo-gradients; the top's loss.

            The backward pass runs at the stage's stashed input of D_k ticks ago, if any,
            as the stage ran then (`rows_at` that tick); this tick's pass is the one whose
            batch-norm statistics count.
            """
            top = k == num_stages - 1
            ring, depth = buffers.stashes[k], buffers.stash[k]
            history = buffers.histories.get(k)  # a temporal stage: its windows of inputs
            if history is not None:  # inputs t-W+1-D .. t: this tick's and the stashed window
                inputs = windows.tick_window(history.value, x)
                current, paired = inputs[:, depth:], inputs[:, : buffers.window[k]]
            else:
                current = x
                paired = x if ring is None else tf.gather(ring.value, slot % depth)
            if depth:
                with layers.rows(rows_at(slot), record=True):
                    out = stage(current, training=True)  # what moves up; the tape sees the stash
                paired_rows = rows_at(tf.maximum(slot - depth, 0))
            else:
                paired_rows = rows_at(slot)
            with (
                tf.GradientTape(watch_accessed_variables=False) as tape,
                layers.rows(paired_rows, record=not depth),
            ):
                tape.watch(weights[k])
                if k > 0:
                    tape.watch(paired)
                y = stage(paired, training=True)
                loss = tick_loss(t, y) if top else None
            if not depth:
                out = y
            sources = ([paired] if k > 0 else []) + weights[k]
            if top:
                grads = tape.gradient(loss, sources)
            else:
                grads = tape.gradient(y, sources, output_gradients=errors[k])
            grads = dense(grads, sources)
            input_grad = grads.pop(0) if k > 0 else None
            if input_grad is not None and history is not None:  # the error of its tick:
                input_grad = tf.reduce_sum(input_grad, axis=1)  # the window's, summed
            return out, input_grad, grads, loss

        # Every stage reads the buffers of tick t-1 before any of them is overwritten.
        activations = [tf.convert_to_tensor(a) for a in buffers.activations]
        results = tick(stages, video[:, t], activations, forward_and_backward, devices)
        outputs, input_grads, grads, losses = zip(*results)
        new_sums = [[s + g for s, g in zip(sums[k], grads[k])] for k in range(num_stages)]
        statistics = [
            (m + tick_m, v + tick_v)
            for (m, v), (tick_m, tick_v) in zip(statistics, layers.take_statistics())
        ]
        # Shift: A_k <- out_k, E_{k-1} <- g_in of stage k. Stage 0 drops its g_in. A stash
        # replaces its oldest input (D_k ticks old, just used) with this tick's.
        shifts = [a.assign(x) for a, x in zip(buffers.activations, outputs[:-1])]
        shifts += [e.assign(g) for e, g in zip(buffers.errors, input_grads[1:])]
        inputs = [video[:, t], *activations]
        shifts += [
            ring.value[slot % depth].assign(tf.cast(x, ring.dtype))
            for ring, depth, x in zip(buffers.stashes, buffers.stash, inputs)
            if ring is not None
        ]
        shifts += [
            history.assign(windows.next_history(history.value, inputs[k]))
            for k, history in buffers.histories.items()
        ]
        with tf.control_dependencies(shifts):
            top_outputs = top_outputs.write(t, outputs[-1])
            return t + 1, new_sums, loss_sum + losses[-1], top_outputs, statistics

    sums = zero_sums(weights)
    top_outputs = tf.TensorArray(top_spec.dtype, size=time, element_shape=top_spec.shape)
    _, sums, loss_sum, top_outputs, statistics = tf.while_loop(
        lambda t, *_: t < time,
        body,
        (tf.constant(0), sums, tf.constant(0.0), top_outputs, layers.zero_statistics()),
        parallel_iterations=1,  # each tick depends on the buffers the last one wrote
    )
    return sums, loss_sum, _time_major_to_batch_major(top_outputs.stack()), statistics


def _top_spec(stages, below) -> keras.KerasTensor:
    """Shape and dtype of the top stage's output for one tick, from the input `below` it
    gets (A_{L-2}: a buffer or a tensor, [lanes, ...])."""
    shape = windows.window_shape(below.shape, stage_window(stages[-1]))
    return stages[-1].compute_output_spec(keras.KerasTensor(shape, below.dtype))


def sideways_gradients(
    stages: Sequence[keras.layers.Layer],
    buffers: PipelineBuffers,
    video: tf.Tensor,
    target: tf.Tensor,
    loss_fn: LossFn,
    sample_weight: tf.Tensor | None = None,
    stateful: bool = False,
    devices: Sequence[str | None] | None = None,
) -> EngineResult:
    """Sideways pseudo-gradients of one clip batch, tick by tick (docs/algorithm.md).

    Without `stateful`, the batch is cut into groups of `buffers.capacity` lanes (the last
    one zero-padded and left out of the loss), and each group is primed on its first
    frame. With `stateful`, the batch must fill the buffers exactly, and only a pipeline
    that was never primed (or was reset) is primed: the clip continues the last one.
    Each stage's pseudo-gradient is averaged over the ticks in which it had a valid error.
    Stage k runs on `devices[k]` when given. Batch normalisation normalises each tick over
    the real lanes of its group, and its step statistics (the mean over ticks and groups,
    by lanes) come back in `statistics`, for one moving-statistics update.
    """
    layers = tick_layers.TickLayers(stages)
    with layers.patched():
        return _sideways_gradients(
            stages, buffers, video, target, loss_fn, sample_weight, stateful, devices, layers
        )


def _sideways_gradients(
    stages, buffers, video, target, loss_fn, sample_weight, stateful, devices, layers
) -> EngineResult:
    num_stages = len(stages)
    batch, time = tf.shape(video)[0], tf.shape(video)[1]
    capacity = buffers.capacity
    aligned = ticks.align_targets(target, num_stages, time)
    if target.shape.rank == 1:
        target_at = lambda targets, t: targets  # noqa: E731
    else:
        target_at = lambda targets, t: targets[:, t]  # noqa: E731

    ticks_before = buffers.ticks.value if stateful else tf.constant(0, tf.int64)
    batch_f = tf.cast(batch, tf.float32)
    step_seeds = None if stateful else layers.draw_seeds()  # a stream keeps its own

    def group(start, lanes):
        """Primes (unless streaming on) and runs lanes start..start+lanes, padded."""
        clip = _pad_lanes(video[start : start + lanes], capacity)
        targets = aligned[start : start + lanes]
        weights = None if sample_weight is None else sample_weight[start : start + lanes]
        share = tf.cast(lanes, tf.float32) / batch_f  # groups add up to the batch mean
        index = start // capacity

        def tick_loss(t, out):
            return loss_fn(target_at(targets, t), out[:lanes], weights) * share

        if stateful:
            seeds = tf.cond(
                buffers.primed.value > 0,
                lambda: _stream_seeds(buffers, layers),
                lambda: _prime_stream(buffers, layers, stages, clip[:, 0], devices),
            )
        else:
            seeds = step_seeds
            with layers.rows(tick_layers.TickRows(seeds, 0, index, lanes)):
                buffers.prime(stages, clip[:, 0], devices)
        sums, loss, outputs, statistics = run_ticks(
            stages, buffers, clip, tick_loss, devices, layers, seeds, lanes, index
        )
        return sums, loss, outputs, [(m * share, v * share) for m, v in statistics]

    static_batch = video.shape[0]
    if stateful or static_batch is not None:
        # A known batch: a fixed number of groups with static shapes (XLA can compile it).
        count = 1 if stateful else -(-static_batch // capacity)
        results = [
            group(
                g * capacity, capacity if stateful else min(capacity, static_batch - g * capacity)
            )
            for g in range(count)
        ]
        sums = [
            [tf.add_n(list(parts)) for parts in zip(*stage)]
            for stage in zip(*[r[0] for r in results])
        ]
        loss_sum = tf.add_n([r[1] for r in results])
        outputs = tf.concat([r[2] for r in results], axis=0)[:batch]
        statistics = [
            tuple(tf.add_n(list(parts)) for parts in zip(*layer))
            for layer in zip(*[r[3] for r in results])
        ]
    else:
        sums, loss_sum, outputs, statistics = _dynamic_groups(
            group, stages, buffers, batch, capacity, layers
        )
    if stateful:
        buffers.ticks.assign_add(tf.cast(time, tf.int64))

    valid = ticks.valid_error_ticks(num_stages, ticks_before, time)
    gradients = [
        [s / tf.cast(tf.maximum(count, 1), s.dtype) for s in stage_sums]
        for stage_sums, count in zip(sums, valid)
    ]
    outputs.set_shape(
        [video.shape[0], video.shape[1], *_top_spec(stages, buffers.activations[-1]).shape[1:]]
    )
    time_f = tf.cast(time, tf.float32)
    return EngineResult(
        gradients=gradients,
        loss=loss_sum / time_f,
        outputs=outputs,
        targets=aligned,
        valid_ticks=valid,
        statistics=[
            (layer, mean / time_f, variance / time_f)
            for layer, (mean, variance) in zip(layers.recording_norms(), statistics)
        ],
    )


def _dynamic_groups(group, stages, buffers, batch, capacity, layers):
    """Runs `group` over a batch of unknown size in a tf.while_loop; returns the totals."""

    def body(g, sums, loss_sum, outputs, statistics):
        start = g * capacity
        group_sums, group_loss, group_outputs, group_statistics = group(
            start, tf.minimum(capacity, batch - start)
        )
        sums = [[a + b for a, b in zip(s, gs)] for s, gs in zip(sums, group_sums)]
        statistics = [(m + gm, v + gv) for (m, v), (gm, gv) in zip(statistics, group_statistics)]
        return g + 1, sums, loss_sum + group_loss, outputs.write(g, group_outputs), statistics

    num_groups = (batch + capacity - 1) // capacity
    sums = zero_sums(stage_weights(stages))
    outputs = tf.TensorArray(
        _top_spec(stages, buffers.activations[-1]).dtype, size=num_groups, infer_shape=False
    )
    _, sums, loss_sum, outputs, statistics = tf.while_loop(
        lambda g, *_: g < num_groups,
        body,
        (tf.constant(0), sums, tf.constant(0.0), outputs, layers.zero_statistics()),
        parallel_iterations=1,
    )
    return sums, loss_sum, outputs.concat()[:batch], statistics


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


def _prime_stream(buffers, layers, stages, frame, devices) -> tf.Tensor:
    """Primes a stream on `frame` with fresh seeds, which it keeps; returns them."""
    seeds = layers.draw_seeds()
    with layers.rows(tick_layers.TickRows(seeds, 0)):
        buffers.prime(stages, frame, devices)
    if buffers.seeds is not None:
        buffers.seeds.assign(seeds)
    return tf.identity(seeds)


def _pad_lanes(x: tf.Tensor, capacity: int) -> tf.Tensor:
    padding = [[0, capacity - tf.shape(x)[0]]] + [[0, 0]] * (x.shape.rank - 1)
    padded = tf.pad(x, padding)
    padded.set_shape([capacity, *x.shape[1:]])
    return padded
