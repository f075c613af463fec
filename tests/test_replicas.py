"""The tf.distribute plumbing of a train step, without and with a strategy."""

import numpy as np
import tensorflow as tf

from keras_sideways import replicas


def counting_update():
    counter = tf.Variable(0.0)

    def apply(grads):
        counter.assign_add(tf.add_n(grads))
        return tf.constant(True)

    return counter, apply


def test_updates_happen_only_when_finite():
    counter, apply = counting_update()
    replicas.apply_if(tf.constant(False), apply, [tf.constant(5.0)])
    assert float(counter.numpy()) == 0.0
    replicas.apply_if(tf.constant(True), apply, [tf.constant(5.0)])
    assert float(counter.numpy()) == 5.0


def test_inside_a_strategy_the_decision_is_taken_once_for_every_replica():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        counter, apply = counting_update()

    @tf.function
    def step(finite):
        def replica_fn():
            agreed = replicas.on_all_replicas(finite)
            replicas.apply_if(agreed, apply, [tf.constant(2.0)])

        strategy.run(replica_fn)

    step(tf.constant(True))
    step(tf.constant(False))
    assert float(counter.numpy()) == 2.0


def test_logs_and_values_pass_through_without_multi_worker():
    logs = {"loss": tf.constant(1.5)}
    assert replicas.for_multi_worker(logs) is logs
    value = tf.constant([1.0])
    assert replicas.first_replica_value(tf.distribute.get_strategy(), value) is value
    np.testing.assert_array_equal(replicas.on_all_replicas(tf.constant(True)), True)
