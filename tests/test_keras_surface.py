"""The private Keras hooks keras_sideways relies on, each checked to be there and to behave
as the library expects: a Keras release that changes one fails here, naming it.

Kept (no public way): `Model._maybe_symbolic_build` / `_symbolic_build` (build on the
first real batch, trainer.py), `Model._compile_loss` (the compiled loss without the
regularisers, per tick, trainer.py), `Layer._flatten_layers` (every sublayer,
engines/tick_layers.sublayers), `ProgbarLogger._update_progbar` / `_finalize_progbar`
(callbacks.ProgbarLogger), `BackupAndRestore._save_model` and its paths and counters
(callbacks.BackupAndRestore), `TensorBoard._global_train_batch` (train.recipe._TensorBoard), and
an instance's own `call` / seed generator taking precedence over its class's
(engines/tick_layers.TickLayers.patched), a KerasTensor's `_keras_history` and a layer's
`_inbound_nodes` (walking a Functional model's graph, cutting._parents). Replaced by
public ones: `_loss_tracker` (the
model's own `loss_tracker`), `SpatialDropout._get_noise_shape` (from `data_format`).
"""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_sideways as ks
from keras_sideways.engines import tick_layers

VERSION = keras.__version__


def changed(hook: str, what: str) -> str:
    return (
        f"Keras {VERSION} changed the private hook {hook}, which keras_sideways relies on: "
        f"{what}. Adapt the library (see tests/test_keras_surface.py) or bound keras in "
        "setup.cfg below this version."
    )


def parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


def tiny_model(**kwargs) -> ks.SidewaysModel:
    stages = [
        keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(3)]),
        keras.layers.Dense(2),
    ]
    model = ks.SidewaysModel(stages, **kwargs)
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


VIDEO = np.linspace(0, 1, 2 * 4 * 2 * 2).reshape(2, 4, 2, 2, 1).astype("float32")
LABELS = np.array([0, 1])


def test_fit_builds_through_maybe_symbolic_build(monkeypatch):
    hook = "keras.Model._maybe_symbolic_build"
    assert parameters(keras.Model._maybe_symbolic_build)[1:] == ["iterator", "data_batch"], changed(
        hook, "its parameters are no longer (iterator, data_batch)"
    )
    assert parameters(keras.Model._symbolic_build)[1:] == ["iterator", "data_batch"], changed(
        "keras.Model._symbolic_build", "its parameters are no longer (iterator, data_batch)"
    )
    seen = []
    original = ks.SidewaysModel._maybe_symbolic_build

    def recording(self, iterator=None, data_batch=None):
        seen.append(data_batch is not None or iterator is not None)
        return original(self, iterator=iterator, data_batch=data_batch)

    monkeypatch.setattr(ks.SidewaysModel, "_maybe_symbolic_build", recording)
    model = tiny_model()
    model.fit(VIDEO, LABELS, batch_size=2, verbose=0)
    assert seen and all(seen), changed(hook, "fit no longer calls it with its data")
    assert model.buffers.capacity == 2, changed(hook, "the model was not built on a real batch")


def test_compile_loss_is_the_compiled_loss_without_regularisers():
    hook = "keras.Model._compile_loss"
    model = tiny_model()
    assert callable(getattr(model, "_compile_loss", None)), changed(hook, "gone after compile")
    y, p = tf.constant([0, 1]), tf.constant([[2.0, -1.0], [0.5, 0.25]])
    weight = tf.constant([1.0, 3.0])
    expected = keras.Model.compute_loss(model, None, y, p, weight)  # no regularisers here
    np.testing.assert_allclose(
        model._compile_loss(y, p, weight),
        expected,
        rtol=1e-6,
        err_msg=changed(hook, "it no longer computes the compiled loss"),
    )


def test_flatten_layers_lists_nested_layers_in_order():
    hook = "keras.layers.Layer._flatten_layers"
    inner = keras.layers.Dense(2, name="inner")
    block = keras.Sequential([keras.layers.Dense(3, name="first"), keras.Sequential([inner])])
    try:
        found = block._flatten_layers(include_self=True, recursive=True)
    except (AttributeError, TypeError) as error:
        pytest.fail(changed(hook, f"cannot be called with (include_self, recursive): {error}"))
    assert found[0] is block and inner in found, changed(hook, "nested layers are missing")
    assert tick_layers.sublayers([block])[0] is block


def test_own_loss_tracker_replaces_keras_loss():
    model = tiny_model()
    history = model.fit(VIDEO, LABELS, batch_size=2, verbose=0)
    assert model.metrics_names.count("loss") == 1, changed(
        "keras.Model._loss_tracker (named 'loss')",
        f"the model lists {model.metrics_names}; SidewaysModel.metrics leaves out Keras' own "
        "loss tracker by its name",
    )
    assert model.metrics_names[0] == "loss"
    np.testing.assert_allclose(history.history["loss"][-1], model.loss_tracker.result())


def test_progbar_logger_draws_through_its_two_hooks(capsys):
    calls = []

    class Recording(keras.callbacks.ProgbarLogger):
        def _update_progbar(self, batch, logs=None):
            calls.append("update")
            super()._update_progbar(batch, logs)

        def _finalize_progbar(self, logs):
            calls.append("finalize")
            super()._finalize_progbar(logs)

    logger = Recording()
    logger.set_params({"verbose": 1, "epochs": 1, "steps": 1})
    logger.on_train_begin()
    logger.on_epoch_begin(0)
    logger.on_train_batch_end(0, {"loss": 1.0})
    logger.on_epoch_end(0, {"loss": 1.0})
    assert calls == ["update", "finalize"], changed(
        "keras.callbacks.ProgbarLogger._update_progbar/_finalize_progbar",
        f"the progress bar called {calls}",
    )


