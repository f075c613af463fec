"""What the probe scripts share: `python -m train.train` run in this process, with one
callback added to every `fit` (tests/stall_probe.py, tests/interrupt_probe.py)."""

import os
import runpy
import sys

import keras


def run_train_with(callback: keras.callbacks.Callback, argv: list[str]) -> None:
    """Runs `python -m train.train *argv` as `-m` would, `callback` added to `fit`'s."""
    fit = keras.Model.fit

    def fit_with_callback(
        self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None, **kwargs
    ):
        # Keras' own signature: SidewaysModel.fit passes these on by position.
        added = [*(callbacks or []), callback]
        return fit(self, x, y, batch_size, epochs, verbose, added, **kwargs)

    keras.Model.fit = fit_with_callback
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.argv = ["train.train", *argv]
    runpy.run_module("train.train", run_name="__main__", alter_sys=True)
