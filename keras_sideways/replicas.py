"""What a train step needs from tf.distribute: agreement, guarded updates, reducible logs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf


def on_all_replicas(flag: tf.Tensor) -> tf.Tensor:
    """True where `flag` holds on every replica of the current tf.distribute strategy."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return flag
    failures = context.all_reduce("SUM", 1.0 - tf.cast(flag, tf.float32))
    return tf.equal(failures, 0.0)


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


def _guarded(apply, guarded: Sequence, checked: Sequence):
    """`apply`, undone when it leaves a `checked` variable non-finite; returns True if kept."""

    def update(grads):
        saved = [tf.identity(v.value if hasattr(v, "value") else v) for v in guarded]
        with tf.control_dependencies(saved):
            applied = apply(grads)
        with tf.control_dependencies([applied]):
            finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in checked])

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
) -> tf.Tensor:
    """Runs `apply(grads)` (an optimizer update) when `finite`, the same on every replica.

    An update that leaves any of `checked` (the weights) non-finite is rolled back: every
    variable of `guarded` (the weights and the optimizer's state) gets its value of
    before. Returns True where the update was applied and kept.
    """
    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        update = _guarded(apply, guarded, checked)
        return tf.cond(finite, lambda: update(grads), lambda: tf.constant(False))

    # tf.distribute cannot synchronise (the optimizer's merge_call) inside a tf.cond in a
    # replica context: decide in the cross-replica context, as Keras' LossScaleOptimizer
    # does. The gradients travel as merge_call arguments, so each replica applies its own;
    # the check and any rollback see (and set) every replica's copy of the variables.
    def cross_replica(strategy, finite, grads):
        finite = strategy.experimental_local_results(finite)[0]

        def apply_everywhere(grads):
            strategy.extended.call_for_each_replica(apply, args=(grads,))
            return tf.constant(True)

        update = _guarded(apply_everywhere, guarded, checked)
        return tf.cond(finite, lambda: update(grads), lambda: tf.constant(False))

    return tf.distribute.get_replica_context().merge_call(cross_replica, args=(finite, grads))
