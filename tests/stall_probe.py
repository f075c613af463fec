"""Run in a subprocess by test_train_resume.py: the training command, stalled mid-epoch.

    python stall_probe.py EPOCH BATCH MARKER [train.train flags...]

Runs `python -m train.train [flags...]` as `-m` would, with one callback added to `fit`:
after batch BATCH of epoch EPOCH it writes the file MARKER and waits there to be killed,
so that the test's SIGKILL lands in the middle of that epoch, never at its edge.
"""

import os
import runpy
import sys
import time

import keras

epoch_at, batch_at, marker = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]


class Stall(keras.callbacks.Callback):
    """Marks the spot after the given batch, then waits to be killed."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == (epoch_at, batch_at):
            with open(marker, "w") as f:
                f.write("stalled")
            time.sleep(600)


fit = keras.Model.fit


def stalling_fit(
    self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None, **kwargs
):
    # Keras' own signature: SidewaysModel.fit passes these on by position.
    stalled = [*(callbacks or []), Stall()]
    return fit(self, x, y, batch_size, epochs, verbose, stalled, **kwargs)


keras.Model.fit = stalling_fit
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.argv = ["train.train", *sys.argv[4:]]
runpy.run_module("train.train", run_name="__main__", alter_sys=True)
