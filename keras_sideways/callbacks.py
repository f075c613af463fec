"""Keras callbacks shipped with keras_sideways."""

from __future__ import annotations

import json
import os

import keras

from keras_sideways.fidelity import GradientFidelity

__all__ = ["BackupAndRestore", "GradientFidelity", "ResetPipeline"]


class ResetPipeline(keras.callbacks.Callback):
    """Clears a stateful SidewaysModel's pipeline buffers at every epoch start.

    With `stateful=True`, consecutive batches continue the same videos; a new epoch
    starts the videos again, so the buffers must not carry the end of the last one.

    Args:
        every_n_batches: also clear them every this many batches, where a new batch of
            videos begins: `data.consecutive_chunks(...).chunks_per_video`. None: only
            at epoch starts. Needs `steps_per_execution=1` (Keras calls batch hooks
            once per execution).
    """

    def __init__(self, every_n_batches: int | None = None):
        super().__init__()
        if every_n_batches is not None and (
            not isinstance(every_n_batches, int) or every_n_batches < 1
        ):
            raise ValueError(f"Expected every_n_batches >= 1 or None; got {every_n_batches!r}.")
        self.every_n_batches = every_n_batches

    def on_train_begin(self, logs=None):
        steps = int(getattr(self.model, "steps_per_execution", 1) or 1)
        if self.every_n_batches is not None and steps != 1:
            raise ValueError(
                "ResetPipeline(every_n_batches=...) resets between batches, which needs "
                f"compile(steps_per_execution=1); got steps_per_execution={steps}."
            )

    def on_epoch_begin(self, epoch, logs=None):
        self.model.reset_pipeline()

    def on_train_batch_begin(self, batch, logs=None):
        if self.every_n_batches and batch and batch % self.every_n_batches == 0:
            self.model.reset_pipeline()


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` whose backups are replaced atomically.

    Keras writes the backup in place, so a process killed mid-write leaves a corrupt
    file where the last good one stood. Here each file is written beside it and renamed
    into place (the weights first, then the epoch that says they are complete). The
    backup holds the weights, the optimizer state and a stateful model's pipeline buffers.
    """

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        staged_weights = os.path.join(self.backup_dir, "staging.weights.h5")
        staged_metadata = os.path.join(self.backup_dir, "staging_metadata.json")
        self.model.save_weights(staged_weights, overwrite=True)
        with open(staged_metadata, "w") as f:
            json.dump({"epoch": self._current_epoch, "batch": self._last_batch_seen}, f)
        os.replace(staged_weights, self._weights_path)
        os.replace(staged_metadata, self._training_metadata_path)
