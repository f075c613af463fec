"""SidewaysModel through Keras: fit, evaluate, stateful streaming, bad input, skipped updates."""

import warnings

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import (
    CLIP_LOSS,
    FRAME_LOSS,
    assert_all_close,
    clip_labels,
    compiled_model,
    frame_targets,
    random_video,
    stages_with,
    tiny_conv_stages,
    tiny_temporal_stages,
)

import keras_sideways as ks
from keras_sideways.engines import tick_layers

ENGINES = ["pipeline", "batched"]


def brightness_videos(count, time=8, size=12, seed=0):
    """A square moving one pixel per frame; its brightness (3 levels) is the class."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, count)
    video = np.zeros((count, time, size, size, 1), "float32")
    for i, label in enumerate(labels):
        row, col = rng.integers(0, size - 3, 2)
        step = rng.choice([-1, 1])
        for t in range(time):
            c = (col + step * t) % (size - 3)
            video[i, t, row : row + 3, c : c + 3] = (label + 1) / 3
    return video, labels


def brightness_stages():
    return [
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.GlobalMaxPooling2D(),
        keras.layers.Dense(8, activation="relu"),
        keras.layers.Dense(3),
    ]


MODES_AND_ENGINES = [("sideways", "pipeline"), ("sideways", "batched"), ("bp", "auto")]


@pytest.mark.slow
@pytest.mark.parametrize("mode, engine", MODES_AND_ENGINES)
def test_fit_learns_a_trivial_video_task(mode, engine):
    train_x, train_y = brightness_videos(96, seed=0)
    test_x, test_y = brightness_videos(48, seed=1)
    model = ks.SidewaysModel(brightness_stages(), mode=mode, engine=engine)
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=CLIP_LOSS, metrics=["accuracy"])
    history = model.fit(train_x, train_y, batch_size=16, epochs=12, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    scores = model.evaluate(test_x, test_y, verbose=0, return_dict=True)
    assert scores["accuracy"] >= 0.9, scores


def test_evaluate_scores_clips_on_time_averaged_probabilities():
    video = random_video(batch=6, time=5, seed=4)
    labels = np.array([0, 1, 2, 0, 1, 2])
    model = ks.SidewaysModel(tiny_conv_stages(num_stages=3))
    model.compile(optimizer="sgd", loss=CLIP_LOSS, metrics=["accuracy"])
    scores = model.evaluate(video, labels, batch_size=6, verbose=0, return_dict=True)
    logits = model.predict(video, verbose=0)
    assert logits.shape == (6, 5, 3)
    probabilities = tf.nn.softmax(logits, axis=-1).numpy().mean(axis=1)
    np.testing.assert_allclose(scores["accuracy"], np.mean(probabilities.argmax(-1) == labels))
    frame_loss = CLIP_LOSS(np.repeat(labels, 5), logits.reshape(30, 3)).numpy()
    np.testing.assert_allclose(scores["loss"], frame_loss, rtol=1e-5)


def test_sequential_layers_become_the_stages():
    sequential = keras.Sequential(tiny_conv_stages(num_stages=3))
    model = ks.SidewaysModel(sequential)
    assert len(model.stages) == 3
    assert model(random_video()).shape == (2, 6, 3)


@pytest.mark.parametrize("kind", [None, "batch_norm", "dropout"])
@pytest.mark.parametrize("mode", ["sideways", "bp"])
def test_compute_gradients_does_not_touch_weights(mode, kind):
    video = random_video()
    model = ks.SidewaysModel(tiny_conv_stages() if kind is None else stages_with(kind))
    model.compile(optimizer="sgd", loss=CLIP_LOSS)
    model.build(video.shape)
    before = [v.numpy().copy() for v in model.variables]  # moving statistics, seeds too
    grads = model.compute_gradients(video, np.array([0, 1]), mode=mode)
    assert [g.shape for g in grads] == [tuple(v.shape) for v in model.trainable_variables]
    for b, v in zip(before, model.variables):
        np.testing.assert_array_equal(b, v.numpy(), err_msg=v.path)
    if mode == "sideways":  # the same masks again: what the next train_step would apply
        again = model.compute_gradients(video, np.array([0, 1]))
        for a, g in zip(again, grads):
            np.testing.assert_array_equal(a, g)


# ------------------------------------------------------------------ stateful streaming
def four_stage_identity_model(**kwargs):
    """Stages whose outputs name the frame they came from: x -> x + k (no learning)."""

    class Offset(keras.layers.Layer):
        def __init__(self, offset, **kw):
            super().__init__(**kw)
            self.offset = offset

        def build(self, shape):
            self.w = self.add_weight(shape=(), initializer="ones")

        def call(self, x):
            return x * self.w + self.offset

    stages = [keras.layers.Flatten()] + [Offset(float(k)) for k in (1, 2)] + [keras.layers.Dense(3)]
    model = ks.SidewaysModel(stages, stateful=True, **kwargs)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=CLIP_LOSS)
    return model


def frame_index_video(first, time=2, batch=2):
    """Each frame is filled with its global index in the stream."""
    frames = np.arange(first, first + time, dtype="float32")
    return np.broadcast_to(frames[None, :, None, None, None], (batch, time, 1, 1, 1)).copy()


def test_stateful_chunks_continue_the_pipeline_without_repriming():
    model = four_stage_identity_model()
    labels = np.array([0, 1])
    model.train_on_batch(frame_index_video(0), labels)  # frames 0, 1
    activations = [a.numpy()[:, 0] for a in model.buffers.activations]
    # After the chunk, A_k holds stage k's output at the last tick: frame 1-k.
    np.testing.assert_array_equal(activations[0], [1, 1])  # flatten(frame 1)
    np.testing.assert_array_equal(activations[1], [0 + 1, 0 + 1])  # frame 0, + 1
    np.testing.assert_array_equal(activations[2], [0 + 3, 0 + 3])  # primed frame 0, + 1 + 2
    model.train_on_batch(frame_index_video(2), labels)  # frames 2, 3
    activations = [a.numpy()[:, 0] for a in model.buffers.activations]
    np.testing.assert_array_equal(activations[0], [3, 3])
    np.testing.assert_array_equal(activations[1], [2 + 1, 2 + 1])
    # Re-priming on frame 2 would give 2 + 3; continuing the stream gives frame 1 + 3.
    np.testing.assert_array_equal(activations[2], [1 + 3, 1 + 3])
    assert int(model.buffers.ticks.numpy()) == 4

    model.reset_pipeline()
    for buffer in model.buffers.variables:
        assert not np.any(buffer.numpy()), buffer.path


def test_reset_pipeline_callback_restarts_the_stream_each_epoch():
    model = four_stage_identity_model()
    chunks = np.concatenate([frame_index_video(0), frame_index_video(2)])
    labels = np.array([0, 1, 0, 1])
    model.fit(
        chunks,
        labels,
        batch_size=2,
        epochs=2,
        shuffle=False,
        verbose=0,
        callbacks=[ks.callbacks.ResetPipeline()],
    )
    # Two chunks of two frames since the reset at the start of the second epoch.
    assert int(model.buffers.ticks.numpy()) == 4
    np.testing.assert_array_equal(model.buffers.activations[2].numpy()[:, 0], [4, 4])


def test_stateful_batch_size_is_fixed():
    model = four_stage_identity_model()
    model.train_on_batch(frame_index_video(0, batch=2), np.array([0, 1]))
    with pytest.raises(ValueError, match="fixes the batch size to 2.*batch of 3"):
        model.compute_gradients(frame_index_video(2, batch=3), np.array([0, 1, 2]))


@pytest.mark.parametrize("first", ["predict", "evaluate", "call", "build", "compute_gradients"])
def test_a_stream_takes_the_batch_size_of_its_first_training_batch(first):
    # What builds the model first (inference takes any batch size) does not fix the stream.
    model, twin = four_stage_identity_model(), four_stage_identity_model()
    video, labels = frame_index_video(0, batch=3), np.array([0, 1, 2])
    if first == "build":
        model.build((None, 2, 1, 1, 1))  # one lane
    elif first == "call":
        model(video)
    elif first == "predict":
        model.predict(video, verbose=0)
    elif first == "evaluate":
        model.evaluate(video, labels, verbose=0)
    else:
        model.compute_gradients(video, labels)  # leaves the stream as it was: not started
    twin.build(video.shape)
    model.set_weights(twin.get_weights())
    for m in (model, twin):
        m.fit(frame_index_video(0), np.array([0, 1]), batch_size=2, shuffle=False, verbose=0)
    assert model.buffers.capacity == 2
    for a, b in zip(model.buffers.variables + model.weights, twin.buffers.variables + twin.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # Started, the stream's size is fixed until reset_pipeline() starts a new one.
    with pytest.raises(ValueError, match="fixes the batch size to 2 \\(the first training batch"):
        model.fit(video, labels, batch_size=3, verbose=0)
    model.reset_pipeline()
    model.fit(video, labels, batch_size=3, verbose=0)
    assert model.buffers.capacity == 3 and int(model.buffers.ticks.numpy()) == 2


def test_stateful_compute_gradients_leaves_the_stream_alone():
    model = four_stage_identity_model()
    model.train_on_batch(frame_index_video(0), np.array([0, 1]))
    before = [v.numpy().copy() for v in model.buffers.variables]
    model.compute_gradients(frame_index_video(5), np.array([0, 1]))
    for b, v in zip(before, model.buffers.variables):
        np.testing.assert_array_equal(b, v.numpy())


@pytest.mark.parametrize("data", ["arrays", "dataset"])
def test_stateful_fit_refuses_a_short_last_batch_before_any_step(data):
    model = four_stage_identity_model()
    video, labels = frame_index_video(0, batch=3), np.array([0, 1, 2])
    if data == "arrays":
        args, message = (video, labels), "got 3 clips in batches of 2, so the last batch would"
    else:
        args = (tf.data.Dataset.from_tensor_slices((video, labels)).batch(2),)
        message = "batch size is not fixed .*\\[\\?, 2, 1, 1, 1\\]"
    with pytest.raises(ValueError, match=f"stateful=True fixes the batch size.*{message}"):
        model.fit(*args, batch_size=2 if data == "arrays" else None, verbose=0)
    assert model.buffers is None  # nothing built, nothing run
    dropped = tf.data.Dataset.from_tensor_slices((video, labels)).batch(2, drop_remainder=True)
    model.fit(dropped, verbose=0)
    assert int(model.buffers.ticks.numpy()) == 2  # one batch of 2 clips, 2 frames
    with pytest.raises(ValueError, match="fixes the batch size to 2 .*got batches of 3"):
        model.fit(video, labels, batch_size=3, verbose=0)


def test_stateful_evaluate_predict_and_call_take_any_batch_size():
    model = four_stage_identity_model()
    model.fit(frame_index_video(0), np.array([0, 1]), batch_size=2, verbose=0)
    before = [v.numpy().copy() for v in model.buffers.variables]
    video, labels = frame_index_video(5, batch=3), np.array([0, 1, 2])
    outputs = model(video)
    expected = CLIP_LOSS(np.repeat(labels, 2), np.reshape(outputs, (6, 3)))
    scores = model.evaluate(video, labels, batch_size=3, verbose=0, return_dict=True)
    assert scores["loss"] == pytest.approx(float(expected), rel=1e-5)
    np.testing.assert_allclose(model.predict(video, batch_size=3, verbose=0), outputs)
    for b, v in zip(before, model.buffers.variables):  # the stream is left alone
        np.testing.assert_array_equal(b, v.numpy())


# ------------------------------------------------------------------ bad input
LAYOUT = r"\[batch, time, height, width, channels\]"


@pytest.mark.parametrize(
    "video, target, message",
    [
        (np.zeros((2, 4, 8, 8), "float32"), np.zeros(2), f"rank 5.*{LAYOUT}.*got rank 4"),
        (
            np.zeros((2, 0, 8, 8, 1), "float32"),
            np.zeros(2),
            f"{LAYOUT} with at least one frame.*empty time axis",
        ),
        (np.zeros((2, 4, 8, 8, 1), "float32"), np.zeros(3), "same batch size.*got video \\[2"),
        (np.zeros((2, 4, 8, 8, 1), "uint8"), np.zeros(2), f"float video {LAYOUT}.*got dtype uint8"),
        (np.zeros((2, 4, 8, 8, 1), "float32"), np.zeros((2, 5, 3)), "video's time \\(4\\)"),
    ],
    ids=["rank", "empty-time", "batch-mismatch", "not-float", "frames-mismatch"],
)
@pytest.mark.parametrize("entry", ["compute_gradients", "fit"])
def test_bad_input_raises_a_clear_value_error(video, target, message, entry):
    model = ks.SidewaysModel(tiny_conv_stages())
    model.compile(optimizer="sgd", loss=CLIP_LOSS)
    with pytest.raises(ValueError, match=message):
        if entry == "fit":
            dataset = tf.data.Dataset.from_tensors((video, target))
            model.fit(dataset, verbose=0)
        else:
            model.compute_gradients(video, target)


def test_video_of_other_channels_than_the_built_model_is_refused_before_running():
    # Keras' traced steps relax the input shape: without the check a 1-channel model's
    # convolution ran grouped on 4-channel video, silently, and failed obscurely on 3.
    model = ks.SidewaysModel(tiny_conv_stages(num_stages=3))
    model.compile(optimizer="sgd", loss=CLIP_LOSS)
    video, labels = random_video(batch=2, time=3), clip_labels(2)
    model.fit(video, labels, verbose=0)
    other = np.repeat(video, 4, axis=-1)
    message = r"built for frames of 1 channel\(s\).*got video \[2, 3, 8, 8, 4\] of 4"
    before = model.get_weights()
    for call in (
        lambda: model.fit(other, labels, verbose=0),
        lambda: model.fit(tf.data.Dataset.from_tensors((other, labels)), verbose=0),
        lambda: model.evaluate(other, labels, verbose=0),
        lambda: model.predict(other, verbose=0),
    ):
        with pytest.raises(ValueError, match=message):
            call()
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_metric_that_takes_logits_is_refused_with_clip_labels():
    # It would score the clip's probabilities as logits: 0.66 where the loss read 0.64.
    model = ks.SidewaysModel(tiny_conv_stages(num_stages=3))
    entropy = keras.metrics.SparseCategoricalCrossentropy(from_logits=True, name="entropy")
    model.compile(optimizer="sgd", loss=CLIP_LOSS, metrics=[entropy])
    video, labels = random_video(batch=2, time=3), clip_labels(2)
    for call in (model.fit, model.evaluate):
        with pytest.raises(ValueError, match="metric 'entropy' takes logits.*from_logits=False"):
            call(video, labels, verbose=0)
    # From probabilities it reads what the loss reads from logits: the clip's probabilities.
    model.compile(
        optimizer="sgd", loss=CLIP_LOSS, metrics=[keras.metrics.SparseCategoricalCrossentropy()]
    )
    scores = model.evaluate(video, labels, verbose=0, return_dict=True)
    probabilities = tf.nn.softmax(model(video), axis=-1).numpy().mean(axis=1)
    expected = -np.log(probabilities[np.arange(2), labels]).mean()
    assert scores["sparse_categorical_crossentropy"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("mode, engine", MODES_AND_ENGINES)
def test_a_frozen_model_trains_on_with_keras_warning_and_no_update(mode, engine):
    model = ks.SidewaysModel(tiny_conv_stages(num_stages=3), mode=mode, engine=engine)
    model.trainable = False
    model.compile(optimizer="adam", loss=CLIP_LOSS, metrics=["accuracy"])
    video, labels = random_video(batch=2, time=3), clip_labels(2)
    model.build(video.shape)
    before = model.get_weights()
    with pytest.warns(UserWarning, match="does not have any trainable weights"):
        history = model.fit(video, labels, verbose=0).history
    assert history["skipped_updates"] == [0.0] and np.isfinite(history["loss"][0])
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("classes", [3, 4])  # 4: as many classes as frames
def test_one_hot_clip_labels_are_refused_naming_the_fix(classes):
    model = ks.SidewaysModel(tiny_conv_stages(classes=classes, num_stages=3))
    model.compile(optimizer="sgd", loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    video, one_hot = random_video(batch=2, time=4), np.eye(classes, dtype="float32")[[0, 2]]
    with pytest.raises(ValueError, match=r"one-hot clip labels \[batch, classes\].*indices"):
        model.fit(video, one_hot, verbose=0)
    per_frame = np.repeat(one_hot[:, None], 4, axis=1)  # [batch, time, classes]: taken
    assert np.isfinite(model.fit(video, per_frame, verbose=0).history["loss"][0])


def test_class_weight_with_per_frame_targets_is_refused():
    # Keras reads a rank-2 target as one-hot classes: the argmax over time was the class.
    video = random_video(batch=2, time=3)
    model = ks.SidewaysModel(tiny_conv_stages(num_stages=3))
    model.compile(optimizer="sgd", loss=CLIP_LOSS)
    frames = np.repeat(clip_labels(2)[:, None], 3, axis=1)
    for data in ((video, frames), (tf.data.Dataset.from_tensors((video, frames)), None)):
        with pytest.raises(ValueError, match=r"class_weight.*clip labels \[batch\].*\[2, 3\]"):
            model.fit(*data, class_weight={0: 1.0, 1: 0.0, 2: 1.0}, verbose=0)
    # With clip labels it weighs each clip by its class, as the same sample weights do.
    labels = np.array([0, 1])
    weighted = ks.SidewaysModel(tiny_conv_stages(num_stages=3))
    weighted.compile(optimizer="sgd", loss=CLIP_LOSS)
    weighted.build(video.shape)
    model.build(video.shape)
    model.set_weights(weighted.get_weights())
    weighted.fit(video, labels, class_weight={0: 0.0, 1: 1.0}, verbose=0)
    model.fit(video, labels, sample_weight=np.array([0.0, 1.0]), verbose=0)
    for a, b in zip(model.get_weights(), weighted.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_video_of_unknown_shape_is_named_with_the_fix():
    video, labels = random_video(batch=2, time=3), clip_labels(2)
    shapeless = tf.data.Dataset.from_tensors(0).map(
        lambda _: tf.py_function(lambda: (video, labels), [], [tf.float32, tf.int32])
    )
    model = ks.SidewaysModel(tiny_conv_stages(num_stages=3))
    model.compile(optimizer="sgd", loss=CLIP_LOSS)
    with pytest.raises(ValueError, match="unknown shape.*tf.ensure_shape"):
        model.fit(shapeless, verbose=0)


PAIRS = r"A dataset must yield \(video, target\) pairs.*as_supervised=True"


@pytest.mark.parametrize(
    "elements, message",
    [  # what tensorflow-datasets yields without as_supervised=True: a dict of features
        (lambda v, t: {"video": v, "label": t}, "one input.*got a dict with keys 'video'"),
        (lambda v, t: v, "one target tensor.*got nothing \\(None\\)"),  # videos alone
        (lambda v, t: ((v, v), t), "one input.*got a tuple of 2 tensors"),
        (lambda v, t: (v, {"label": t}), "one target tensor.*got a dict with keys 'label'"),
    ],
    ids=["features-dict", "no-target", "two-inputs", "target-dict"],
)
def test_a_batch_that_is_not_a_video_and_a_target_is_named_with_the_fix(elements, message):
    video, labels = random_video(batch=4, time=4), clip_labels(4)
    data = tf.data.Dataset.from_tensor_slices(elements(video, labels)).shuffle(4, seed=0)
    model = compiled_model(tiny_conv_stages(num_stages=3))
    for run in (model.fit, model.evaluate):
        with pytest.raises(ValueError, match=f"{message}.*{PAIRS}"):
            run(data.batch(2), verbose=0)
    assert model.buffers is None  # refused before anything was built
    if message.startswith("one input"):  # the features dict, or the two inputs
        given = elements(video, labels)
        with pytest.raises(ValueError, match=f"{message}.*{PAIRS}"):
            model.compute_gradients(given if isinstance(given, dict) else given[0], labels)
    with pytest.raises(ValueError, match=f"one input, the video {LAYOUT}; got a dict"):
        model.predict({"video": video}, verbose=0)
    model.fit(video, labels, batch_size=2, verbose=0)  # the pairs themselves train


def test_bad_call_input_names_the_layout():
    model = ks.SidewaysModel(tiny_conv_stages())
    with pytest.raises(ValueError, match=f"{LAYOUT}.*got rank 3"):
        model(np.zeros((2, 8, 8), "float32"))


def test_unknown_mode_lists_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown mode 'sidewise'.*sideways, bp"):
        ks.SidewaysModel(tiny_conv_stages(), mode="sidewise")


def test_unknown_engine_lists_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown engine 'fast'.*auto, pipeline, batched"):
        ks.SidewaysModel(tiny_conv_stages(), engine="fast")


def test_streaming_needs_the_pipeline_engine():
    with pytest.raises(ValueError, match="cannot stream"):
        ks.SidewaysModel(tiny_conv_stages(), stateful=True, engine="batched")
    assert ks.SidewaysModel(tiny_conv_stages(), stateful=True).resolved_engine == "pipeline"
    assert ks.SidewaysModel(tiny_conv_stages()).resolved_engine == "batched"


def test_layers_an_engine_cannot_run_are_refused_by_name():
    def noisy():  # nested: found at any depth
        return [
            keras.Sequential(
                [keras.layers.Conv2D(4, 3), keras.layers.GaussianNoise(0.1, name="jitter")]
            ),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ]

    with pytest.raises(ValueError, match="GaussianNoise layer 'jitter'.*engine='pipeline'"):
        ks.SidewaysModel(noisy(), engine="batched")
    assert ks.SidewaysModel(noisy()).resolved_engine == "pipeline"  # "auto" picks it
    streams = compiled_model(noisy(), stash_depth="full")  # the pipeline keys its noise
    first = streams.compute_gradients(random_video(), clip_labels(2))
    assert_all_close(streams.compute_gradients(random_video(), clip_labels(2)), first, streams)
    assert ks.SidewaysModel(noisy(), mode="bp", engine="batched").mode == "bp"

    synchronized = [
        keras.Sequential(
            [keras.layers.Dense(3), keras.layers.BatchNormalization(synchronized=True, name="sync")]
        ),
        keras.layers.Dense(3),
    ]
    with pytest.raises(
        ValueError, match="BatchNormalization layer 'sync'.*synchronized=True.*mode='bp'"
    ):
        ks.SidewaysModel(synchronized)
    assert ks.SidewaysModel(synchronized, mode="bp").mode == "bp"
    assert (
        ks.SidewaysModel(stages_with("batch_norm"), engine="batched").resolved_engine == "batched"
    )


def test_a_stage_that_cannot_take_its_input_or_returns_several_is_named():
    two = keras.layers.Lambda(lambda x: (x, 2 * x), name="pair")
    cases = [  # stages in the wrong order; a stage of two outputs
        (
            [keras.layers.GlobalAveragePooling2D(), keras.layers.Conv2D(4, 3, name="late")],
            "Stage 1 \\(late\\) cannot take what it reads, \\[2, 1\\] \\(from stage 0\\): .*ndim",
        ),
        (
            [keras.layers.Conv2D(4, 3), two, keras.layers.Dense(3)],
            "Stage 1 \\(pair\\) must return one tensor per frame; got a tuple of 2",
        ),
    ]
    for stages, message in cases:
        model = compiled_model(stages)
        with pytest.raises(ValueError, match=message):
            model.fit(random_video(), clip_labels(2), verbose=0)


def test_fewer_than_two_stages_is_refused():
    with pytest.raises(ValueError, match="at least two stages.*got 1"):
        ks.SidewaysModel([keras.layers.Dense(3)])


def test_a_model_or_layer_as_stages_is_a_clear_type_error():
    inputs = keras.Input((8, 8, 1))
    functional = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    with pytest.raises(
        TypeError,
        match="list of Keras layers .*keras.Sequential; got a Functional model.*cut it into stages",
    ):
        ks.SidewaysModel(functional)
    with pytest.raises(TypeError, match="keras.Sequential; got a Dense"):
        ks.SidewaysModel(keras.layers.Dense(3))


def test_a_stage_that_changes_the_batch_size_is_named_at_build():
    fold = keras.layers.Lambda(lambda x: tf.reshape(x, (-1, 128)), name="fold")
    model = ks.SidewaysModel([keras.layers.Flatten(), fold, keras.layers.Dense(3)])
    model.compile(optimizer="sgd", loss=CLIP_LOSS)
    with pytest.raises(
        ValueError,
        match="Stage 1 \\(fold\\) must keep the batch size.*batch of 4 frames it gave 2 outputs",
    ):
        model.fit(random_video(batch=4, time=3), np.array([0, 1, 2, 0]), verbose=0)


@pytest.mark.parametrize("bad", [3, -1])
@pytest.mark.parametrize(
    "entry", ["fit", "evaluate", "compute_gradients", "train_on_batch", "dataset"]
)
def test_labels_out_of_range_name_the_range_and_the_label(entry, bad):
    video, labels = random_video(batch=4, time=3), np.array([0, 2, bad, 1])
    model = ks.SidewaysModel(tiny_conv_stages(num_stages=3))  # 3 classes
    model.compile(optimizer="sgd", loss=CLIP_LOSS)
    if entry == "dataset":  # checked inside the traced step
        model.fit(video[:2], labels[:2], verbose=0)  # in range: fine
        error, message = tf.errors.InvalidArgumentError, "class indices in \\[0, 3\\)"
        dataset = tf.data.Dataset.from_tensor_slices((video, labels)).batch(2)
    else:
        error = ValueError
        message = f"3-class output .*class indices in \\[0, 3\\); got label {bad} at index 2"
    with pytest.raises(error, match=message):
        if entry == "dataset":
            model.fit(dataset, verbose=0)
        elif entry == "compute_gradients":
            model.compute_gradients(video, labels)
        elif entry == "train_on_batch":
            model.train_on_batch(video, labels)
        else:
            getattr(model, entry)(video, labels, batch_size=2, verbose=0)


def test_an_ignored_class_is_not_out_of_range():
    model = ks.SidewaysModel(tiny_conv_stages(num_stages=3))
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(ignore_class=-1))
    grads = model.compute_gradients(random_video(batch=2, time=3), np.array([1, -1]))
    assert all(np.all(np.isfinite(g)) for g in grads)


@pytest.mark.parametrize("mode, engine", MODES_AND_ENGINES)
def test_non_finite_batch_is_skipped_and_counted(mode, engine):
    video = random_video(batch=2, time=5)
    poisoned = video.copy()
    poisoned[0, 2, 3, 3, 0] = np.nan
    model = ks.SidewaysModel(tiny_conv_stages(), mode=mode, engine=engine)
    model.compile(optimizer="adam", loss=CLIP_LOSS, metrics=["accuracy"])
    model.build(video.shape)
    before = [v.numpy().copy() for v in model.trainable_variables]
    dataset = tf.data.Dataset.from_tensor_slices((np.stack([poisoned]), np.array([[0, 1]])))
    with pytest.warns(RuntimeWarning, match="Epoch 1: every one of its 1 training steps was "):
        history = model.fit(dataset, epochs=1, verbose=0)
    assert history.history["skipped_updates"] == [1.0]
    # Nothing was kept: the loss and metrics read NaN, not the 0 of an empty mean.
    assert np.isnan(history.history["loss"][0]) and np.isnan(history.history["accuracy"][0])
    for b, v in zip(before, model.trainable_variables):
        np.testing.assert_array_equal(b, v.numpy(), err_msg=v.path)

    history = model.fit(video, np.array([0, 1]), epochs=1, verbose=0)  # a clean batch
    assert history.history["skipped_updates"] == [0.0]
    assert any(np.any(b != v.numpy()) for b, v in zip(before, model.trainable_variables))


def test_an_epoch_skipped_whole_warns_when_steps_per_execution_does_not_divide_it():
    # 8 steps in calls of 3: Keras reports the last call as ending at step 9, and the
    # 8 skipped steps were taken for fewer than the epoch's: no warning.
    video = np.full((8, 4, 8, 8, 1), np.nan, np.float32)
    model = ks.SidewaysModel(tiny_conv_stages())
    model.compile(optimizer="adam", loss=CLIP_LOSS, steps_per_execution=3)
    with pytest.warns(RuntimeWarning, match="Epoch 1: every one of its 8 training steps was "):
        history = model.fit(video, np.arange(8) % 3, batch_size=1, epochs=1, verbose=0)
    assert history.history["skipped_updates"] == [8.0]


@pytest.mark.parametrize("mode, engine", MODES_AND_ENGINES)
def test_a_skipped_batch_counts_in_no_metric(mode, engine):
    # Keras weighs only `weighted_metrics` by a sample weight, not `metrics`: a skipped
    # batch must not update them at all. Its zeroed outputs would score class 0 twice.
    video, labels = random_video(batch=4, time=3), np.array([1, 2, 0, 0])
    poisoned = video.copy()
    poisoned[2:] = np.nan
    model = ks.SidewaysModel(tiny_conv_stages(num_stages=3), mode=mode, engine=engine)
    metrics = ["accuracy", keras.metrics.SparseCategoricalCrossentropy(name="entropy")]
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=CLIP_LOSS, metrics=metrics)
    with_skip = model.fit(poisoned, labels, batch_size=2, shuffle=False, verbose=0).history
    alone = model.fit(video[:2], labels[:2], verbose=0).history  # rate 0: the same weights
    assert with_skip.pop("skipped_updates") == [1.0] and alone.pop("skipped_updates") == [0.0]
    assert with_skip == alone


def test_skip_counts_show_as_counts_where_not_zero_and_never_in_evaluation(capsys):
    video, labels = random_video(batch=4, time=3), np.array([0, 1, 2, 0])
    poisoned = video.copy()
    poisoned[0, 1, 2, 2, 0] = np.nan
    model = ks.SidewaysModel(tiny_conv_stages(num_stages=3))
    model.compile(optimizer="adam", loss=CLIP_LOSS, metrics=["accuracy"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one batch of two skipped: no all-skipped warning
        history = model.fit(
            poisoned, labels, batch_size=2, epochs=2, verbose=2, validation_data=(video, labels)
        ).history
    assert history["skipped_updates"] == [1.0, 1.0]  # per epoch, in the History
    assert "val_skipped_updates" not in history and np.all(np.isfinite(history["loss"]))
    lines = [line for line in capsys.readouterr().out.splitlines() if "accuracy" in line]
    assert len(lines) == 2 and all(" - skipped_updates: 1 - val_" in line for line in lines)
    history = model.fit(video, labels, batch_size=2, epochs=1, verbose=2).history
    assert history["skipped_updates"] == [0.0]
    assert "skipped" not in capsys.readouterr().out  # zero: not shown
    scores = model.evaluate(video, labels, verbose=0, return_dict=True)
    assert set(scores) == {"loss", "accuracy"}
    assert all(np.all(np.isfinite(v.numpy())) for v in model.trainable_variables)


@pytest.mark.parametrize("engine", ["pipeline", "batched"])
def test_short_clip_warning_is_given_once(engine):
    # The paper's Sideways (no drain): a short clip starves the bottom stages.
    model = ks.SidewaysModel(tiny_conv_stages(num_stages=4), engine=engine, stash_depth=0)
    model.compile(optimizer="sgd", loss=CLIP_LOSS)
    with pytest.warns(UserWarning, match="too short"):
        model.compute_gradients(random_video(time=2), np.array([0, 1]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.compute_gradients(random_video(time=2, seed=5), np.array([0, 1]))


@pytest.mark.parametrize(
    "temporal, stash_depth",
    [(False, 0), (False, 2), (False, "full"), (True, 0), (True, "full")],
    ids=str,
)
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("targets", ["clip", "frames"])
def test_static_video_sideways_equals_bp(targets, engine, temporal, stash_depth):
    video = np.repeat(random_video(batch=2, time=6)[:, :1], 6, axis=1)
    target = clip_labels(2) if targets == "clip" else frame_targets(video)
    loss = CLIP_LOSS if targets == "clip" else FRAME_LOSS
    stages = tiny_temporal_stages() if temporal else tiny_conv_stages(num_stages=4)
    model = compiled_model(stages, loss=loss, engine=engine, stash_depth=stash_depth)
    sideways = model.compute_gradients(video, target)
    bp = model.compute_gradients(video, target, mode="bp")
    assert_all_close(sideways, bp, model)
    assert all(np.abs(g).max() > 0 for g in bp)  # the comparison is not between zeros


def test_the_gradient_comparison_tells_the_papers_pairing_from_bp_on_moving_video():
    # assert_all_close's tolerance (rounding of float32 sums) is far below what a wrong
    # pairing changes: on moving video the paper's Sideways is not BP, and it says so.
    video, target = random_video(batch=2, time=6, seed=3), clip_labels(2)
    model = compiled_model(tiny_conv_stages(num_stages=4))  # stash 0: the paper's
    with pytest.raises(AssertionError, match="Mismatched elements"):
        assert_all_close(
            model.compute_gradients(video, target),
            model.compute_gradients(video, target, mode="bp"),
            model,
        )


class Brighter(keras.layers.Layer):
    """Doubles its input when the input's mean is positive, else passes it: a branch on a
    tensor's value, written with keras.ops.cond as the steps (traced without AutoGraph)
    need."""

    def call(self, x):
        return keras.ops.cond(keras.ops.mean(x) > 0.0, lambda: 2.0 * x, lambda: x)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_layer_that_branches_with_ops_cond_trains_and_keeps_bps_gradient(engine):
    stages = tiny_conv_stages(num_stages=4)
    stages[1] = keras.Sequential([Brighter(), stages[1]])
    video = np.repeat(random_video(batch=2, time=6)[:, :1], 6, axis=1)
    model = compiled_model(stages, engine=engine)
    sideways = model.compute_gradients(video, clip_labels(2))
    assert_all_close(sideways, model.compute_gradients(video, clip_labels(2), mode="bp"), model)
    before = [w.numpy() for w in model.trainable_weights]
    model.fit(video, clip_labels(2), epochs=1, verbose=0)
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))


@pytest.mark.parametrize(
    "kind, stash_depth",
    [("batch_norm", 0), ("batch_norm", "full"), ("layer_norm", 0), ("group_norm", 0)],
)
@pytest.mark.parametrize("engine", ENGINES)
def test_static_video_sideways_equals_bp_with_normalisation(engine, kind, stash_depth):
    # BP's batch norm normalises over all batch*time frames, Sideways' over each tick's
    # lanes: the same statistics when the frames do not change.
    video = np.repeat(random_video(batch=3, time=5)[:, :1], 5, axis=1)
    model = compiled_model(stages_with(kind), engine=engine, stash_depth=stash_depth)
    sideways = model.compute_gradients(video, clip_labels(3))
    bp = model.compute_gradients(video, clip_labels(3), mode="bp")
    assert_all_close(sideways, bp, model)
    assert all(np.abs(g).max() > 0 for g in bp)


def test_temporal_stages_see_the_frames_before_and_never_those_after():
    video = random_video(batch=1, time=5, seed=8)
    other_past = video.copy()
    other_past[:, :4] = random_video(batch=1, time=4, seed=9)  # same last frame
    other_future = video.copy()
    other_future[:, 3:] = random_video(batch=1, time=2, seed=10)  # same first 3 frames
    temporal = compiled_model(tiny_temporal_stages())
    per_frame = compiled_model(tiny_conv_stages(num_stages=4))
    last = lambda model, v: model(v).numpy()[0, -1]  # noqa: E731
    assert np.abs(last(temporal, video) - last(temporal, other_past)).max() > 1e-4
    np.testing.assert_allclose(last(per_frame, video), last(per_frame, other_past), rtol=1e-6)
    np.testing.assert_allclose(  # causal: the first 3 outputs ignore frames 3 and 4
        temporal(video).numpy()[:, :3], temporal(other_future).numpy()[:, :3], rtol=1e-6
    )


def fresh_copies(stages):
    """model_for(mode, engine): a compiled model of `stages` whose weights and moving
    statistics are put back to their present values (the stages are shared)."""
    variables = [v for stage in stages for v in stage.variables]
    start = [v.numpy() for v in variables]

    def model_for(mode, engine):
        for variable, value in zip(variables, start):
            variable.assign(value)
        return compiled_model(stages, mode=mode, engine=engine)

    return model_for


def moving_statistics(stages):
    norms = tick_layers.batch_norms(stages)
    return [v.numpy() for n in norms for v in (n.moving_mean, n.moving_variance)]


@pytest.mark.parametrize("video_kind, lanes", [("static", 3), ("random", 2)])
def test_one_step_leaves_the_same_moving_statistics_in_both_engines(video_kind, lanes):
    # With buffers of 2 lanes the batch of 3 runs in two groups (2, and 1 padded).
    video = random_video(batch=3, time=6, seed=2)
    if video_kind == "static":
        video = np.repeat(video[:, :1], 6, axis=1)
    stages = stages_with("batch_norm")
    compiled_model(stages).build((lanes, 6, 8, 8, 1))
    model_for = fresh_copies(stages)
    after = {}
    for mode, engine in MODES_AND_ENGINES:
        model = model_for(mode, engine)
        model.build((lanes, 6, 8, 8, 1))
        model.train_on_batch(video, clip_labels(3))
        after[mode, engine] = moving_statistics(stages)
    pipeline, batched, bp = after.values()
    for a, b in zip(pipeline, batched):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    if video_kind == "static":  # every tick's statistics are BP's over all frames
        for a, b in zip(pipeline, bp):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    else:  # BP's variance also holds the spread of the frames' means over time
        assert not np.allclose(pipeline[1], bp[1], rtol=1e-3)


@pytest.mark.parametrize("engine", ENGINES)
def test_moving_statistics_move_once_per_step_by_the_mean_tick(engine):
    video = random_video(batch=2, time=5, seed=3)
    stages = stages_with("batch_norm")
    model = compiled_model(stages, engine=engine)
    model.build(video.shape)
    conv, norm = stages[0].layers[0], stages[0].layers[1]
    # The bottom stage processes frame t at tick t: each tick's statistics are its frame's.
    frames = conv(video.reshape(10, 8, 8, 1)).numpy().reshape(2, 5, 8 * 8, 4)
    tick_means = frames.mean(axis=(0, 2))  # over the lanes and positions: [ticks, channels]
    tick_variances = frames.var(axis=(0, 2))
    model.train_on_batch(video, clip_labels(2))
    # One update with momentum 0.5 from the initial (0, 1); priming adds none.
    np.testing.assert_allclose(norm.moving_mean, 0.5 * tick_means.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        norm.moving_variance, 0.5 + 0.5 * tick_variances.mean(0), rtol=1e-4, atol=1e-6
    )


def test_a_skipped_step_leaves_the_moving_statistics():
    video = random_video(batch=2, time=5)
    video[0, 2, 3, 3, 0] = np.nan
    stages = stages_with("batch_norm")
    model = compiled_model(stages)
    model.build(video.shape)
    before = moving_statistics(stages)
    assert model.train_on_batch(video, clip_labels(2), return_dict=True)["skipped_updates"] == 1
    for a, b in zip(before, moving_statistics(stages)):
        np.testing.assert_array_equal(a, b)


def test_dropout_is_inert_at_inference_and_at_rate_zero():
    def stages(rate):
        return [
            keras.Sequential(
                [keras.layers.Conv2D(4, 3, padding="same"), keras.layers.Dropout(rate)]
            ),
            keras.Sequential([keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)]),
        ]

    video = random_video(batch=2, time=4)
    plain, at_zero, dropping = (compiled_model(stages(r)) for r in (0.0, 0.0, 0.5))
    for model in (plain, at_zero, dropping):
        model.build(video.shape)
        for variable, value in zip(model.trainable_variables, plain.trainable_variables):
            variable.assign(value)  # not the seed state, which only the dropping model has
    np.testing.assert_array_equal(dropping(video), plain(video))
    np.testing.assert_array_equal(dropping.pipelined_call(video), plain.pipelined_call(video))
    labels = clip_labels(2)
    assert_all_close(
        at_zero.compute_gradients(video, labels), plain.compute_gradients(video, labels), plain
    )
    assert not np.allclose(
        dropping.compute_gradients(video, labels)[0], plain.compute_gradients(video, labels)[0]
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_sideways_differs_from_bp_on_random_video(engine):
    video = random_video(batch=2, time=6, seed=3)
    model = compiled_model(tiny_conv_stages(num_stages=4), engine=engine)
    sideways = model.compute_gradients(video, clip_labels(2))
    bp = model.compute_gradients(video, clip_labels(2), mode="bp")
    bottom_kernel = 0  # the bottom stage pairs frames furthest apart: 2(L-1) = 6
    difference = np.abs(sideways[bottom_kernel] - bp[bottom_kernel]).max()
    assert difference > 1e-2 * np.abs(bp[bottom_kernel]).max()


@pytest.mark.parametrize("engine", ENGINES)
def test_clip_shorter_than_pipeline_gives_zero_gradient(engine):
    model = compiled_model(tiny_conv_stages(num_stages=5), engine=engine, stash_depth=0)
    video = random_video(batch=2, time=3)
    with pytest.warns(UserWarning, match="too short"):
        grads = model.compute_gradients(video, clip_labels(2))
    # Stages 0 and 1 of 5 first get a valid error at ticks 4 and 3: never in 3 frames.
    starved = model.stages[0].trainable_variables + model.stages[1].trainable_variables
    for v, g in zip(model.trainable_variables, grads):
        if any(v is s for s in starved):
            assert np.all(np.asarray(g) == 0), v.path
        else:
            assert np.abs(np.asarray(g)).max() > 0, v.path


def test_keras_save_and_load_model_round_trip_and_training_continues(tmp_path):
    video, labels = random_video(batch=4, time=6), np.array([0, 1, 2, 0])
    model = ks.SidewaysModel(tiny_conv_stages(), engine="pipeline", stash_depth=2)
    model.compile(optimizer="adam", loss=CLIP_LOSS, metrics=["accuracy"])
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "epoch.keras"))
    model.fit(video, labels, epochs=1, verbose=0, callbacks=[checkpoint])
    model.save(tmp_path / "model.keras")
    for path in ("model.keras", "epoch.keras"):
        loaded = keras.models.load_model(tmp_path / path)
        assert isinstance(loaded, ks.SidewaysModel)
        assert (loaded.mode, loaded.engine, loaded.stash) == ("sideways", "pipeline", [2, 2, 2, 0])
        for a, b in zip(model.get_weights(), loaded.get_weights()):
            np.testing.assert_array_equal(a, b)
        assert int(loaded.optimizer.iterations.numpy()) == 1
    # The optimizer state came along: one more step lands on the same weights.
    model.fit(video, labels, epochs=1, verbose=0, shuffle=False)
    loaded.fit(video, labels, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["sideways", "bp"])
def test_dropout_seeds_are_saved_so_training_resumed_from_weights_draws_the_same_masks(
    tmp_path, mode
):
    video, labels = random_video(batch=2, time=4), np.array([0, 1])

    def model():
        keras.utils.set_random_seed(0)
        built = ks.SidewaysModel(stages_with("dropout"), mode=mode)
        built.compile(optimizer="adam", loss=CLIP_LOSS)
        built.build(video.shape)
        built.optimizer.build(built.trainable_variables)
        return built

    straight = model()
    straight.fit(video, labels, epochs=1, verbose=0)
    straight.save_weights(tmp_path / "epoch_1.weights.h5")
    straight.fit(video, labels, epochs=2, initial_epoch=1, verbose=0)
    resumed = model()  # a fresh process's model: its seed generators start again
    resumed.load_weights(tmp_path / "epoch_1.weights.h5")
    resumed.fit(video, labels, epochs=2, initial_epoch=1, verbose=0)
    states = [tick_layers.seed_states(m.stages) for m in (straight, resumed)]
    assert len(states[0]) == 2 and int(states[0][0][1]) == 2  # two steps drawn
    for a, b in zip(*states):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_an_empty_training_set_is_refused_and_an_empty_validation_set_skipped_as_keras_does():
    video, labels = random_video(batch=4, time=4), clip_labels(4)
    data = tf.data.Dataset.from_tensor_slices((video, labels)).batch(2)
    model = compiled_model(tiny_conv_stages(num_stages=3))
    with pytest.raises(ValueError, match="The training data yielded no batch"):
        model.fit(data.take(0), epochs=1, verbose=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(data, validation_data=data.take(0), epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2  # trained on, as keras.Model does
    assert not any(key.startswith("val_") for key in history.history)
    assert any("ran out of data" in str(w.message) for w in caught)
    assert model.evaluate(data.take(0), verbose=0) == []  # Keras' empty evaluation


def test_validation_and_evaluation_read_each_clip_once():
    video, labels = random_video(batch=4, time=4), clip_labels(4)
    reads = []

    def clips():  # a decoder, counting the clips it gives
        for clip, label in zip(video, labels):
            reads.append(1)
            yield clip, label

    signature = (tf.TensorSpec(video.shape[1:], video.dtype), tf.TensorSpec([], labels.dtype))
    data = tf.data.Dataset.from_generator(clips, output_signature=signature).batch(2)
    model = compiled_model(tiny_conv_stages(num_stages=3))
    model.fit(video, labels, batch_size=2, validation_data=data, epochs=2, verbose=0)
    assert len(reads) == 2 * 4  # not a batch more per epoch to build from
    reads.clear()
    model.evaluate(data, verbose=0)
    assert len(reads) == 4
    reads.clear()
    cached = data.cache()  # the first evaluation fills the cache, the second reads it
    first, second = (model.evaluate(cached, verbose=0) for _ in range(2))
    assert len(reads) == 4 and first == second


@pytest.mark.parametrize("saved, loaded", [(4, 2), (2, 4)])
def test_weights_files_load_into_a_model_of_any_batch_size(tmp_path, saved, loaded):
    video, labels = random_video(batch=4, time=4), clip_labels(4)
    model = compiled_model(stages_with("dropout"))
    model.fit(video, labels, batch_size=saved, epochs=1, verbose=0)
    assert model.buffers.capacity == saved
    model.save_weights(tmp_path / "run.weights.h5")
    other = compiled_model(stages_with("dropout"))
    other.build((loaded, *video.shape[1:]))
    other.load_weights(tmp_path / "run.weights.h5")
    np.testing.assert_array_equal(other.predict(video, verbose=0), model.predict(video, verbose=0))
    for a, b in zip(tick_layers.seed_states(model.stages), tick_layers.seed_states(other.stages)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())  # the seeds came along


def test_weights_files_of_earlier_versions_still_load_their_seeds(tmp_path):
    video, labels = random_video(batch=4, time=4), clip_labels(4)
    model = compiled_model(stages_with("dropout"))
    model.fit(video, labels, batch_size=4, epochs=1, verbose=0)
    path = tmp_path / "old.weights.h5"
    model.save_weights(path)
    seeds = [s.numpy() for s in tick_layers.seed_states(model.stages)]
    with h5py.File(path, "r+") as f:  # as written before: buffers numbered, then the seeds
        own = f["vars"]
        for name in list(own):
            del own[name]
        for i, buffer in enumerate(model.buffers.variables):
            own[str(i)] = buffer.numpy()
        for i, seed in enumerate(seeds, start=len(model.buffers.variables)):
            own[str(i)] = seed
    other = compiled_model(stages_with("dropout"))
    other.build((2, *video.shape[1:]))  # another batch size: the old buffers are dropped
    other.load_weights(path)
    for a, b in zip(seeds, tick_layers.seed_states(other.stages)):
        np.testing.assert_array_equal(a, b.numpy())
    np.testing.assert_array_equal(other.predict(video, verbose=0), model.predict(video, verbose=0))


def test_a_streams_checkpoint_keeps_its_buffers_and_loads_at_its_batch_size_only(tmp_path):
    video, labels = random_video(batch=2, time=4), clip_labels(2)
    stream = compiled_model(tiny_conv_stages(num_stages=3), stateful=True)
    stream.fit(video, labels, batch_size=2, epochs=1, verbose=0)
    stream.save_weights(tmp_path / "stream.weights.h5")
    with h5py.File(tmp_path / "stream.weights.h5") as f:
        saved = sorted(f["vars"])
    assert saved == sorted(f"pipeline_{name}" for name in stream.buffers.named_variables)
    resumed = compiled_model(tiny_conv_stages(num_stages=3), stateful=True)
    resumed.build(video.shape)
    resumed.load_weights(tmp_path / "stream.weights.h5")
    for a, b in zip(stream.buffers.variables, resumed.buffers.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert int(resumed.buffers.ticks.numpy()) == 4  # the stream goes on where it stopped

    wider = compiled_model(tiny_conv_stages(num_stages=3), stateful=True)
    wider.build((4, *video.shape[1:]))
    with pytest.raises(
        ValueError,
        match="stream .stateful=True. of batch size 2, but this model was built for batch size 4",
    ) as raised:
        wider.load_weights(tmp_path / "stream.weights.h5")
    assert "another structure" not in str(raised.value)  # its structure fits: not said so
    clips = compiled_model(tiny_conv_stages(num_stages=3))  # not a stream: any batch size
    clips.build((4, *video.shape[1:]))
    clips.load_weights(tmp_path / "stream.weights.h5")
    np.testing.assert_array_equal(clips.predict(video, verbose=0), stream.predict(video, verbose=0))
    clips.save_weights(tmp_path / "clips.weights.h5")
    with h5py.File(tmp_path / "clips.weights.h5") as f:
        assert list(f["vars"]) == []  # no buffers and no random layer: nothing of its own


def test_summary_counts_the_stages_parameters_and_not_the_pipeline_buffers():
    video, labels = random_video(batch=4, time=4), clip_labels(4)
    model = compiled_model(tiny_conv_stages(num_stages=4))
    model.fit(video, labels, epochs=1, verbose=0)
    assert model.buffers.variables  # the pipeline ran, its buffers exist
    assert model.count_params() == sum(stage.count_params() for stage in model.stages)
    assert model.non_trainable_weights == []
    lines = []
    model.summary(print_fn=lambda line, **_: lines.append(line))
    text = "\n".join(lines)
    assert f"Trainable params: {model.count_params():,}" in text
    assert "Non-trainable params: 0 " in text


def test_keras_export_writes_the_sideways_saved_model(tmp_path):
    video = random_video(batch=2, time=5)
    model = compiled_model(tiny_conv_stages())
    model(video)
    path = model.export(str(tmp_path / "exported"))
    loaded = tf.saved_model.load(path)  # kept: its functions need its variables
    served = loaded.serve(tf.constant(video))["frames"]
    np.testing.assert_allclose(served, model(video), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("strategy", [None, "mirrored"])
def test_an_update_that_makes_weights_non_finite_is_rolled_back(strategy):
    video, labels = random_video(batch=4, time=5), np.array([0, 1, 2, 0])
    scope = tf.distribute.MirroredStrategy(["/cpu:0"]) if strategy else tf.distribute.get_strategy()
    with scope.scope():
        model = ks.SidewaysModel(tiny_conv_stages())
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=CLIP_LOSS)
    model.fit(video, labels, epochs=1, verbose=0)
    before = model.get_weights()
    state = [v.numpy() for v in model.optimizer.variables]
    model.optimizer.learning_rate.assign(float("nan"))  # what --config.learning_rate=nan does
    logs = model.fit(video, labels, epochs=1, verbose=0).history
    assert logs["skipped_updates"] == [1.0]
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    for v, s in zip(model.optimizer.variables, state):
        if v.path != model.optimizer.learning_rate.path:
            np.testing.assert_array_equal(v.numpy(), s, err_msg=v.path)


@pytest.mark.parametrize("strategy", [None, "mirrored"])
@pytest.mark.parametrize("stash_depth", [0, 2])
def test_delay_warmup_scales_each_stage_update_by_its_frame_gap(strategy, stash_depth):
    video, labels = random_video(batch=4, time=8), np.array([0, 1, 2, 0])
    scope = tf.distribute.MirroredStrategy(["/cpu:0"]) if strategy else tf.distribute.get_strategy()
    with scope.scope():
        model = ks.SidewaysModel(tiny_conv_stages(), stash_depth=stash_depth, delay_warmup_steps=4)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=CLIP_LOSS)
        model(video)
    stages = [model.stages[k].trainable_variables for k in range(4)]
    for step in range(2):  # step 0 scales by 1/(1 + gap), step 1 by (1 + gap)^-(3/4)
        grads = model.compute_gradients(video, labels)
        before = [v.numpy() for v in model.trainable_variables]
        model.fit(video, labels, epochs=1, verbose=0, shuffle=False)
        for v, g, b in zip(model.trainable_variables, grads, before):
            k = next(k for k, vs in enumerate(stages) if any(v is s for s in vs))
            gap = max(0, 2 * (3 - k) - stash_depth)
            scale = (1.0 + gap) ** (step / 4 - 1)
            np.testing.assert_allclose(v.numpy(), b - 0.1 * scale * g, rtol=1e-4, atol=1e-6)


def test_delay_warmup_is_saved_with_the_model_and_checked(tmp_path):
    model = ks.SidewaysModel(tiny_conv_stages(), stash_depth=0, delay_warmup_steps=100)
    model.compile(optimizer="adam", loss=CLIP_LOSS)
    model(random_video())
    model.save(tmp_path / "model.keras")
    assert keras.models.load_model(tmp_path / "model.keras").delay_warmup_steps == 100
    with pytest.raises(ValueError, match="delay_warmup_steps must be a whole number >= 0"):
        ks.SidewaysModel(tiny_conv_stages(), delay_warmup_steps=-5)


@pytest.mark.parametrize("temporal, stash_depth", [(False, 0), (False, "full"), (True, 0)], ids=str)
@pytest.mark.parametrize("targets", ["clip", "frames"])
def test_static_video_sideways_in_blocks_of_ticks_equals_bp(targets, temporal, stash_depth):
    video = np.repeat(random_video(batch=2, time=6)[:, :1], 6, axis=1)
    target = clip_labels(2) if targets == "clip" else frame_targets(video)
    loss = CLIP_LOSS if targets == "clip" else FRAME_LOSS
    stages = tiny_temporal_stages() if temporal else tiny_conv_stages(num_stages=4)
    model = compiled_model(stages, loss=loss, stash_depth=stash_depth, pipeline_chunk=4)
    assert_all_close(
        model.compute_gradients(video, target),
        model.compute_gradients(video, target, mode="bp"),
        model,
    )


def _augmented_clips(batch_size: int) -> tf.data.Dataset:
    """Shuffled, randomly flipped brightness clips, as a user's input pipeline makes them."""
    x, y = brightness_videos(12, seed=3)
    flip = lambda v, label: (tf.image.random_flip_left_right(v, seed=4), label)  # noqa: E731
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(12, seed=5).map(flip)
    return data.batch(batch_size, drop_remainder=True)


