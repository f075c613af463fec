"""Loading exports with clear errors, classifying a real video file, the predict script."""

import json
import os
import re
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import random_video, sample_video, strays

import keras_sideways as ks
from keras_sideways import inference, models
from keras_sideways.data import video_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ["archery", "bowling", "cycling"]


@pytest.fixture(scope="module")
def classifier():
    keras.utils.set_random_seed(0)
    model = ks.SidewaysModel(models.vgg_classifier(3, num_stages=3, width=2))
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(
        random_video(batch=2, time=4, size=16, channels=3), np.array([0, 2]), epochs=1, verbose=0
    )
    return model


@pytest.fixture(scope="module")
def exported(classifier, tmp_path_factory):
    path = tmp_path_factory.mktemp("exports") / "tiny"
    meta = dict(class_names=NAMES, clip_length=4, temporal_stride=2)
    return ks.export_saved_model(classifier, path, metadata=meta)


def predict(*args):
    """Runs `python -m train.predict args` from the repository root: (status, stdout, stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "train.predict", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, done.stdout, done.stderr


def train_and_export(config, root):
    """Trains `config` with the training command; returns its export folder."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "train.train",
            f"--config={config}",
            f"--workdir={root / 'runs' / 'run'}",
            f"--config.export_dir={root / 'saved_models'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return root / "saved_models" / "run"


@pytest.fixture(scope="module")
def reconstruction_export(tmp_path_factory):
    config = "train/configs/moving_digits_autoencode.py:tiny"
    return train_and_export(config, tmp_path_factory.mktemp("autoencode"))


def test_classify_video_file_scores_the_centre_clip(exported):
    video = sample_video("bikes")
    top = inference.classify_video_file(exported, video, top=2)
    assert len(top) == 2 and top[0][1] >= top[1][1]
    assert {name for name, _ in top} <= {"archery", "bowling", "cycling"}
    frames = video_files.count_frames(video)
    start = (frames - 7) // 2
    clip = video_files.read_clip(video, start + np.arange(4) * 2, (16, 16)) / np.float32(255)
    model, _ = inference.load_export(exported)
    expected = model.serve(tf.constant(clip[None], tf.float32))["probabilities"].numpy()[0]
    assert top[0][1] == pytest.approx(expected.max(), abs=1e-6)


PREDICT_LINES = re.compile(r" *\d\.\d{4}  \S.*")  # a probability, a class name


def test_predict_script_prints_the_top_classes(exported):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "train.predict",
            f"--model={exported}",
            f"--video={sample_video('bigbuckbunny')}",
            "--top=3",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"},  # a user's
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == "" and strays(result.stdout, PREDICT_LINES) == []  # quiet
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    probabilities = [float(line.split()[0]) for line in lines]
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-3)


def test_predict_script_reports_a_missing_export_in_one_line(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-m", "train.predict", f"--model={tmp_path / 'none'}", "--video=x.mp4"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: No exported model at {tmp_path / 'none'}: not a folder."
    ]


@pytest.mark.parametrize("top", [0, -1, 1.5])
def test_a_top_below_one_is_refused(exported, top):  # -1 once returned all classes but one
    with pytest.raises(ValueError, match=f"top: expected .* an int >= 1; got {top}"):
        inference.classify_video_file(exported, sample_video("bikes"), top=top)


def test_a_file_that_is_not_a_video_is_named(exported, tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match=f"Cannot decode the video {tmp_path / 'clip.mp4'}"):
        inference.classify_video_file(exported, tmp_path / "clip.mp4")


def test_a_missing_video_is_named_before_the_export_loads(exported, tmp_path, monkeypatch):
    def loaded(path):
        raise AssertionError("the export was loaded first")

    monkeypatch.setattr(inference, "load_export", loaded)
    for path, what in ((tmp_path / "clip.mp4", "no such file"), (tmp_path, "a folder")):
        with pytest.raises(ValueError, match=f"Cannot read the video {path}: {what}"):
            inference.classify_video_file(exported, path)