def test_backup_and_restore_saves_through_save_model(tmp_path):
    hook = "keras.callbacks.BackupAndRestore._save_model"
    saved = []

    class Recording(keras.callbacks.BackupAndRestore):
        def _save_model(self):
            saved.append((self._current_epoch, self._last_batch_seen))

    backup = Recording(str(tmp_path))
    paths = ("_weights_path", "_training_metadata_path")
    for name in (*paths, "_prev_weights_path", "_prev_training_metadata_path"):
        assert isinstance(getattr(backup, name, None), str), changed(
            f"keras.callbacks.BackupAndRestore.{name}", "no longer a path"
        )
    backup.set_model(tiny_model())
    backup.on_epoch_end(0)
    assert saved == [(1, 0)], changed(hook, f"on_epoch_end saved {saved}, not once at epoch 1")


def test_tensorboard_counts_train_batches_in_global_train_batch(tmp_path):
    hook = "keras.callbacks.TensorBoard._global_train_batch"
    board = keras.callbacks.TensorBoard(str(tmp_path), update_freq=1)
    board.set_model(tiny_model())
    board.on_train_begin()
    assert getattr(board, "_global_train_batch", None) == 0, changed(hook, "not 0 at start")
    board._global_train_batch = 5  # as train.recipe._TensorBoard resumes it, at an epoch start
    board.on_epoch_begin(1)
    board.on_train_batch_begin(0)
    assert board._global_train_batch == 6, changed(
        hook, "an epoch start resets it, or a train batch does not count in it"
    )
    board.on_train_batch_end(0, {"loss": 1.0})
    board.on_epoch_end(1, {"loss": 1.0})
    board.on_train_end()


@pytest.mark.parametrize(
    "layer",
    [keras.layers.BatchNormalization(), keras.layers.Dropout(0.5)],
    ids=["batch_norm", "dropout"],
)
def test_an_instance_call_overrides_the_class_call(layer):
    x = tf.ones([2, 3])
    layer.build(x.shape)
    layer.__dict__["call"] = lambda inputs, **kwargs: inputs * 0.0 + 7.0
    try:
        out = layer(x, training=True)
    finally:
        layer.__dict__.pop("call")
    np.testing.assert_array_equal(
        out,
        np.full([2, 3], 7.0),
        err_msg=changed(
            f"{type(layer).__name__}.__call__ -> self.call",
            "a layer no longer runs an instance's own `call` (engines/tick_layers patches it)",
        ),
    )


def test_a_random_layer_reads_its_seed_generator_at_call_time():
    layer = keras.layers.GaussianNoise(1.0, seed=1)
    names = [n for n, v in vars(layer).items() if isinstance(v, keras.random.SeedGenerator)]
    assert names, changed("GaussianNoise's SeedGenerator attribute", "none found in vars()")
    x = tf.zeros([2, 3])
    draws = []
    for _ in range(2):
        layer.__dict__[names[0]] = keras.random.SeedGenerator(7)
        draws.append(layer(x, training=True).numpy())
    np.testing.assert_array_equal(
        draws[0], draws[1], err_msg=changed(names[0], "a replaced generator is not used")
    )


@pytest.mark.parametrize(
    "layer, shape",
    [
        (keras.layers.SpatialDropout1D(0.5), [2, 5, 3]),
        (keras.layers.SpatialDropout2D(0.5), [2, 4, 4, 3]),
        (keras.layers.SpatialDropout2D(0.5, data_format="channels_first"), [2, 3, 4, 4]),
        (keras.layers.SpatialDropout3D(0.5), [2, 2, 4, 4, 3]),
    ],
)
def test_spatial_dropout_masks_match_keras(layer, shape):
    # The library computes the mask shape from `data_format`; Keras' own (private) rule is
    # the reference while it exists.
    inputs = tf.zeros(shape)
    rest, shared = tick_layers._noise_shape(layer, inputs)
    if not hasattr(layer, "_get_noise_shape"):
        pytest.skip(f"Keras {VERSION} has no SpatialDropout._get_noise_shape to compare with")
    expected = [int(d) for d in layer._get_noise_shape(inputs)[1:]]
    assert (rest, shared) == (expected, False)


def test_a_functional_models_tensors_name_the_node_and_inputs_that_made_them():
    x = keras.Input((4,))
    hidden = keras.layers.Dense(3, name="hidden")(x)
    y = keras.layers.Add(name="add")([hidden, x[:, :3]])
    history = getattr(y, "_keras_history", None)
    assert history is not None and history.operation.name == "add", changed(
        "KerasTensor._keras_history", "the operation that made a tensor"
    )
    nodes = getattr(history.operation, "_inbound_nodes", None)
    assert nodes and nodes[history.node_index].input_tensors[0] is hidden, changed(
        "Layer._inbound_nodes[i].input_tensors", "the tensors a call of a layer read"
    )
    from keras_sideways import cutting

    assert cutting._parents(hidden) == [x]