def test_fit_in_blocks_of_ticks_trains_as_tick_by_tick():
    # The default pipeline (blocks of ticks, "auto") and the tick-by-tick loop reach the
    # same weights after an epoch of a shuffled, augmented tf.data pipeline.
    weights, chunks = [], []
    for chunk in ("auto", 1):
        keras.utils.set_random_seed(0)
        model = ks.SidewaysModel(brightness_stages(), engine="pipeline", pipeline_chunk=chunk)
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss=CLIP_LOSS)
        model.fit(_augmented_clips(4), epochs=1, verbose=0)
        weights.append([v.numpy() for v in model.trainable_variables])
        chunks.append(model.resolved_chunk(8))
    assert chunks[0] in (2, 4) and chunks[1] is None  # blocks of ticks, then a tick loop
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_a_second_fit_on_clips_of_another_length_trains_in_blocks_of_ticks():
    # Keras traced the same train step again with the time axis relaxed to any length,
    # which blocks of ticks cannot run: "Give every clip the same static length", though
    # every clip of each fit had one.
    model = ks.SidewaysModel(tiny_conv_stages(), engine="pipeline")
    model.compile(optimizer="sgd", loss=CLIP_LOSS)
    for time in (4, 6):
        history = model.fit(random_video(batch=2, time=time), np.array([0, 1]), verbose=0)
        assert np.isfinite(history.history["loss"][0])
    assert np.isfinite(model.train_on_batch(random_video(batch=2, time=5), np.array([0, 1])))


