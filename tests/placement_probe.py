"""Run in a subprocess by test_placement.py: stage placement on logical CPU devices.

Prints one JSON line: the devices of each stage's Conv2D/MatMul ops inside the traced
pipeline, and the largest difference from an unplaced run of the same weights. With a path
as its argument, it also saves the placed model there (`model.save`) with its outputs on
the probe's video beside it (`.npy`), for a process with one device to load.
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

PLACEMENT = ["/CPU:0", "/CPU:0", "/CPU:1", "/CPU:1"]


def stages():
    """Four stages whose layer names start with s<k>_, so traced ops can be told apart."""
    L = keras.layers
    return [
        L.Conv2D(4, 3, padding="same", activation="tanh", name="s0_conv"),
        keras.Sequential(
            [L.Conv2D(4, 3, padding="same", name="s1_conv"), L.MaxPooling2D()], name="s1_block"
        ),
        keras.Sequential(
            [L.Conv2D(4, 3, padding="same", name="s2_conv"), L.GlobalAveragePooling2D()],
            name="s2_block",
        ),
        L.Dense(3, name="s3_dense"),
    ]


def make(placement, engine="pipeline"):
    keras.utils.set_random_seed(0)
    model = ks.SidewaysModel(stages(), engine=engine, placement=placement)
    model.compile(
        optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    return model


def op_devices(model, video, labels):
    """Per stage, the devices of its Conv2D and MatMul ops (forward and backward) as traced."""
    fn = model._gradient_fns["sideways"]
    graph_def = fn.get_concrete_function(
        tf.constant(video), tf.constant(labels), None
    ).graph.as_graph_def()
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes += list(function.node_def)
    found = [set() for _ in model.stages]
    for node in nodes:
        if node.op in ("Conv2D", "MatMul", "Conv2DBackpropFilter", "Conv2DBackpropInput"):
            for k in range(len(found)):
                if any(scope.startswith(f"s{k}_") for scope in node.name.split("/")):
                    found[k].add(node.device)
    return [sorted(devices) for devices in found]


video = random_video(batch=2, time=6, seed=3)
labels = np.array([0, 2])
placed = make(PLACEMENT)
plain = make(None)
placed_grads = placed.compute_gradients(video, labels)
plain_grads = plain.compute_gradients(video, labels)
if len(sys.argv) > 1:
    placed.save(sys.argv[1])
    np.save(sys.argv[1] + ".npy", placed.predict(video, verbose=0))
auto = make("auto")
auto.build(video.shape)
print(
    json.dumps(
        {
            "engine": placed.resolved_engine,
            "ops": op_devices(placed, video, labels),
            "weight_devices": [v.value.device for v in placed.trainable_variables],
            "max_difference": max(
                float(np.abs(a - b).max()) for a, b in zip(placed_grads, plain_grads)
            ),
            "auto": auto.devices,
            "auto_engine": auto.resolved_engine,
        }
    )
)
