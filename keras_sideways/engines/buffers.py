"""The pipeline's state between ticks: activation, error, stash and history buffers.

docs/algorithm.md ("Sideways, tick by tick"): every stage whose output another stage reads
keeps A_k and E_k; a stage that stashes keeps a ring of its last D_k inputs, a temporal
stage its last W_k - 1 + D_k inputs. Which stages keep what follows the stage graph
(`keras_sideways.graph.StageGraph`).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from keras_sideways.engines import pipeline, windows
from keras_sideways.graph import StageGraph
from keras_sideways.placement import device_scope


class PipelineBuffers:
    """Per-stage activation and error buffers, held as non-trainable Keras variables.

    They are the state of a run, not weights: `SidewaysModel` keeps them apart from its
    weights (not counted as parameters, and saved only for a stream: `named_variables`).

    For each stage k whose output another reads (`graph.buffered`; k < L-1 in a chain):
    `activations[k]` is A_k, the stage's output at the previous tick, and `errors[k]` is
    E_k, the gradient of the loss with respect to that output, computed by its readers at
    the previous tick (summed). `ticks` counts the ticks run since the last priming (it decides
    which errors are valid); `primed` is 1 once primed. The first axis of every buffer
    holds `capacity` independent streams (lanes).
    Only where the tick-by-tick loop runs (`ticking`) do the buffers keep what the loop
    alone reads: with `graph.stash[k]` = D_k > 0, `stashes[k]` holds stage k's inputs of
    its last D_k ticks, [D_k, capacity, ...], slot `tick mod D_k`; with `graph.windows[k]`
    = W_k > 1 (a temporal stage), `histories[k]` holds its last W_k - 1 + D_k inputs,
    oldest first, [W_k - 1 + D_k, capacity, ...]: its windows of this tick and of D_k
    ticks ago (its stash; no ring then); with `graph.whole_errors`, `pending[k]` holds a
    temporal stage's shares of the errors it sends in the next W_k - 1 ticks,
    [W_k - 1, capacity, ...] (`windows.whole_error_tick`).
    With `random_layers` > 0, `seeds` [random_layers, 2] holds the seeds the stream's
    random layers key their noise with, drawn at priming (`tick_layers`).
    """

    def __init__(
        self,
        graph: StageGraph,
        output_shapes: Sequence[tuple],
        capacity: int,
        frame_shape: tuple,
        dtype: str = "float32",
        ticking: bool = True,
        random_layers: int = 0,
    ):
        self.graph = graph
        self.capacity = capacity
        self.ticking = ticking
        devices = graph.devices
        self.activations, self.errors = [], []
        for k in graph.buffered:
            with device_scope(devices[k]):  # both buffers of stage k live on its device
                for kind, buffers in (("activation", self.activations), ("error", self.errors)):
                    buffers.append(
                        _state_variable((capacity, *output_shapes[k]), dtype, f"{kind}_{k}")
                    )
        input_shapes = graph.input_shapes(frame_shape, output_shapes)
        self.stashes, self.histories = [None] * graph.num_stages, {}
        for k in range(graph.num_stages) if ticking else []:
            depth, window = graph.stash[k], graph.windows[k]
            with device_scope(devices[k]):
                if window > 1:  # the stage's last W-1+D inputs, oldest first
                    shape = (window - 1 + depth, capacity, *input_shapes[k])
                    self.histories[k] = _state_variable(shape, dtype, f"history_{k}")
                elif depth:  # stage k's last `depth` inputs, a ring by tick per source
                    shapes = graph.sources(k, input_shapes[k])
                    names = (
                        [f"stash_{k}"]
                        if len(shapes) == 1
                        else [f"stash_{k}_{i}" for i in range(len(shapes))]
                    )
                    rings = [
                        _state_variable((depth, capacity, *shape), dtype, name)
                        for shape, name in zip(shapes, names)
                    ]
                    self.stashes[k] = graph.shaped(k, rings)
        self.pending = {}  # per temporal stage sending whole errors: the shares it holds
        for k in graph.accumulators if graph.whole_errors and ticking else []:
            with device_scope(devices[k]):
                shape = (graph.holds(k), capacity, *input_shapes[k])
                self.pending[k] = _state_variable(shape, dtype, f"pending_{k}")
        self.ticks = _state_variable((), "int64", "ticks")
        self.primed = _state_variable((), "int32", "primed")
        self.seeds = (
            _state_variable((random_layers, 2), "int64", "seeds") if random_layers else None
        )

    @property
    def variables(self) -> list:
        """Every buffer: activations, errors, stashes, histories, pending shares, ticks,
        primed, seeds."""
        return list(self.named_variables.values())

    @property
    def named_variables(self) -> dict:
        """Every buffer by a stable name ("activation_0", "error_0", "stash_1", ...), in
        the order of `variables`: how a stream's checkpoint stores them."""
        named = {f"activation_{k}": v for k, v in zip(self.graph.buffered, self.activations)}
        named.update({f"error_{k}": v for k, v in zip(self.graph.buffered, self.errors)})
        for k, rings in enumerate(self.stashes):
            if rings is not None:  # a stage of several sources keeps a ring per source
                rings = self.graph.sources(k, rings)
                names = (
                    [f"stash_{k}"]
                    if len(rings) == 1
                    else [f"stash_{k}_{i}" for i in range(len(rings))]
                )
                named.update(zip(names, rings))
        named.update({f"history_{k}": v for k, v in self.histories.items()})
        named.update({f"pending_{k}": v for k, v in self.pending.items()})
        named.update(ticks=self.ticks, primed=self.primed)
        if self.seeds is not None:
            named["seeds"] = self.seeds
        return named

    def reset(self) -> None:
        """Clears every buffer: the next clip is primed afresh."""
        for v in self.variables:
            v.assign(tf.zeros(v.shape, v.dtype))

    def prime(self, stages: Sequence[keras.layers.Layer], frame: tf.Tensor) -> None:
        """Fills A_k with one synchronised forward pass of `frame`; zeroes the errors.

        A stage's stash is filled with its primed input: before the clip, the first one.
        """
        graph, devices = self.graph, self.graph.devices
        primed = pipeline.prime(stages, frame, True, graph)
        for buffer, x, k in zip(self.activations, primed, graph.buffered):
            with device_scope(devices[k]):
                buffer.assign(x)
        inputs = graph.stage_inputs(frame, primed)
        for k, rings in enumerate(self.stashes):
            if rings is not None:
                with device_scope(devices[k]):
                    for ring, x in zip(graph.sources(k, rings), graph.sources(k, inputs[k])):
                        ring.assign(tf.broadcast_to(tf.cast(x, ring.dtype)[None], ring.shape))
        for k, history in self.histories.items():
            size = graph.windows[k] + graph.stash[k]
            with device_scope(devices[k]):
                history.assign(tf.cast(windows.primed_history(inputs[k], size), history.dtype))
        for buffer in [*self.errors, *self.pending.values()]:
            buffer.assign(tf.zeros(buffer.shape, buffer.dtype))
        self.ticks.assign(0)
        self.primed.assign(1)

    def check_ticking(self) -> None:
        """Raises ValueError where the tick-by-tick loop would run without the stashes or
        histories it needs (buffers built for blocks of ticks)."""
        needs = [
            k
            for k in range(self.graph.num_stages)
            if self.graph.stash[k] or self.graph.windows[k] > 1
        ]
        if needs and not self.ticking:
            raise ValueError(
                "This clip runs tick by tick (its length is unknown when traced), but the "
                "model was built to run clips of a known length in blocks of ticks, so its "
                f"pipeline buffers keep no stash or window history for stages {needs}. Give "
                "every clip the same static length, or use pipeline_chunk=1."
            )


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