def test_train_on_batch_returns_what_keras_returns():
    # Its list carried skipped_updates too: a loss alone came as [loss, 0.0], so
    # `float(model.train_on_batch(...))` and `loss, accuracy = ...` failed.
    video, labels = random_video(batch=2, time=4), np.array([0, 1])
    for metrics in ([], ["accuracy"]):
        model = ks.SidewaysModel(tiny_conv_stages())
        model.compile(optimizer="sgd", loss=CLIP_LOSS, metrics=metrics)
        keras_model = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(3)])
        keras_model.compile(optimizer="sgd", loss=CLIP_LOSS, metrics=metrics)
        got, expected = (
            model.train_on_batch(video, labels),
            keras_model.train_on_batch(video, labels),
        )
        assert type(got) is type(expected) and np.shape(got) == np.shape(expected)
    logs = model.train_on_batch(video, labels, return_dict=True)
    assert set(logs) == {"loss", "accuracy", "skipped_updates"} and logs["skipped_updates"] == 0
    # Several metrics come in compile's order, as Keras gives them (not by name).
    top2 = keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="a_top2")
    model.compile(optimizer="sgd", loss=CLIP_LOSS, metrics=["accuracy", top2])
    got = model.train_on_batch(video, labels)
    results = model.get_metrics_result()  # this step's
    assert got == [float(results[name]) for name in ("loss", "accuracy", "a_top2")]


