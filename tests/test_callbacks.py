"""The callbacks of keras_sideways.callbacks: ResetPipeline, SetDataEpoch, atomic
BackupAndRestore and TrainingClock."""

import json
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import CLIP_LOSS, random_video, tiny_conv_stages

import keras_sideways as ks


def test_reset_pipeline_clears_a_stateful_stream_at_each_epoch_start():
    model = ks.SidewaysModel(tiny_conv_stages(), stateful=True)
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(True))
    video, labels = random_video(batch=2, time=5), np.array([0, 1])
    model.fit(video, labels, epochs=1, verbose=0)
    assert int(model.buffers.ticks.numpy()) == 5 and int(model.buffers.primed.numpy()) == 1
    reset = ks.callbacks.ResetPipeline()
    reset.set_model(model)
    reset.on_epoch_begin(1)
    assert int(model.buffers.ticks.numpy()) == 0 and int(model.buffers.primed.numpy()) == 0
    assert all(not np.any(a.numpy()) for a in model.buffers.activations)


def test_backups_are_replaced_atomically(tmp_path, monkeypatch):
    model = ks.SidewaysModel(tiny_conv_stages())
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    video, labels = random_video(batch=4, time=4), np.array([0, 1, 2, 0])
    model.build(video.shape)
    backup = ks.callbacks.BackupAndRestore(str(tmp_path), delete_checkpoint=False)
    model.fit(video, labels, epochs=1, verbose=0, callbacks=[backup])
    good = (tmp_path / "latest.weights.h5").read_bytes()

    def interrupted(*args, **kwargs):
        with open(args[0], "wb") as f:
            f.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(model, "save_weights", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model.fit(video, labels, epochs=2, verbose=0, callbacks=[backup])
    assert (tmp_path / "latest.weights.h5").read_bytes() == good
    assert json.loads((tmp_path / "training_metadata.json").read_text())["epoch"] == 1


class _FakeTime(keras.callbacks.Callback):
    """A clock that moves only when told: 1 s per training batch, 100 s per validation
    batch, 1000 s between epochs."""

    def __init__(self):
        super().__init__()
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def on_epoch_begin(self, epoch, logs=None):
        self.now += 1000.0

    def on_train_batch_begin(self, batch, logs=None):
        self.now += 1.0

    def on_test_batch_begin(self, batch, logs=None):
        self.now += 100.0


def test_training_clock_counts_training_batches_and_leaves_validation_out():
    model = ks.SidewaysModel(tiny_conv_stages(), mode="bp")
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(True))
    video, labels = random_video(batch=6, time=3), np.array([0, 1, 2, 0, 1, 2])
    fake = _FakeTime()
    clock = ks.callbacks.TrainingClock(timer=fake)
    # The fake clock's hooks run before the TrainingClock's: 3 batches of 2 clips an epoch.
    fit = dict(batch_size=2, validation_data=(video, labels), verbose=0, callbacks=[fake, clock])
    model.fit(video, labels, epochs=2, **fit)
    assert fake.now == 2 * (1000 + 3 + 3 * 100)  # validation did advance the fake clock
    assert clock.history == [3.0, 3.0] and clock.cumulative == [3.0, 6.0]
    model.fit(video, labels, epochs=1, **fit)  # a later fit adds to the same clock
    assert clock.cumulative == [3.0, 6.0, 9.0]


