"""The tick-by-tick Sideways engine: the tick, priming, and the training loop over ticks.

The semantics are those of docs/algorithm.md ("Sideways, tick by tick"). At tick t
every stage k reads only the buffers written at tick t-1: its input (the frame x_t, or
the activation buffer of the stage it reads) and its error (the loss gradient at the top,
or its error buffer E_k). It runs forward and a vector-Jacobian product at that input,
accumulates its weight pseudo-gradient, and only then are all buffers overwritten at once
(A_k <- out_k, E_k <- the sum of its readers' input-gradients). Within a tick the L stage
computations are therefore independent, and TensorFlow may run them concurrently. Which
stage reads which, and where each runs, is the stage graph's (`keras_sideways.graph`).

`tick` and `prime` are the pipeline's step: the training loop here (`run_ticks`, with the
lane groups of `engines.lanes`), `pipelined_forward` (`SidewaysModel.pipelined_call`) and
the exported `stream` endpoint run them. Training runs this loop where blocks of ticks
cannot run (a stream, a clip of unknown length, `pipeline_chunk=1`, unkeyable random
layers); otherwise the pipeline engine runs `engines.batched` in blocks of ticks. In
training mode every stage call is made inside `tick_layers` rows of its tick, which give
batch normalisation and random layers their per-tick meaning.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import keras
import tensorflow as tf

from keras_sideways import graph as graphs
from keras_sideways.engines import tick_layers, windows
from keras_sideways.engines.gradients import dense, stage_weights, zero_sums
from keras_sideways.graph import StageGraph
from keras_sideways.placement import device_scope

if TYPE_CHECKING:
    from keras_sideways.engines.buffers import PipelineBuffers


def tick(
    stages: Sequence[keras.layers.Layer],
    frame: tf.Tensor,
    activations: Sequence[tf.Tensor],
    run_stage: Callable[[int, keras.layers.Layer, tf.Tensor], Any],
    graph: StageGraph | None = None,
) -> list:
    """One tick: every stage k runs on its input of the previous tick, on its device.

    Stage k's input is `frame` or the activation of the stage it reads (`activations`:
    the buffered stages' outputs one tick earlier, A_0 ... A_{L-2} in a chain).
    `run_stage(k, stage, input)` does the stage's work (a forward pass, or forward and
    backward) and its results are returned, bottom first. Nothing is written: the caller
    shifts its state, so no stage sees another's output of this tick, and the stages are
    independent.
    """
    graph = graph or graphs.of_stages(stages)
    inputs = graph.stage_inputs(frame, activations)
    results = []
    for k, stage in enumerate(stages):
        with device_scope(graph.devices[k]):
            results.append(run_stage(k, stage, inputs[k]))
    return results


def forward_tick(stages, frame, activations, training=False, graph=None, histories=None):
    """The outputs of every stage at one tick, bottom first (see `tick`).

    `histories` ({k: the last W-1 inputs of temporal stage k}) give those stages their
    windows; the caller advances them (`windows.advanced`).
    """
    histories = histories or {}

    def run(k, stage, x):
        return stage(windows.tick_window(histories.get(k), x), training=training)

    return tick(stages, frame, activations, run, graph)


def prime(
    stages: Sequence[keras.layers.Layer],
    frame: tf.Tensor,
    training: bool = False,
    graph: StageGraph | None = None,
) -> list:
    """The primed activations (A_0 ... A_{L-2} in a chain): one synchronised forward pass
    of `frame`. A temporal stage sees a window of its primed input only."""
    graph = graph or graphs.of_stages(stages)
    outputs = []
    for k, stage in enumerate(stages[:-1]):
        x = graph.input_of(k, frame, outputs)
        window = windows.primed_history(x, graph.windows[k])
        with device_scope(graph.devices[k]):
            outputs.append(stage(windows.tick_window(window, x), training=training))
    return graph.held(outputs)


def pipelined_forward(
    stages: Sequence[keras.layers.Layer],
    video: tf.Tensor,
    training: bool = False,
    graph: StageGraph | None = None,
) -> tf.Tensor:
    """The top stage's output at every tick of a freshly primed pipeline, [batch, time, ...].

    The output at tick t belongs to frame max(t - L + 1, 0): what a streaming deployment
    emits, one frame in and one output out per tick. In training mode batch normalisation
    uses each tick's statistics (its moving statistics stay) and dropout fresh masks.
    """
    graph = graph or graphs.of_stages(stages)
    layers = tick_layers.TickLayers(stages)
    with layers.patched():
        seeds = layers.draw_seeds() if training else None
        with layers.rows(tick_layers.TickRows(seeds, 0)):
            activations = prime(stages, video[:, 0], training, graph)
        histories = windows.primed_histories(
            graph.windows, graph.stage_inputs(video[:, 0], activations)
        )
        time = tf.shape(video)[1]
        top_spec = output_spec(stages, graph, activations, video[:, 0])

        def body(t, activations, histories, top_outputs):
            frame = video[:, t]
            with layers.rows(tick_layers.TickRows(seeds, t)):
                outputs = forward_tick(stages, frame, activations, training, graph, histories)
            histories = windows.advanced(histories, graph.stage_inputs(frame, activations))
            top_outputs = top_outputs.write(t, outputs[graph.top])
            return t + 1, graph.held(outputs), histories, top_outputs

        top_outputs = tf.TensorArray(top_spec.dtype, size=time, element_shape=top_spec.shape)
        _, _, _, top_outputs = tf.while_loop(
            lambda t, *_: t < time, body, (tf.constant(0), activations, histories, top_outputs)
        )
    return time_major_to_batch_major(top_outputs.stack())


def time_major_to_batch_major(x: tf.Tensor) -> tf.Tensor:
    """[time, batch, ...] -> [batch, time, ...]."""
    return tf.transpose(x, [1, 0] + list(range(2, x.shape.rank)))


def output_spec(stages, graph: StageGraph, activations, frame=None) -> keras.KerasTensor:
    """Shape and dtype of the top stage's output for one tick, from the activations it
    reads (buffers or tensors, [lanes, ...], in `graph.buffered` order) and `frame`, a
    frame batch, where it reads the video."""
    top = graph.top
    below = graph.sources(top, graph.stage_inputs(frame, activations)[top])
    specs = [
        keras.KerasTensor(windows.window_shape(x.shape, graph.windows[top]), x.dtype) for x in below
    ]
    return stages[top].compute_output_spec(graph.shaped(top, specs))


@dataclasses.dataclass(frozen=True)
class TickStep:
    """What each stage's step of one training tick reads (`stage_step`)."""

    buffers: PipelineBuffers  # the state the tick before left (read before the shift)
    weights: list  # per stage, its trainable variables' values
    layers: tick_layers.TickLayers  # patched by the caller
    rows_at: Callable[[tf.Tensor], tick_layers.TickRows]  # the rows of a tick since priming
    errors: list  # E_k of the buffered stages, read before the shift
    slot: tf.Tensor  # this tick, counted since priming
    loss: Callable[[tf.Tensor], tf.Tensor]  # the top's output -> this tick's loss


