"""What a train step needs from tf.distribute: agreement, guarded updates, reducible logs."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import tensorflow as tf


def on_all_replicas(flag: tf.Tensor) -> tf.Tensor:
    """True where `flag` holds on every replica of the current tf.distribute strategy."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return flag
    failures = context.all_reduce("SUM", 1.0 - tf.cast(flag, tf.float32))
    return tf.equal(failures, 0.0)


def batch_share(video: tf.Tensor) -> tf.Tensor | None:
    """This replica's share of the global batch times the replicas, `n_r R / N`; None with
    one replica.

    Keras divides each replica's mean loss by the replicas R, so that their gradients sum
    to the mean of the replicas' means: the global batch's mean only where every replica
    holds as many clips. Weighed by this share, they sum to the mean over the global batch
    (a batch of 3 on 2 replicas, split 2 and 1, gave an update 4.5 times off one device's).
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    local = tf.cast(tf.shape(video)[0], tf.float32)
    total = context.all_reduce("SUM", local)
    return local * float(context.num_replicas_in_sync) / total


def for_multi_worker(logs: dict) -> dict:
    """Step results as Keras can reduce them across workers.

    Under MultiWorkerMirroredStrategy, Keras 3 reduces each per-replica result with
    `strategy.reduce("MEAN", value, axis=0)`, which needs a batch axis: scalars get one.
    """
    strategy = tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return logs
    return {name: tf.reshape(value, [1]) for name, value in logs.items()}


def first_replica_value(strategy, value):
    """The first local replica's part of a distributed value (the value itself otherwise)."""
    if isinstance(value, tf.distribute.DistributedValues):
        return strategy.experimental_local_results(value)[0]
    return value


def beside(variable):
    """`tf.device` of `variable`'s own device (a stage's, perhaps on another task), so that
    the update's copies and checks of it stay there; no scope for a distributed variable,
    whose copies the strategy places."""
    value = getattr(variable, "value", variable)
    device = getattr(value, "device", None)
    if isinstance(value, tf.distribute.DistributedValues) or not device:
        return contextlib.nullcontext()
    return tf.device(device)


def _guarded(apply, guarded: Sequence, checked: Sequence, scales: Sequence | None = None):
    """`apply`, undone when it leaves a `checked` variable non-finite; returns True if kept.

    With `scales` (aligned with `checked`; None where 1), the update of each checked
    variable is multiplied by its scale before the check.
    """

    def update(grads):
        saved = []
        for v in guarded:
            with beside(v):
                saved.append(tf.identity(v.value if hasattr(v, "value") else v))
        with tf.control_dependencies(saved):
            applied = apply(grads)
        if scales is not None:
            before = {id(v): s for v, s in zip(guarded, saved)}
            scaled = []
            for v, scale in zip(checked, scales):
                if scale is not None:
                    with beside(v), tf.control_dependencies([applied]):
                        scaled.append(v.assign(before[id(v)] + scale * (v.value - before[id(v)])))
            applied = tf.group(scaled) if scaled else applied
        finite = []
        for v in checked:  # one bool per weight crosses devices, not the weight
            with beside(v), tf.control_dependencies([applied]):
                finite.append(tf.reduce_all(tf.math.is_finite(v)))
        finite = tf.reduce_all(finite)

        def restore():
            with tf.control_dependencies([v.assign(s) for v, s in zip(guarded, saved)]):
                return tf.constant(False)

        return tf.cond(finite, lambda: tf.constant(True), restore)

    return update


def apply_if(
    finite: tf.Tensor,
    apply: Callable[[list], tf.Tensor],
    grads: list,
    guarded: Sequence = (),
    checked: Sequence = (),
    scales: Sequence | None = None,
) -> tf.Tensor:
    """Runs `apply(grads)` (an optimizer update) when `finite`, the same on every replica.

    `scales` (optional, aligned with `checked`, None where 1) multiplies each checked
    variable's update: a per-variable learning rate that holds for any optimizer. An
    update that leaves any of `checked` (the weights) non-finite is rolled back: every
    variable of `guarded` (the weights and the optimizer's state, `checked` among them)
    gets its value of before. Returns True where the update was applied and kept.
    """
    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        update = _guarded(apply, guarded, checked, scales)
        return tf.cond(finite, lambda: update(grads), lambda: tf.constant(False))

    # tf.distribute cannot synchronise (the optimizer's merge_call) inside a tf.cond in a
    # replica context: decide in the cross-replica context, as Keras' LossScaleOptimizer
    # does. The gradients travel as merge_call arguments, so each replica applies its own;
    # the check and any rollback see (and set) every replica's copy of the variables.
    def cross_replica(strategy, finite, grads, scales):
        finite = first_replica_value(strategy, finite)
        if scales is not None:
            scales = [first_replica_value(strategy, scale) for scale in scales]

        def apply_everywhere(grads):
            strategy.extended.call_for_each_replica(apply, args=(grads,))
            return tf.constant(True)

        update = _guarded(apply_everywhere, guarded, checked, scales)
        return tf.cond(finite, lambda: update(grads), lambda: tf.constant(False))

    return tf.distribute.get_replica_context().merge_call(
        cross_replica, args=(finite, grads, scales)
    )
