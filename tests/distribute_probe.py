"""Run in a subprocess by test_distributed.py: MirroredStrategy on 2 logical CPU devices.

Prints one JSON line: for each mode and engine, the largest difference between the weights
after one step of a MirroredStrategy model and of a single-device model on the same
global batch (of 4, and of 3: split unevenly), and the skipped-update count of a poisoned
batch under the strategy.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from conftest import random_video, tiny_conv_stages  # noqa: E402

import keras_sideways as ks  # noqa: E402

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def make(mode, engine, strategy=None):
    scope = strategy.scope() if strategy else tf.distribute.get_strategy().scope()
    with scope:
        keras.utils.set_random_seed(0)
        model = ks.SidewaysModel(tiny_conv_stages(num_stages=4), mode=mode, engine=engine)
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=LOSS, metrics=["accuracy"])
    return model


def one_step(model, video, labels):
    dataset = tf.data.Dataset.from_tensors((video, labels))
    history = model.fit(dataset, epochs=1, verbose=0)
    return [v.numpy() for v in model.trainable_variables], history.history


video = random_video(batch=4, time=6, seed=11)
labels = np.array([0, 1, 2, 1])
strategy = tf.distribute.MirroredStrategy(["/CPU:0", "/CPU:1"])
report = {"replicas": strategy.num_replicas_in_sync, "runs": {}}
for mode, engine in [("sideways", "batched"), ("sideways", "pipeline"), ("bp", "auto")]:
    single_model = make(mode, engine)
    single_model.build(video.shape)
    initial = [v.numpy() for v in single_model.trainable_variables]  # the same seed for both
    single, single_history = one_step(single_model, video, labels)
    mirrored_model = make(mode, engine, strategy)
    mirrored, history = one_step(mirrored_model, video, labels)
    poisoned = video.copy()
    poisoned[3, 2, 1, 1, 0] = np.nan
    after, poisoned_history = one_step(mirrored_model, poisoned, labels)
    # A global batch that the replicas split unevenly (2 and 1): the update was the mean
    # of the replicas' means, 4.5 times off one device's.
    uneven_single, _ = one_step(make(mode, engine), video[:3], labels[:3])
    uneven, uneven_history = one_step(make(mode, engine, strategy), video[:3], labels[:3])
    report["runs"][f"{mode}-{engine}"] = {
        "max_difference": max(float(np.abs(a - b).max()) for a, b in zip(single, mirrored)),
        "update_size": max(float(np.abs(a - b).max()) for a, b in zip(initial, mirrored)),
        "loss": history["loss"][0],
        "single_loss": single_history["loss"][0],
        "evaluate": mirrored_model.evaluate(video, labels, verbose=0, return_dict=True)["loss"],
        "single_evaluate": single_model.evaluate(video, labels, verbose=0, return_dict=True)[
            "loss"
        ],
        "skipped_after_nan": poisoned_history["skipped_updates"][0],
        "unchanged_after_nan": all(np.array_equal(a, b) for a, b in zip(mirrored, after)),
        "uneven_difference": max(float(np.abs(a - b).max()) for a, b in zip(uneven_single, uneven)),
        "uneven_update_size": max(
            float(np.abs(a - b).max()) for a, b in zip(initial, uneven_single)
        ),
    }
with strategy.scope():
    placed = ks.SidewaysModel(
        tiny_conv_stages(num_stages=4), placement=["/CPU:0"] * 2 + ["/CPU:1"] * 2
    )
try:
    placed.build(video.shape)
    report["placement_error"] = None
except ValueError as error:
    report["placement_error"] = str(error)
print(json.dumps(report))