def stage_step(step: TickStep, k: int, stage: keras.layers.Layer, x: tf.Tensor) -> tuple:
    """Stage k's output, input-gradient (None for a stage that reads the video) and weight
    pseudo-gradients at one tick, and the tick's loss at the top (else None).

    The backward pass runs at the stage's stashed input of D_k ticks ago, if any, as the
    stage ran then (the rows of that tick); this tick's pass is the one whose batch-norm
    statistics count.
    """
    graph, buffers = step.buffers.graph, step.buffers
    top, first = k == graph.top, graph.reads_video(k)  # first: it passes no error down
    depth, ring, history = graph.stash[k], buffers.stashes[k], buffers.histories.get(k)
    if history is not None:  # inputs t-W+1-D .. t: this tick's and the stashed window
        inputs = windows.tick_window(history.value, x)
        current, paired = inputs[:, depth:], inputs[:, : graph.windows[k]]
    else:
        current = x
        paired = x
        if ring is not None:  # one ring per source
            stashed = [tf.gather(r.value, step.slot % depth) for r in graph.sources(k, ring)]
            paired = graph.shaped(k, stashed)
    if depth:
        with step.layers.rows(step.rows_at(step.slot), record=True):
            out = stage(current, training=True)  # what moves up; the tape sees the stash
    with (
        tf.GradientTape(watch_accessed_variables=False) as tape,
        step.layers.rows(step.rows_at(_lagged(step.slot, depth)), record=not depth),
    ):
        tape.watch(step.weights[k])
        watched = graph.stage_sources(k, paired)  # what it reads from stages
        tape.watch(watched)
        y = stage(paired, training=True)
        loss = step.loss(y) if top else None
    sources = watched + step.weights[k]
    if top:
        grads = tape.gradient(loss, sources)
    else:
        error = step.errors[graph.buffered.index(k)]
        if graph.masks_errors(k):  # only some paths' errors have arrived: none counts
            error = error * tf.cast(step.slot >= graph.first_valid_tick(k), error.dtype)
        grads = tape.gradient(y, sources, output_gradients=error)
    grads = dense(grads, sources)
    input_grads, grads = grads[: len(watched)], grads[len(watched) :]
    input_grad = None if first else graph.input_gradient(k, input_grads)
    if input_grad is not None and history is not None and not graph.whole_errors:
        input_grad = tf.reduce_sum(input_grad, axis=1)  # the error of its tick: the window's
    return (out if depth else y), input_grad, grads, loss  # (whole errors: `_whole_errors`)


