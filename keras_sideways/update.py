"""The guarded update of a train step: loss scaling, the delay-aware rate, non-finite rollback.

Plain functions of a `SidewaysModel` (its optimizer, trainable variables, stages and
buffers), which `SidewaysTrainer.train_step` calls once per step.
"""

from __future__ import annotations

import warnings

import keras
import tensorflow as tf

from keras_sideways import delays, replicas
from keras_sideways.engines.gradients import stage_variable_indices


def loss_scale(optimizer) -> tf.Tensor | None:
    """The factor `optimizer` expects the loss scaled by: a LossScaleOptimizer's dynamic
    scale (mixed_float16) or a `loss_scale_factor`; None without scaling (or optimizer)."""
    if not dynamic_loss_scale(optimizer) and getattr(optimizer, "loss_scale_factor", None) is None:
        return None
    return tf.cast(optimizer.scale_loss(tf.constant(1.0)), tf.float32)


def dynamic_loss_scale(optimizer) -> bool:
    """True when `optimizer` scales the loss dynamically (and skips overflows)."""
    return isinstance(optimizer, keras.optimizers.LossScaleOptimizer)


def delay_scales(model) -> list | None:
    """Per trainable variable of `model`, the delay-aware scale of its update (None:
    uniform): `delays.stage_scales` of its stage's frame gap at the optimizer's step."""
    if model.mode != "sideways" or not model.delay_warmup_steps:
        return None
    gaps = model.graph.gaps()
    per_stage = delays.stage_scales(gaps, model.optimizer.iterations, model.delay_warmup_steps)
    scales = [None] * len(model.trainable_variables)
    positions = stage_variable_indices(model.trainable_variables, model.stages)
    for k, indices in enumerate(positions):
        for i in indices:
            if gaps[k] and scales[i] is None:  # a shared variable: its first stage's
                scales[i] = per_stage[k]
    return scales


def guarded_update(model, loss, grads, video) -> tuple[tf.Tensor, tf.Tensor]:
    """Applies `grads` to `model` unless the step must be skipped; returns (kept, overflow).

    A batch with a non-finite loss or gradient (on any replica) is skipped on every
    replica, and an update that makes a weight non-finite (a diverging learning rate)
    is rolled back: `kept` is False. Under dynamic loss scaling (a
    LossScaleOptimizer), non-finite gradients from a finite video and loss are the
    scale's fault, not the batch's: they go to the optimizer, which skips the update
    and halves its scale; `kept` and `overflow` are True. A non-finite video or loss
    is skipped as above and leaves the scale alone.
    """
    optimizer = model.optimizer
    finite_loss = tf.reduce_all(tf.math.is_finite(loss))
    if not model.trainable_variables:  # all frozen: nothing to update; Keras warns so too
        warnings.warn("The model does not have any trainable weights.", stacklevel=2)
        return replicas.on_all_replicas(finite_loss), tf.constant(False)
    finite_grads = replicas.on_all_replicas(
        tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
    )
    if dynamic_loss_scale(optimizer):
        finite_video = tf.reduce_all(tf.math.is_finite(video))
        finite = replicas.on_all_replicas(tf.logical_and(finite_loss, finite_video))
    else:
        finite_loss = replicas.on_all_replicas(finite_loss)
        finite = tf.logical_and(finite_loss, finite_grads)
    weights = model.trainable_variables

    def apply(grads):
        optimizer.apply_gradients(zip(grads, weights))
        return tf.constant(True)

    applied = replicas.apply_if(
        finite, apply, grads, [*weights, *optimizer.variables], weights, delay_scales(model)
    )
    kept = tf.logical_and(finite, applied)
    return kept, tf.logical_and(kept, tf.logical_not(finite_grads))


def rescale_errors(model, ratio: tf.Tensor) -> None:
    """Brings a stream's error buffers to the loss scale of the next step (`ratio`: new
    over old); an overflowed error, which that step would pass on, becomes zero."""
    if model.mode != "sideways" or model.resolved_engine != "pipeline":
        return
    for error in model.buffers.errors:
        value = tf.cast(error.value, tf.float32)
        kept = tf.where(tf.math.is_finite(value), value * ratio, 0.0)
        error.assign(tf.cast(kept, error.dtype))
