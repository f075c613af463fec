"""Cutting a Functional Keras model into stages: the graph of its cuts, training with fit,
moving video against BP of the uncut model (the defaults), and what cannot be cut,
refused by name."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import CLIP_LOSS, FRAME_LOSS, clip_labels, random_video, tiny_conv_stages

import keras_sideways as ks
from keras_sideways import cutting

VIDEO = ks.VIDEO


def conv(channels, name, activation="tanh"):
    return keras.layers.Conv2D(channels, 3, padding="same", activation=activation, name=name)


def resnet(classes=3):
    """A tiny ResNet-style classifier of 8x8 frames: a stem, two residual blocks, a head."""
    x = keras.Input((8, 8, 1))
    stem = conv(4, "stem")(x)
    block1 = keras.layers.Add(name="block1")([stem, conv(4, "b1_conv")(stem)])
    block2 = keras.layers.Add(name="block2")([block1, conv(4, "b2_conv")(block1)])
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(block2)
    return keras.Model(x, keras.layers.Dense(classes, name="head")(pooled), name="resnet")


def unet():
    """A tiny U-Net of 8x8 frames: two levels down, two up, a skip per level."""
    x = keras.Input((8, 8, 1))
    enc1 = conv(4, "enc1")(x)
    enc2 = conv(8, "enc2")(keras.layers.AveragePooling2D(2, name="down1")(enc1))
    mid = conv(8, "mid")(keras.layers.AveragePooling2D(2, name="down2")(enc2))
    up2 = keras.layers.UpSampling2D(name="up2")(mid)
    dec2 = conv(8, "dec2")(keras.layers.Concatenate(name="skip2")([up2, enc2]))
    up1 = keras.layers.UpSampling2D(name="up1")(dec2)
    out = conv(1, "dec1", None)(keras.layers.Concatenate(name="skip1")([up1, enc1]))
    return keras.Model(x, out, name="unet")


# (model, cut layers, the stage graph they make, loss, per-frame targets)
CASES = {
    "resnet": (resnet, ["stem", "b1_conv", "block1"], [[VIDEO], [0], [0, 1], [2]]),
    "unet": (unet, ["enc1", "enc2", "mid", "dec2"], [[VIDEO], [0], [1], [1, 2], [0, 3]]),
}


def task(name, video):
    """The case's loss and targets: clip labels for the ResNet, the frames for the U-Net."""
    return (CLIP_LOSS, clip_labels(len(video))) if name == "resnet" else (FRAME_LOSS, video)


def uncut_bp_gradients(model, video, target, loss_fn):
    """BP of the mean per-frame loss through the uncut model, by variable."""
    batch, time = video.shape[:2]
    frames = tf.reshape(video, (batch * time, *video.shape[2:]))
    if target.ndim == 1:
        target = np.repeat(target, time)
    else:
        target = target.reshape(batch * time, *target.shape[2:])
    with tf.GradientTape() as tape:
        loss = loss_fn(target, model(frames, training=True))
    return {
        id(v): g
        for v, g in zip(model.trainable_variables, tape.gradient(loss, model.trainable_variables))
    }


@pytest.mark.parametrize("name", list(CASES))
def test_a_cut_model_has_the_graph_of_its_cuts_and_shares_the_models_weights(name):
    build, at, inputs = CASES[name]
    model = build()
    stages, graph = ks.cut(model, at=at)
    assert graph == inputs
    assert [s.layers[-1] for s in stages[:-1]] == [model.get_layer(n) for n in at]  # ends
    weights = {id(v) for s in stages for v in s.trainable_variables}
    assert weights == {id(v) for v in model.trainable_variables}
    video = random_video(batch=2, time=1, seed=2)[:, 0]
    sideways = ks.SidewaysModel(stages, inputs=graph)
    np.testing.assert_allclose(sideways(video[:, None])[:, 0], model(video), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["pipeline", "batched"])
