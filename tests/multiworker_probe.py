"""Run in a subprocess by test_distributed.py: one worker of a MultiWorkerMirroredStrategy.

    python multiworker_probe.py INDEX PORT0 PORT1 OUT.npz

Both workers train on their own shard of the same dataset and save their final weights.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
index, ports, out = int(sys.argv[1]), sys.argv[2:4], sys.argv[4]
os.environ["TF_CONFIG"] = json.dumps(
    {
        "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
        "task": {"type": "worker", "index": index},
    }
)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from conftest import random_video, tiny_conv_stages  # noqa: E402

import keras_sideways as ks  # noqa: E402

strategy = tf.distribute.MultiWorkerMirroredStrategy()
video = random_video(batch=8, time=5, seed=31)
labels = np.arange(8) % 3
options = tf.data.Options()
options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
dataset = (
    tf.data.Dataset.from_tensor_slices((video, labels))
    .shard(2, index)  # each worker reads its own shard
    .batch(2, drop_remainder=True)
    .with_options(options)
)
with strategy.scope():
    keras.utils.set_random_seed(0)
    model = ks.SidewaysModel(tiny_conv_stages(num_stages=4))
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
history = model.fit(dataset, epochs=2, verbose=0)
np.savez(out, *[v.numpy() for v in model.trainable_variables])
print(json.dumps({"loss": history.history["loss"], "replicas": strategy.num_replicas_in_sync}))