def test_missing_and_corrupt_exports_name_the_path(tmp_path, exported):
    with pytest.raises(ValueError, match=f"No exported model at {tmp_path / 'nothing'}"):
        inference.load_export(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=f"{tmp_path / 'empty'} is not a keras_sideways export"):
        inference.load_export(tmp_path / "empty")
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    (broken / "saved_model.pb").write_bytes(b"not a protobuf")
    with pytest.raises(ValueError, match=f"Cannot load the exported model at {broken}"):
        inference.load_export(broken)
    # A variables file cut short (an interrupted copy): TensorFlow's IndexError came through.
    cut = tmp_path / "cut"
    shutil.copytree(exported, cut)
    (data,) = (cut / "variables").glob("variables.data-*")
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    with pytest.raises(ValueError, match=f"Cannot load the exported model at {cut}: IndexError"):
        inference.load_export(cut)


def test_a_video_path_with_a_colon_is_read_as_a_file_not_a_url(exported, tmp_path, monkeypatch):
    # FFmpeg read "take:1.mp4" as a URL of protocol "take": "Protocol not found".
    shutil.copy(sample_video("bikes"), tmp_path / "take:1.mp4")
    monkeypatch.chdir(tmp_path)
    expected = inference.classify_video_file(exported, sample_video("bikes"), top=np.int64(2))
    assert inference.classify_video_file(exported, "take:1.mp4", top=2) == expected


def test_undecodable_video_names_the_file(tmp_path, exported):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(ValueError, match=f"Cannot decode the video {bad}"):
        inference.classify_video_file(exported, bad)


def metadata(path):
    with open(os.path.join(path, "sideways.json")) as f:
        return json.load(f)


@pytest.mark.slow
def test_the_training_command_exports_no_class_names_for_a_reconstruction(reconstruction_export):
    meta = metadata(reconstruction_export)  # a classifier's: test_training.py (motion tasks)
    assert "class_names" not in meta  # it once had the digits' names, 0 to 9
    assert (meta["clip_length"], meta["temporal_stride"]) == (5, 1)


REFUSED = (
    "The model at {} is not a classifier: its serve returns no 'probabilities' but only "
    "'frames' \\(per-frame outputs, shape \\[batch, time, 16, 16, 1\\]\\); "
    "predict classifies clips."
)


@pytest.mark.slow
def test_an_export_whose_serve_returns_no_probabilities_is_refused(reconstruction_export, tmp_path):
    video = sample_video("bikes")
    with pytest.raises(ValueError, match=REFUSED.format(reconstruction_export)):
        inference.classify_video_file(reconstruction_export, video)
    old = tmp_path / "old"  # exported before the fix: the digits' class names, and no classifier
    shutil.copytree(reconstruction_export, old)
    (old / "sideways.json").write_text(json.dumps(dict(metadata(old), class_names=list("0123"))))
    with pytest.raises(ValueError, match=REFUSED.format(old)):
        inference.classify_video_file(old, video)
    status, stdout, stderr = predict(f"--model={old}", f"--video={video}")
    assert (status, stdout) == (1, "")
    assert len(stderr.splitlines()) == 1  # no traceback (was KeyError: 'probabilities')
    assert re.fullmatch("error: " + REFUSED.format(old), stderr.strip())


def test_a_classifier_exported_without_class_names_names_the_classes_by_index(
    classifier, exported, tmp_path
):
    video = sample_video("bikes")
    path = classifier.export(tmp_path / "nameless", metadata=dict(clip_length=4, temporal_stride=2))
    nameless = inference.classify_video_file(path, video, top=3)
    named = inference.classify_video_file(exported, video, top=3)
    assert nameless == [(f"class {NAMES.index(name)}", p) for name, p in named]


def missing_clip_length(path, missing):
    return (
        f"The export at {path} does not say how long a clip it takes: {path}/sideways.json has "
        f"{missing}. Export it with ks.export_saved_model(model, path, metadata=dict("
        "clip_length=<frames per training clip>, temporal_stride=<step between them, default "
        "1>, class_names=<a name per class, default 'class 0', ...>)), or add them to that file."
    )


@pytest.mark.parametrize(
    "meta, missing",
    [
        (None, "no clip_length and no temporal_stride"),  # `model.export(path)`
        (dict(class_names=NAMES), "no clip_length and no temporal_stride"),
        (dict(class_names=NAMES, temporal_stride=2), "no clip_length"),
    ],
    ids=["no-metadata", "class-names-only", "no-clip-length"],
)
def test_an_export_without_its_clip_length_says_which_metadata_to_give(
    classifier, tmp_path, meta, missing
):
    path = str(classifier.export(tmp_path / "m", metadata=meta))
    with pytest.raises(ValueError) as error:  # was KeyError: 'clip_length', or "no class names"
        inference.classify_video_file(path, sample_video("bikes"))
    assert str(error.value) == missing_clip_length(path, missing)


