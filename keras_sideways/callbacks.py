"""Keras callbacks shipped with keras_sideways."""

from __future__ import annotations

import keras


class ResetPipeline(keras.callbacks.Callback):
    """Clears a stateful SidewaysModel's pipeline buffers at the start of every epoch.

    With `stateful=True`, consecutive batches continue the same videos; a new epoch
    starts the videos again, so the buffers must not carry the end of the last one.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self.model.reset_pipeline()