@pytest.mark.parametrize("name", list(CASES))
def test_a_cut_model_gets_the_uncut_models_bp_gradient_on_moving_video(name, engine):
    # The defaults: a full stash, its skips in delay lines, filled and drained.
    build, at, inputs = CASES[name]
    model = build()
    stages, graph = ks.cut(model, at=at)
    video = random_video(batch=2, time=6, seed=3)  # every frame new
    loss, target = task(name, video)
    sideways = ks.SidewaysModel(stages, inputs=graph, engine=engine, pipeline_chunk=2)
    assert sideways.graph.drain
    sideways.compile(optimizer="sgd", loss=loss)
    gradients = sideways.compute_gradients(video, target)
    expected = uncut_bp_gradients(model, video, target, loss)
    for v, g in zip(sideways.trainable_variables, gradients):
        e = np.asarray(expected[id(v)])
        error = np.linalg.norm(np.asarray(g) - e) / np.linalg.norm(e)
        assert error <= 1e-5, (v.path, error)  # float32 sums over a few frames


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_a_cut_model_trains_with_fit(name):
    build, at, _ = CASES[name]
    model = build(**({"classes": 2} if name == "resnet" else {}))
    stages, graph = ks.cut(model, at=at)
    video = random_video(batch=4, time=6, seed=4)
    loss, target = task(name, video)
    target = target % 2 if name == "resnet" else target
    data = tf.data.Dataset.from_tensor_slices((video, target)).shuffle(4, seed=0).batch(2)
    sideways = ks.SidewaysModel(stages, inputs=graph)
    sideways.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    before = [v.numpy() for v in model.trainable_variables]
    history = sideways.fit(data, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert all(np.any(b != v.numpy()) for b, v in zip(before, model.trainable_variables))


def assert_per_frame(sideways, model, video):
    """The Sideways model's outputs are the per-frame model's on each frame. The same float32
    ops in other batch layouts: each output a chain of sums of at most 36 products (a 3x3
    convolution of 4 channels), so within 36 float32 epsilons (4.3e-6) of each other."""
    frames = video.reshape((-1, *video.shape[2:]))
    np.testing.assert_allclose(
        sideways.predict(video, verbose=0).reshape((len(frames), -1)),
        model.predict(frames, verbose=0).reshape((len(frames), -1)),
        rtol=36 * np.finfo(np.float32).eps,
        atol=36 * np.finfo(np.float32).eps,
    )


def test_a_cut_whose_frame_feeds_a_later_stage_saves_and_so_does_the_users_model(tmp_path):
    # A residual denoiser, frame + f(frame): its top stage reads the video and stage 0.
    # Keras rewired the model's input to build that stage, and then the user's model,
    # the cut model and a ModelCheckpoint all failed to save ("could not find node key").
    x = keras.Input((8, 8, 1))
    residual = conv(1, "c2", None)(conv(4, "c1")(x))
    model = keras.Model(x, keras.layers.Add(name="add")([x, residual]), name="denoiser")
    stages, graph = ks.cut(model, at=["c1"])
    assert graph == [[VIDEO], [VIDEO, 0]]
    video = random_video(batch=2, time=4, seed=3)
    sideways = ks.SidewaysModel(stages, inputs=graph)
    sideways.compile(optimizer="adam", loss=FRAME_LOSS)
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "epoch.keras"))
    sideways.fit(video, video, epochs=1, verbose=0, callbacks=[checkpoint])
    assert_per_frame(sideways, model, video)
    sideways.save(tmp_path / "cut.keras")
    loaded = keras.models.load_model(tmp_path / "cut.keras")
    np.testing.assert_array_equal(
        loaded.predict(video, verbose=0), sideways.predict(video, verbose=0)
    )
    model.save(tmp_path / "own.keras")  # the user's model, after the cut
    frames = video.reshape((-1, 8, 8, 1))
    np.testing.assert_array_equal(
        keras.models.load_model(tmp_path / "own.keras").predict(frames, verbose=0),
        model.predict(frames, verbose=0),
    )