def _lagged(slot: tf.Tensor, depth: int) -> tf.Tensor:
    """The tick `depth` before `slot` (the primed one before the clip)."""
    return tf.maximum(slot - depth, 0) if depth else slot


def shift(buffers: PipelineBuffers, inputs, outputs, input_grads, slot) -> list:
    """The assignments that end a tick: A_k <- out_k, E_k <- its readers' input-gradients,
    and each stash and history takes this tick's input (a ring replaces its oldest, D_k
    ticks old, just used)."""
    graph = buffers.graph
    shifts = [a.assign(x) for a, x in zip(buffers.activations, graph.held(outputs))]
    shifts += [e.assign(g) for e, g in zip(buffers.errors, graph.output_errors(input_grads))]
    shifts += [
        one.value[slot % graph.stash[k]].assign(tf.cast(x, one.dtype))
        for k, ring in enumerate(buffers.stashes)
        if ring is not None
        for one, x in zip(graph.sources(k, ring), graph.sources(k, inputs[k]))
    ]
    shifts += [
        history.assign(windows.next_history(history.value, inputs[k]))
        for k, history in buffers.histories.items()
    ]
    return shifts


def _whole_errors(buffers: PipelineBuffers, input_grads, slot) -> tuple[list, list]:
    """`input_grads` with each temporal stage that sends whole errors (`graph.whole_errors`)
    sending its error of this tick instead of its window's input-gradients, and the
    assignments that keep the shares it holds for later ticks (`buffers.pending`)."""
    graph, input_grads, held = buffers.graph, list(input_grads), []
    for k, pending in buffers.pending.items():
        first = graph.first_whole_error_tick(k)
        input_grads[k], later = windows.whole_error_tick(pending.value, input_grads[k], slot, first)
        held.append(pending.assign(later))
    return input_grads, held


def run_ticks(
    stages: Sequence[keras.layers.Layer],
    buffers: PipelineBuffers,
    video: tf.Tensor,
    tick_loss: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
    layers: tick_layers.TickLayers,
    seeds: tf.Tensor,
    lanes: tf.Tensor | int | None = None,
    group: tf.Tensor | int = 0,
):
    """Runs the pipeline over every frame of `video` [capacity, time, ...].

    Stage k runs on its device of `buffers.graph`. `tick_loss(t, top_output)` gives the
    loss of tick t. `layers` (patched by the caller), `seeds`, `lanes` (the real ones,
    first) and `group` (of lanes) are what the stages' batch-norm and random layers see
    (`tick_layers.TickRows`). Returns the per-stage sums of pseudo-gradients over the
    ticks, the sum of tick losses, the top stage's output at every tick, [capacity, time,
    ...], and per recording batch norm the sums over the ticks of its (mean, variance).
    """
    graph = buffers.graph
    weights = stage_weights(stages)
    time = tf.shape(video)[1]
    top_spec = output_spec(stages, graph, buffers.activations, video[:, 0])
    since_priming = tf.cast(tf.convert_to_tensor(buffers.ticks.value), tf.int32)

    def body(t, sums, loss_sum, top_outputs, statistics):
        step = TickStep(
            buffers,
            weights,
            layers,
            lambda tick: tick_layers.TickRows(seeds, tick, group, lanes),
            [tf.convert_to_tensor(e) for e in buffers.errors],
            since_priming + t,  # the ring slots continue
            lambda out: tick_loss(t, out),
        )
        # Every stage reads the buffers of tick t-1 before any of them is overwritten.
        activations = [tf.convert_to_tensor(a) for a in buffers.activations]
        run = lambda k, stage, x: stage_step(step, k, stage, x)  # noqa: E731
        outputs, input_grads, grads, losses = zip(
            *tick(stages, video[:, t], activations, run, graph)
        )
        sums = [[s + g for s, g in zip(sums[k], grads[k])] for k in range(graph.num_stages)]
        ticked = zip(statistics, layers.take_statistics())
        statistics = [(m + tick_m, v + tick_v) for (m, v), (tick_m, tick_v) in ticked]
        inputs = graph.stage_inputs(video[:, t], activations)
        input_grads, held = _whole_errors(buffers, input_grads, step.slot)
        with tf.control_dependencies(
            shift(buffers, inputs, outputs, input_grads, step.slot) + held
        ):
            top_outputs = top_outputs.write(t, outputs[graph.top])
            return t + 1, sums, loss_sum + losses[graph.top], top_outputs, statistics

    top_outputs = tf.TensorArray(top_spec.dtype, size=time, element_shape=top_spec.shape)
    start = (tf.constant(0), zero_sums(weights), tf.constant(0.0), top_outputs)
    _, sums, loss_sum, top_outputs, statistics = tf.while_loop(
        lambda t, *_: t < time,
        body,
        (*start, layers.zero_statistics()),
        parallel_iterations=1,  # each tick depends on the buffers the last one wrote
    )
    return sums, loss_sum, time_major_to_batch_major(top_outputs.stack()), statistics
