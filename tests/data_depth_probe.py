"""Run in a subprocess by test_distributed.py: 2 replicas x 2 stages on 4 logical CPUs.

Prints one JSON line: for Sideways and BP, the largest relative difference between the
weights after one step of a MirroredStrategy model whose replicas each place their two
stages on two devices, and of the same model on one device, on the same global batch;
and the devices the traced step ran each replica's stage convolutions on.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 4)

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from conftest import random_video  # noqa: E402

import keras_sideways as ks  # noqa: E402

REPLICAS = [["/CPU:0", "/CPU:1"], ["/CPU:2", "/CPU:3"]]  # replica r: stage 0, stage 1
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def stages():
    """Two stages whose layer names start with s<k>_, so traced ops can be told apart."""
    L = keras.layers
    return [
        keras.Sequential(
            [
                L.Conv2D(4, 3, padding="same", activation="tanh", name="s0_conv"),
                L.AveragePooling2D(2),
            ],
            name="s0_block",
        ),
        keras.Sequential(
            [
                L.Conv2D(4, 3, padding="same", activation="tanh", name="s1_conv"),
                L.GlobalAveragePooling2D(),
                L.Dense(3, name="s1_dense"),
            ],
            name="s1_block",
        ),
    ]


def make(mode, placement=None, strategy=None):
    with (strategy or tf.distribute.get_strategy()).scope():
        keras.utils.set_random_seed(0)
        model = ks.SidewaysModel(stages(), mode=mode, placement=placement, pipeline_chunk=3)
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=LOSS)
    return model


def conv_devices(model, strategy, video, labels):
    """The (stage, replica, device) of the Conv2D ops of a step's gradients, as traced."""

    @tf.function
    def step(video, labels):
        def gradients(video, labels):
            return model._loss_and_gradients(video, labels, None, model.mode)[1]

        return strategy.run(gradients, args=(video, labels))

    graph_def = step.get_concrete_function(video, labels).graph.as_graph_def()
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes += list(function.node_def)
    found = set()
    for node in nodes:
        if node.op == "Conv2D":
            stage = 0 if "s0_conv" in node.name else 1
            replica = 1 if node.name.startswith("replica_1/") else 0
            found.add((stage, replica, "/CPU:" + node.device.rsplit(":", 1)[-1]))
    return sorted(found)


video = random_video(batch=4, time=6, seed=11)
labels = np.array([0, 1, 2, 1])
data = tf.data.Dataset.from_tensors((video, labels))  # one global batch: one step
strategy = tf.distribute.MirroredStrategy([r[0] for r in REPLICAS])
report = {}
for mode in ("sideways", "bp"):
    single = make(mode)
    single.build(video.shape)
    initial = [v.numpy() for v in single.trainable_variables]
    single.fit(data, verbose=0)
    depth_data = make(mode, REPLICAS, strategy)
    depth_data.fit(data, verbose=0)
    a = [v.numpy() for v in depth_data.trainable_variables]
    b = [v.numpy() for v in single.trainable_variables]
    report[mode] = {
        "engine": depth_data.resolved_engine,
        "rel_error": max(float(np.linalg.norm(x - y) / np.linalg.norm(y)) for x, y in zip(a, b)),
        "update": max(float(np.abs(x - y).max()) for x, y in zip(b, initial)),
        "ops": conv_devices(depth_data, strategy, tf.constant(video[:2]), tf.constant(labels[:2])),
    }
print(json.dumps(report))