def test_blocks_of_ticks_need_clips_of_a_static_length():
    spec = (tf.TensorSpec([2, None, 8, 8, 1]), tf.TensorSpec([2], tf.int64))
    clips_of_any_length = tf.data.Dataset.from_generator(
        lambda: iter([(random_video(batch=2, time=5), np.array([0, 1]))]), output_signature=spec
    )
    model = compiled_model(tiny_conv_stages(), pipeline_chunk=3)
    with pytest.raises(ValueError, match="pipeline_chunk=3 .* clips of a static length"):
        model.fit(clips_of_any_length, epochs=1, verbose=0)
    auto = compiled_model(tiny_conv_stages(), pipeline_chunk="auto")  # runs tick by tick
    history = auto.fit(clips_of_any_length, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    # Its defaults (a full stash) and temporal stages too: a model built from the first
    # batch (5 frames) planned blocks of ticks, kept no stash or window history, and
    # refused the clips of any length it was then traced for, saying it "was built to run
    # clips of a known length".
    for stages in (tiny_conv_stages(), tiny_temporal_stages()):
        model = ks.SidewaysModel(stages, engine="pipeline")
        model.compile(optimizer="sgd", loss=CLIP_LOSS)
        history = model.fit(clips_of_any_length, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0]) and model.resolved_chunk(None) is None