def test_set_data_epoch_makes_a_resumed_fit_draw_the_epochs_it_resumes():
    def digits():
        return ks.data.moving_digits(
            "train", clip_length=2, image_size=8, num_clips=8, batch_size=2
        )

    def dense_model():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(10)])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=CLIP_LOSS)
        model.build((None, 2, 8, 8, 1))
        return model

    straight, train = dense_model(), digits()
    after_first = []

    def keep_first(epoch, logs):
        if epoch == 0:
            after_first.extend(straight.get_weights())

    keep = keras.callbacks.LambdaCallback(on_epoch_end=keep_first)
    callbacks = [ks.callbacks.SetDataEpoch(train), keep]
    straight.fit(train, epochs=3, shuffle=False, verbose=0, callbacks=callbacks)

    def resumed(set_epoch):
        model, train = dense_model(), digits()
        model.set_weights(after_first)  # SGD has no state but the step count, unused here
        callbacks = [ks.callbacks.SetDataEpoch(train)] if set_epoch else []
        model.fit(train, epochs=3, initial_epoch=1, shuffle=False, verbose=0, callbacks=callbacks)
        return model.get_weights()

    for expected, actual in zip(straight.get_weights(), resumed(set_epoch=True)):
        np.testing.assert_array_equal(actual, expected)
    assert not all(
        np.array_equal(a, e) for a, e in zip(resumed(set_epoch=False), straight.get_weights())
    )


def test_set_data_epoch_warns_where_fits_epochs_are_not_passes_of_the_data():
    # With a steps_per_epoch shorter than the dataset, its passes span several of fit's
    # epochs, and a resumed run silently drew other data.
    train = ks.data.moving_digits("train", clip_length=2, image_size=8, num_clips=8, batch_size=2)
    model = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile(optimizer="sgd", loss=CLIP_LOSS)
    fit = dict(epochs=2, shuffle=False, verbose=0, callbacks=[ks.callbacks.SetDataEpoch(train)])
    with pytest.warns(UserWarning, match=r"fit runs 2 steps an epoch .* fewer than the 4 batches"):
        model.fit(train, steps_per_epoch=2, **fit)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(train, **fit)  # a pass an epoch
        model.fit(train, steps_per_epoch=4, **fit)


def test_set_data_epoch_takes_a_variable_and_refuses_a_dataset_without_one():
    epoch = tf.Variable(0, dtype=tf.int64)
    ks.callbacks.SetDataEpoch(epoch).on_epoch_begin(4)
    assert int(epoch.numpy()) == 4
    with pytest.raises(ValueError, match="needs a dataset with an `epoch` variable"):
        ks.callbacks.SetDataEpoch(tf.data.Dataset.range(3).map(lambda x: x))


def test_double_checkpoint_keeps_the_last_backup_which_a_corrupt_newest_falls_back_to(tmp_path):
    # The option was taken and ignored: no .bkp was written, so a corrupt newest backup
    # had nothing to fall back to.
    video, labels = random_video(batch=4, time=4), np.array([0, 1, 2, 0])

    def fitted(epochs, restore=False):
        model = ks.SidewaysModel(tiny_conv_stages())
        model.compile(optimizer="adam", loss=CLIP_LOSS)
        backup = ks.callbacks.BackupAndRestore(
            str(tmp_path), double_checkpoint=True, delete_checkpoint=False
        )
        history = model.fit(video, labels, epochs=epochs, verbose=0, callbacks=[backup])
        return model, history

    _, history = fitted(1)
    after_one = (tmp_path / "latest.weights.h5").read_bytes()
    fitted(2)  # resumes at epoch 1 and backs up epoch 2, keeping epoch 1's
    assert (tmp_path / "latest.weights.h5.bkp").read_bytes() == after_one
    assert json.loads((tmp_path / "training_metadata.json.bkp").read_text())["epoch"] == 1
    assert json.loads((tmp_path / "training_metadata.json").read_text())["epoch"] == 2
    assert not list(tmp_path.glob("*.staging"))

    (tmp_path / "latest.weights.h5").write_bytes(b"half a file")
    _, history = fitted(3)
    assert len(history.epoch) == 2  # restored epoch 1's backup: epochs 2 and 3 ran


def test_reset_pipeline_takes_any_integer_count():
    assert ks.callbacks.ResetPipeline(np.int64(2)).every_n_batches == 2
    for bad in (0, True, 1.5, "2"):
        with pytest.raises(ValueError, match="every_n_batches"):
            ks.callbacks.ResetPipeline(bad)