def test_predict_reports_an_export_without_metadata_in_one_line(classifier, tmp_path):
    path = str(ks.export_saved_model(classifier, tmp_path / "m"))
    status, stdout, stderr = predict(f"--model={path}", f"--video={sample_video('bikes')}")
    message = missing_clip_length(path, "no clip_length and no temporal_stride")
    assert (status, stdout, stderr) == (1, "", f"error: {message}\n")  # was "no class names"


def test_the_temporal_stride_defaults_to_every_frame(classifier, tmp_path):
    video = sample_video("bikes")
    path = classifier.export(tmp_path / "m")
    with open(os.path.join(path, "sideways.json"), "w") as f:  # written by hand, as told
        json.dump(dict(class_names=NAMES, clip_length=4), f)  # no frame shape: serve's
    top = inference.classify_video_file(path, video, top=1)  # was KeyError: 'temporal_stride'
    start = (video_files.count_frames(video) - 4) // 2
    clip = video_files.read_clip(video, start + np.arange(4), (16, 16)) / np.float32(255)
    model, _ = inference.load_export(path)
    expected = model.serve(tf.constant(clip[None], tf.float32))["probabilities"].numpy()[0]
    assert top == [(NAMES[int(np.argmax(expected))], pytest.approx(expected.max(), abs=1e-6))]


@pytest.mark.parametrize(
    "meta, error",
    [
        (dict(class_names=NAMES[:2], clip_length=4), "class_names names 2 classes .* scores 3"),
        (dict(clip_length=0), "clip_length: expected an int >= 1; got 0"),
        (
            dict(clip_length=4, temporal_stride="2"),
            "temporal_stride: expected an int >= 1; got '2'",
        ),
    ],
    ids=["too-few-names", "clip-length", "stride"],
)
def test_metadata_predict_cannot_use_is_named(classifier, tmp_path, meta, error):
    path = classifier.export(tmp_path / "m", metadata=meta)
    with pytest.raises(ValueError, match=f"{path}/sideways.json: {error}"):
        inference.classify_video_file(path, sample_video("bikes"))


def test_a_video_shorter_than_the_clip_is_classified_with_a_warning(classifier, tmp_path):
    # 4 frames 1000 apart span 3001, far more than bikes.mp4 has: it was silent.
    meta = dict(class_names=NAMES, clip_length=4, temporal_stride=1000)
    sparse = ks.export_saved_model(classifier, tmp_path / "sparse", metadata=meta)
    video = sample_video("bikes")
    frames = video_files.count_frames(video)
    message = f"has {frames} frames; a clip of 4 frames 1000 apart spans 3001: its last frame"
    with pytest.warns(UserWarning, match=f"{message} stands in for the 3 frames the clip lacks"):
        inference.classify_video_file(sparse, video)
    status, out, err = predict(f"--model={sparse}", f"--video={video}", "--top=2")
    assert status == 0 and len(out.strip().splitlines()) == 2, err[-2000:]
    assert [line for line in err.splitlines() if message in line] == [
        f"warning: The video {video} {message} stands in for the 3 frames the clip lacks."
    ]


def test_a_grey_model_classifies_the_luma_of_the_video(tmp_path):
    # Grey clips were the mean of R, G and B; the builders train on the BT.601 luma.
    keras.utils.set_random_seed(0)
    model = ks.SidewaysModel(models.vgg_classifier(3, num_stages=2, width=2))
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(random_video(batch=2, time=4, size=16), np.array([0, 2]), epochs=1, verbose=0)
    path = ks.export_saved_model(model, tmp_path / "grey", metadata=dict(clip_length=4))
    video = sample_video("bikes")
    top = inference.classify_video_file(path, video, top=3)
    frames = video_files.count_frames(video)
    rgb = video_files.read_clip(video, (frames - 4) // 2 + np.arange(4), (16, 16))
    luma = (rgb / np.float32(255)) @ np.array([0.299, 0.587, 0.114], np.float32)
    loaded, _ = inference.load_export(path)
    expected = loaded.serve(tf.constant(luma[None, ..., None]))["probabilities"].numpy()[0]
    assert [p for _, p in top] == pytest.approx(sorted(expected, reverse=True), abs=1e-6)