@pytest.mark.parametrize("name, stages", [("resnet", 3), ("unet", 4)])
def test_a_model_is_cut_into_stages_balanced_by_estimated_cost(name, stages):
    model = CASES[name][0]()
    at = cutting.balanced_cuts(model, stages)
    assert len(at) == stages - 1
    cut_stages, graph = ks.cut(model, num_stages=stages)
    assert len(cut_stages) == stages and graph[0] == [VIDEO]
    # A 3x3 convolution of 1 to 4 channels: 40 weights at 64 positions.
    assert cutting.layer_costs(model)["stem" if name == "resnet" else "enc1"] == 40 * 64
    video = random_video(batch=2, time=5, seed=5)
    loss, target = task(name, video)
    sideways = ks.SidewaysModel(cut_stages, inputs=graph)
    sideways.compile(optimizer="adam", loss=loss)
    assert np.all(np.isfinite(sideways.train_on_batch(video, target)))


def shared_conv_model():
    x = keras.Input((8, 8, 1))
    first = conv(4, "first")(x)
    shared = conv(4, "shared")
    y = shared(conv(4, "middle")(shared(first)))
    return keras.Model(
        x, keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling2D()(y))
    )


def temporal_model():
    x = keras.Input((3, 8, 8, 1))
    y = ks.layers.CausalTemporalConv(4, 3, window=3, name="motion")(x)
    return keras.Model(x, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(y)))


@pytest.mark.parametrize(
    "build, at, message",
    [
        (
            resnet,
            ["b1_conv", "block1"],
            "output of layer 'stem' \\(in stage 0\\) is used past the cut at 'b1_conv'",
        ),
        (resnet, ["block1", "stem"], "The cut at 'stem' comes before the cut at 'block1'"),
        (resnet, ["nowhere"], "No layer 'nowhere' to cut at in 'resnet'"),
        (shared_conv_model, ["first", "middle"], "Layer 'shared' is used in stages 1 and 2"),
        (shared_conv_model, ["shared"], "Layer 'shared' is called 2 times"),
        (temporal_model, ["motion"], "Layer 'motion' \\(CausalTemporalConv\\) is temporal"),
        (resnet, ["stem", "head"], "Layer 'head' makes the output of 'resnet', where the last"),
        (
            resnet,
            ["stem", "stem"],
            "Layer 'stem' is named more than once in at=\\['stem', 'stem'\\]",
        ),
    ],
)
def test_what_cannot_be_cut_is_refused_naming_the_layer(build, at, message):
    with pytest.raises(ValueError, match=message):
        ks.cut(build(), at=at)


def test_a_model_is_cut_again_at_other_layers_as_if_fresh():
    # Building the stages calls the model's layers again, in the stages' graphs: only the
    # calls in the model's own graph count ("called 2 times" was said of a layer called once).
    model, frames = resnet(), random_video(batch=2, time=1, seed=2)[:, 0]
    for at in (["stem", "b1_conv", "block1"], ["block1"], None, None):
        stages, graph = ks.cut(model, at=at) if at else ks.cut(model, num_stages=3)
        sideways = ks.SidewaysModel(stages, inputs=graph)
        np.testing.assert_allclose(sideways(frames[:, None])[:, 0], model(frames), atol=1e-6)


def test_a_model_of_functional_blocks_is_cut_at_a_block():
    # A nested model's `output` is its inner one; the cut takes its call in the model.
    x, inner = keras.Input((8, 8, 1)), keras.Input((8, 8, 1))
    block = keras.Model(inner, conv(4, "block_conv")(inner), name="block")
    pooled = keras.layers.GlobalAveragePooling2D()(conv(4, "after")(block(x)))
    model = keras.Model(x, keras.layers.Dense(3, name="head")(pooled), name="blocks")
    frames = random_video(batch=2, time=1, seed=3)[:, 0]
    for stages, graph in (ks.cut(model, at=["block"]), ks.cut(model, num_stages=3)):
        assert graph[:2] == [[VIDEO], [0]]
        sideways = ks.SidewaysModel(stages, inputs=graph)
        np.testing.assert_allclose(sideways(frames[:, None])[:, 0], model(frames), atol=1e-6)


