"""Run in a subprocess by test_training.py: the training command, sent Ctrl-C at a bad spot.

    python interrupt_probe.py [train.train flags...]

Runs `python -m train.train [flags...]` as `-m` would, with one callback added to `fit`:
after the first training batch it drops an object whose `__del__` sends the process SIGINT
and runs on, so that the signal's KeyboardInterrupt is raised inside `__del__`, where
Python prints it as "Exception ignored in: ..." with a traceback and drops it. That is
where a Ctrl-C that lands in TensorFlow's clean-up (an iterator's, a weakref callback's)
goes: at random, so this probe puts it there every time.
"""

import os
import signal
import sys

import keras
from probe_command import run_train_with


class _SignalsOnDeletion:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler runs between these bytecodes, in __del__
            pass


class InterruptInDel(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if batch == 0 and not getattr(self, "done", False):
            self.done = True
            _SignalsOnDeletion()  # deleted at once


run_train_with(InterruptInDel(), sys.argv[1:])
