"""Run in a subprocess by test_train_resume.py: the training command, stalled mid-epoch.

    python stall_probe.py EPOCH BATCH MARKER [train.train flags...]

Runs `python -m train.train [flags...]` as `-m` would, with one callback added to `fit`:
after batch BATCH of epoch EPOCH it writes the file MARKER and waits there to be killed,
so that the test's SIGKILL lands in the middle of that epoch, never at its edge.
"""

import sys
import time

import keras
from probe_command import run_train_with

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


run_train_with(Stall(), sys.argv[4:])
