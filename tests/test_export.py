"""SavedModel export: serve and stream round trips, metadata, atomic replacement."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import clip_labels, compiled_model, random_video, stages_with

import keras_sideways as ks
from keras_sideways import export, models


def trained_classifier(num_stages=4):
    model = ks.SidewaysModel(models.vgg_classifier(3, num_stages=num_stages, width=2))
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(random_video(batch=4, time=5, size=8), np.array([0, 1, 2, 0]), epochs=1, verbose=0)
    return model


def test_serve_reproduces_the_model(tmp_path):
    model = trained_classifier()
    path = ks.export_saved_model(model, tmp_path / "m", metadata={"class_names": ["a", "b", "c"]})
    loaded = tf.saved_model.load(path)
    video = random_video(batch=3, time=6, size=8, seed=7)
    served = loaded.serve(tf.constant(video))
    np.testing.assert_allclose(served["frames"], model(video), atol=1e-5)
    expected = tf.nn.softmax(model(video), axis=-1).numpy().mean(axis=1)
    np.testing.assert_allclose(served["probabilities"], expected, atol=1e-5)
    signature = loaded.signatures["serve"](video=tf.constant(video))
    np.testing.assert_allclose(signature["frames"], served["frames"], atol=1e-6)
    meta = json.loads((tmp_path / "m" / export.METADATA_FILE).read_text())
    assert meta["class_names"] == ["a", "b", "c"] and meta["num_stages"] == 4


def test_stream_matches_the_pipelined_forward_pass(tmp_path):
    model = trained_classifier(num_stages=4)
    loaded = tf.saved_model.load(ks.export_saved_model(model, tmp_path / "m"))
    video = random_video(batch=2, time=7, size=8, seed=8)
    expected = model.pipelined_call(video).numpy()
    streamed = np.stack([loaded.stream(tf.constant(video[:, t]))["output"] for t in range(7)], 1)
    np.testing.assert_allclose(streamed, expected, atol=1e-5)
    # The output at tick t belongs to frame t-3: the clip's frame 0 reaches the top at tick 3.
    per_frame = model(video).numpy()
    np.testing.assert_allclose(streamed[:, 3:], per_frame[:, :4], atol=1e-5)
    np.testing.assert_allclose(streamed[:, 0], per_frame[:, 0], atol=1e-5)

    loaded.reset()
    restarted = loaded.stream(tf.constant(video[:, 5]))["output"]
    np.testing.assert_allclose(restarted, per_frame[:, 5], atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="call reset"):
        loaded.stream(tf.constant(video[:1, 0]))


@pytest.mark.parametrize("kind", ["batch_norm", "dropout"])
def test_serve_and_stream_use_the_moving_statistics(tmp_path, kind):
    model = compiled_model(stages_with(kind))
    video = random_video(batch=2, time=5, seed=3)
    model.fit(video, clip_labels(2), epochs=1, verbose=0)  # moving statistics moved
    loaded = tf.saved_model.load(ks.export_saved_model(model, tmp_path / "m"))
    frames = model(video).numpy()
    # Each clip and frame on its own gives the same outputs: no batch statistics.
    np.testing.assert_allclose(model(video[1:, 2:4]), frames[1:, 2:4], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loaded.serve(tf.constant(video))["frames"], frames, atol=1e-5)
    streamed = np.stack([loaded.stream(tf.constant(video[:, t]))["output"] for t in range(5)], 1)
    np.testing.assert_allclose(streamed, model.pipelined_call(video), atol=1e-5)
    np.testing.assert_allclose(streamed[:, 2:], frames[:, :3], atol=1e-5)  # 3 stages: lag 2


def test_reconstruction_model_serves_frames_only(tmp_path):
    model = ks.SidewaysModel(models.encoder_decoder(1, num_stages=3, width=2))
    model.compile(optimizer="adam", loss="mse")
    video = random_video(batch=2, time=4, size=8)
    model.fit(video, video, epochs=1, verbose=0)
    loaded = tf.saved_model.load(ks.export_saved_model(model, tmp_path / "ae"))
    served = loaded.serve(video)
    assert set(served) == {"frames"}
    np.testing.assert_allclose(served["frames"], model(video), atol=1e-5)


def test_failed_export_leaves_the_previous_one_intact(tmp_path, monkeypatch):
    model = trained_classifier()
    path = ks.export_saved_model(model, tmp_path / "m", metadata={"version": 1})

    def broken_save(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        ks.export_saved_model(model, path, metadata={"version": 2})
    assert json.loads((tmp_path / "m" / export.METADATA_FILE).read_text())["version"] == 1
    assert tf.saved_model.load(path).serve is not None
    assert sorted(os.listdir(tmp_path)) == ["m"]  # no staging folder left behind
    monkeypatch.undo()
    ks.export_saved_model(model, path, metadata={"version": 2})
    assert json.loads((tmp_path / "m" / export.METADATA_FILE).read_text())["version"] == 2
    assert sorted(os.listdir(tmp_path)) == ["m"]


def test_unbuilt_model_cannot_be_exported(tmp_path):
    model = ks.SidewaysModel(models.vgg_classifier(3, num_stages=3, width=2))
    with pytest.raises(ValueError, match="needs a built model"):
        ks.export_saved_model(model, tmp_path / "m")


def test_non_finite_weights_are_refused_and_the_previous_export_kept(tmp_path):
    model = trained_classifier()
    path = ks.export_saved_model(model, tmp_path / "m", metadata={"version": 1})
    kernel = model.stages[0].trainable_variables[0]
    kernel.assign(tf.fill(kernel.shape, float("nan")))
    with pytest.raises(ValueError, match=f"non-finite weights \\({kernel.path}.*diverged"):
        ks.export_saved_model(model, path, metadata={"version": 2})
    assert json.loads((tmp_path / "m" / export.METADATA_FILE).read_text())["version"] == 1
    assert sorted(os.listdir(tmp_path)) == ["m"]


def test_a_file_or_a_folder_of_other_files_is_never_replaced(tmp_path, monkeypatch):
    model = trained_classifier(num_stages=3)
    project = tmp_path / "project"  # the user's work: export(".") must not delete it
    (project / "data").mkdir(parents=True)
    (project / "train.py").write_text("code")
    (project / "data" / "clips.npy").write_text("clips")
    monkeypatch.chdir(project)
    for target in (".", "data"):
        with pytest.raises(ValueError, match="holds other files \\((data, train.py|clips.npy)\\)"):
            model.export(target)
    with pytest.raises(ValueError, match="it is a file"):
        ks.export_saved_model(model, "train.py")
    assert (project / "train.py").read_text() == "code"
    assert sorted(os.listdir(project)) == ["data", "train.py"]  # no staging folder either
    assert os.listdir(project / "data") == ["clips.npy"]
    (project / "empty").mkdir()
    for target in ("empty", "empty", "new"):  # an empty folder, then an earlier export
        ks.export_saved_model(model, target, metadata={"target": target})
        assert json.loads((project / target / export.METADATA_FILE).read_text())["target"] == target


def test_keras_other_export_formats_run_the_model(tmp_path):
    # They read the shape the model was built with, which must be a plain tuple.
    model = trained_classifier(num_stages=3)
    model.export(str(tmp_path / "m.tflite"), format="litert", verbose=False)
    interpreter = tf.lite.Interpreter(model_path=str(tmp_path / "m.tflite"))
    video = random_video(batch=4, time=5, size=8, seed=9)  # the built clip length
    (entry,), (exit,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.resize_tensor_input(entry["index"], video.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(entry["index"], video)
    interpreter.invoke()
    # TFLite's kernels add in another order: float32 rounding, far below 1e-5 here.
    np.testing.assert_allclose(interpreter.get_tensor(exit["index"]), model(video), atol=1e-5)


def test_a_classifier_compiled_with_a_loss_function_serves_probabilities(tmp_path):
    model = ks.SidewaysModel(models.vgg_classifier(3, num_stages=3, width=2))
    model.compile(optimizer="sgd", loss=keras.losses.sparse_categorical_crossentropy)
    model.fit(random_video(batch=2, time=3, size=8), np.array([0, 2]), verbose=0)
    loaded = tf.saved_model.load(model.export(str(tmp_path / "m"), verbose=False))
    video = random_video(batch=2, time=3, size=8, seed=4)
    expected = model(video).numpy().mean(axis=1)  # the function takes probabilities
    np.testing.assert_allclose(
        loaded.serve(tf.constant(video))["probabilities"], expected, atol=1e-6
    )


def test_a_refused_stream_frame_leaves_the_stream_as_it_was(tmp_path):
    # A frame of another number of streams failed its check but was still written into
    # the state: the next call of that size ran on 3 streams and returned 2 outputs, and
    # the stream of 2 could not go on.
    model = trained_classifier(num_stages=4)
    loaded = tf.saved_model.load(ks.export_saved_model(model, tmp_path / "m"))
    video = random_video(batch=3, time=6, size=8, seed=9)
    expected = model.pipelined_call(video[:2]).numpy()
    streamed = [loaded.stream(tf.constant(video[:2, t]))["output"] for t in range(3)]
    # A NaN frame gave finite outputs (oneDNN's fused convolutions) and entered the state.
    poisoned = video[:2].copy()
    poisoned[1, :, 4, 4, 0] = np.nan
    for refused in (video[:, 3], video[:0, 3], poisoned[:, 3]):  # 3 streams, none, a NaN
        with pytest.raises(tf.errors.InvalidArgumentError, match="stream: "):
            loaded.stream(tf.constant(refused))
    assert {int(tf.shape(v)[0]) for v in loaded.state} == {2}  # the 2 streams' state, kept
    streamed += [loaded.stream(tf.constant(video[:2, t]))["output"] for t in range(3, 6)]
    np.testing.assert_allclose(np.stack(streamed, 1), expected, atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="serve: clips of 0 frames"):
        loaded.serve(tf.constant(video[:, :0]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="serve: the video holds non-fin"):
        loaded.serve(tf.constant(poisoned))
    # Nor does a refused first frame prime a stream.
    loaded.reset()
    with pytest.raises(tf.errors.InvalidArgumentError, match="stream: the frame holds non-fin"):
        loaded.stream(tf.constant(poisoned[:, 0]))
    assert not bool(loaded.primed.numpy())
    first = loaded.stream(tf.constant(video[:2, 0]))["output"]
    np.testing.assert_allclose(first, expected[:, 0], atol=1e-5)