@pytest.mark.parametrize("name", list(CASES))
def test_every_count_of_stages_that_some_cuts_give_is_found(name):
    # The greedy search took the layer nearest each share and never went back: the U-Net's
    # 6 stages were refused ("found only 5") though its 11 stages were not.
    model = CASES[name][0]()
    every = [layer.name for layer in model.layers[1:-1]]  # cut at each layer: valid here
    assert len(ks.cut(model, at=every)[0]) == len(every) + 1
    for stages in range(2, len(every) + 2):
        cut_stages, graph = ks.cut(model, num_stages=np.int64(stages))  # NumPy ints too
        assert len(cut_stages) == len(graph) == stages
    most = len(every) + 1
    with pytest.raises(ValueError, match=f"{len(every)} layers it can cut at: at most {most}"):
        ks.cut(model, num_stages=most + 1)


def test_a_cut_given_without_its_graph_says_how_to_give_it():
    # Keras' own words were "expects 2 named input(s) with keys ['keras_tensor_2CLONE', ...]
    # ... Pass inputs as a dict"; the pair as one argument, "Unknown mode [[-1], [0]]".
    model = resnet()
    stages, graph = ks.cut(model, at=["stem", "b1_conv", "block1"])
    with pytest.raises(ValueError, match="Stage 2 .* takes 2 inputs and reads 1, .*inputs="):
        ks.SidewaysModel(stages).build((2, 4, 8, 8, 1))
    with pytest.raises(ValueError, match="stage graph: give it as inputs="):
        ks.SidewaysModel(*ks.cut(model, at=["stem"]))
    with pytest.raises(TypeError, match="a pair of lists, as ks.cut returns"):
        ks.SidewaysModel(ks.cut(model, at=["stem"]))
    with pytest.raises(TypeError, match="A model is one stage: .*ks.cut\\(model"):
        ks.SidewaysModel(model)


@pytest.mark.parametrize("channels", [3, 2])
def test_video_of_other_frames_than_a_cut_models_is_refused_naming_both(channels):
    # Keras let a 1-channel input take 3 channels at build, and the step then failed in
    # Functional.call on "(8, 8, 8, 3)", batch times time, naming no stage.
    stages, graph = ks.cut(resnet(), at=["stem"])  # frames [8, 8, 1]
    video = random_video(batch=2, time=4, channels=channels)
    with pytest.raises(ValueError, match="Stage 0 .* reads, .* its inputs are \\[\\?, 8, 8, 1\\]"):
        ks.SidewaysModel(stages, inputs=graph)(video)


def test_a_per_frame_models_weights_file_loads_into_that_model_and_so_into_its_cut(tmp_path):
    # The cut model's error said "the file holds 6 stages" of the Functional model's file.
    model, trained = unet(), unet()
    trained.set_weights([w + 0.5 for w in trained.get_weights()])
    trained.save_weights(tmp_path / "unet.weights.h5")
    stages, graph = ks.cut(model, at=["enc1", "enc2"])
    sideways = ks.SidewaysModel(stages, inputs=graph)
    video = random_video(batch=1, time=2)
    sideways.build(video.shape)
    with pytest.raises(
        ks.CheckpointError,
        match="top; this model holds 4, its stages and 1 delay-line relay\\).*ks.cut",
    ):
        sideways.load_weights(tmp_path / "unet.weights.h5")
    model.load_weights(tmp_path / "unet.weights.h5")  # the stages share its layers
    assert_per_frame(sideways, trained, video)


def test_frames_of_another_size_than_a_cut_models_are_refused_where_they_enter():
    # Built on 8x8 frames, fit on 12x12 ran and predict failed in Keras' Functional.call;
    # a Flatten and Dense model failed in TensorFlow ("Matrix size-incompatible").
    stages, graph = ks.cut(resnet(), at=["stem", "block1"])
    model = ks.SidewaysModel(stages, inputs=graph)
    model.compile(optimizer="adam", loss=CLIP_LOSS)
    labels = clip_labels(2)
    model.fit(random_video(batch=2, time=4, size=8), labels, epochs=1, verbose=0)
    larger = random_video(batch=2, time=4, size=12)
    message = "first stage takes frames \\[\\?, 8, 8, 1\\] .*got video \\[2, 4, 12, 12, 1\\]"
    for call in (
        lambda: model.fit(larger, labels, epochs=1, verbose=0),
        lambda: model.evaluate(larger, labels, verbose=0),
        lambda: model.predict(larger, verbose=0),
        lambda: model.train_on_batch(larger, labels),
    ):
        with pytest.raises(ValueError, match=message):
            call()
    # Stages that fix no frame size (layers, not models of a frame) take any.
    free = ks.SidewaysModel(tiny_conv_stages(num_stages=3))
    free.compile(optimizer="adam", loss=CLIP_LOSS)
    free.fit(random_video(batch=2, time=4, size=8), labels, epochs=1, verbose=0)
    assert free.predict(larger, verbose=0).shape[0] == 2


