"""Run in a subprocess by test_distributed.py: training that can be killed and resumed.

    python resume_probe.py WORKDIR OUT.npz [--stall-at EPOCH BATCH] [--stateful]

Trains a tiny model for 3 epochs with keras_sideways' BackupAndRestore in WORKDIR. With
--stall-at, it writes WORKDIR/stalled at that batch and waits there to be killed.
Writes every weight, the pipeline buffers and the optimizer's variables to OUT.npz.
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from conftest import random_video, tiny_conv_stages  # noqa: E402

import keras_sideways as ks  # noqa: E402

workdir, out = sys.argv[1], sys.argv[2]
stall = None
if "--stall-at" in sys.argv:
    i = sys.argv.index("--stall-at")
    stall = (int(sys.argv[i + 1]), int(sys.argv[i + 2]))
stateful = "--stateful" in sys.argv


class Stall(keras.callbacks.Callback):
    """Stops the process mid-epoch (as if killed there): marks the spot, then waits."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == stall:
            with open(os.path.join(workdir, "stalled"), "w") as f:
                f.write("ready")
            time.sleep(600)


keras.utils.set_random_seed(0)
video = random_video(batch=16, time=6, seed=21)
labels = np.arange(16) % 3
model = ks.SidewaysModel(tiny_conv_stages(num_stages=4), stateful=stateful)
model.compile(
    optimizer=keras.optimizers.Adam(0.01),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
)
model.build((4, 6, 8, 8, 1))
callbacks = [ks.callbacks.BackupAndRestore(os.path.join(workdir, "backup"))]
if stateful:
    callbacks.append(ks.callbacks.ResetPipeline())
if stall:
    callbacks.append(Stall())
model.fit(video, labels, batch_size=4, epochs=3, shuffle=False, verbose=0, callbacks=callbacks)
state = {f"w{i}": v.numpy() for i, v in enumerate(model.weights)}
state.update({f"buffer{i}": v.numpy() for i, v in enumerate(model.buffers.variables)})
state.update({f"opt{i}": v.numpy() for i, v in enumerate(model.optimizer.variables)})
np.savez(out, **state)
print("done")
