"""Backprop, the baseline: the exact gradient of the mean per-frame loss."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from keras_sideways import clips
from keras_sideways import graph as graphs
from keras_sideways.engines import windows
from keras_sideways.engines.gradients import EngineResult, LossFn, dense, stage_weights
from keras_sideways.graph import StageGraph
from keras_sideways.placement import device_scope


def frame_outputs(
    stages: Sequence[keras.layers.Layer],
    video: tf.Tensor,
    training: bool = False,
    graph: StageGraph | None = None,
) -> tf.Tensor:
    """Every frame through every stage, as `graph` connects and places them (None: the
    chain of `stages`): the top's per-frame outputs [batch, time, ...]."""
    graph = graph or graphs.of_stages(stages)
    frames, outputs = clips.frames_to_batch(video), []
    for k, stage in enumerate(stages):
        x = graph.input_of(k, frames, outputs)
        with device_scope(graph.devices[k]):  # a temporal stage reads causal windows
            outputs.append(
                stage(windows.stage_input(x, graph.windows[k], video), training=training)
            )
    return clips.batch_to_frames(outputs[graph.top], video)


def frame_loss(
    loss_fn: LossFn, target: tf.Tensor, outputs: tf.Tensor, sample_weight: tf.Tensor | None
) -> tf.Tensor:
    """The mean loss over every frame of outputs [batch, time, ...]; weights are per clip."""
    time = tf.shape(outputs)[1]
    if sample_weight is not None:
        sample_weight = tf.repeat(sample_weight, time, axis=0)
    return loss_fn(clips.per_frame(target, time), clips.frames_to_batch(outputs), sample_weight)


def bp_gradients(
    stages: Sequence[keras.layers.Layer],
    video: tf.Tensor,
    target: tf.Tensor,
    loss_fn: LossFn,
    sample_weight: tf.Tensor | None = None,
    graph: StageGraph | None = None,
) -> EngineResult:
    """The BP gradient of the mean per-frame loss of one clip batch, per stage."""
    weights = stage_weights(stages)
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(weights)
        outputs = frame_outputs(stages, video, training=True, graph=graph)
        loss = frame_loss(loss_fn, target, outputs, sample_weight)
    grads = [dense(g, w) for g, w in zip(tape.gradient(loss, weights), weights)]
    # A variable shared by several stages: the tape gives each of its places the whole
    # gradient, and `in_variable_order` sums the stages' gradients, so only its first
    # place keeps it (the pseudo-gradient engines give each stage its own share).
    seen = set()
    for k, stage in enumerate(stages):
        for i, variable in enumerate(stage.trainable_variables):
            if id(variable) in seen:
                grads[k][i] = tf.zeros_like(grads[k][i])
            seen.add(id(variable))
    return EngineResult(
        gradients=grads,
        loss=loss,
        outputs=outputs,
        targets=target,
    )