def test_cut_needs_the_cut_layers_or_a_number_of_stages():
    with pytest.raises(ValueError, match="either the layers to cut at"):
        ks.cut(resnet())
    with pytest.raises(ValueError, match="num_stages must be an int >= 2"):
        ks.cut(resnet(), num_stages=1)
    with pytest.raises(ValueError, match="at=\\[\\] names no layer to cut at"):
        ks.cut(resnet(), at=[])
    model = resnet()  # the layer object, not its name: "No layer <Conv2D name=stem ...>"
    with pytest.raises(ValueError, match="at= takes the names .*got the layer 'stem' itself"):
        ks.cut(model, at=[model.get_layer("stem")])
    model = resnet()
    first = model.layers[0].name  # the input layer, where the first stage starts anyway
    with pytest.raises(ValueError, match=f"Layer '{first}' is the input of 'resnet'"):
        ks.cut(model, at=[first])


def vgg_sequential(build):
    """A per-frame keras.Sequential, made as a user writes one: with a keras.Input first
    ("input"), built by `build` ("build"), or neither ("unbuilt")."""
    layers = [
        conv(4, "conv1"),
        keras.layers.MaxPooling2D(name="pool1"),
        conv(4, "conv2"),
        keras.layers.GlobalAveragePooling2D(name="pool2"),
        keras.layers.Dense(2, name="head"),
    ]
    model = keras.Sequential(([keras.Input((8, 8, 1))] if build == "input" else []) + layers)
    if build == "build":
        model.build((None, 8, 8, 1))
    return model


def listed_functional():
    """A Functional model made with lists of one input and one output, as some users write."""
    x = keras.Input((8, 8, 1))
    y = keras.layers.GlobalAveragePooling2D(name="pool")(conv(4, "stem")(x))
    return keras.Model([x], [keras.layers.Dense(2, name="head")(y)], name="listed")


@pytest.mark.parametrize(
    "build, cuts",
    [
        (lambda: vgg_sequential("input"), dict(at=["pool1", "pool2"])),
        (lambda: vgg_sequential("build"), dict(num_stages=3)),
        (listed_functional, dict(at="stem")),  # one name: two stages
    ],
    ids=["sequential-input", "sequential-built", "listed-functional"],
)
def test_a_sequential_or_a_listed_model_is_cut_and_trains_with_fit(build, cuts):
    model = build()
    stages, graph = ks.cut(model, **cuts)
    assert graph == [[VIDEO]] + [[k] for k in range(len(stages) - 1)]  # a chain
    assert len(stages) == (2 if cuts.get("at") == "stem" else 3)
    video = random_video(batch=4, time=5, seed=6)
    data = tf.data.Dataset.from_tensor_slices((video, clip_labels(4) % 2)).shuffle(4, seed=0)
    sideways = ks.SidewaysModel(stages, inputs=graph)
    sideways.compile(optimizer=keras.optimizers.Adam(0.01), loss=CLIP_LOSS)
    before = [v.numpy() for v in model.trainable_variables]
    history = sideways.fit(data.batch(2), epochs=1, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert all(np.any(b != v.numpy()) for b, v in zip(before, model.trainable_variables))
    frames = np.reshape(video, (-1, 8, 8, 1))  # the stages compute the model, frame by frame
    listed = not isinstance(model, keras.Sequential) and isinstance(model.input, list)
    uncut = model([frames] if listed else frames)
    np.testing.assert_allclose(np.reshape(sideways(video), (-1, 2)), uncut, rtol=1e-5, atol=1e-6)


def test_an_unbuilt_sequential_is_refused_with_how_to_build_it():
    with pytest.raises(ValueError, match="'.*' is not built: start it with keras.Input"):
        ks.cut(vgg_sequential("unbuilt"), num_stages=2)
