"""Loading exports with clear errors, classifying a real video file, the predict script."""

import os
import re
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


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = ks.SidewaysModel(models.vgg_classifier(3, num_stages=3, width=2))
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(
        random_video(batch=2, time=4, size=16, channels=3), np.array([0, 2]), epochs=1, verbose=0
    )
    path = tmp_path_factory.mktemp("exports") / "tiny"
    meta = dict(class_names=["archery", "bowling", "cycling"], clip_length=4, temporal_stride=2)
    return ks.export_saved_model(model, path, metadata=meta)


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


def test_missing_and_corrupt_exports_name_the_path(tmp_path, exported):
    with pytest.raises(ValueError, match=f"No exported model at {tmp_path / 'nothing'}"):
        inference.load_export(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=f"{tmp_path / 'empty'} is not a keras_sideways export"):
        inference.load_export(tmp_path / "empty")
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(exported, broken)
    (broken / "saved_model.pb").write_bytes(b"not a protobuf")
    with pytest.raises(ValueError, match=f"Cannot load the exported model at {broken}"):
        inference.load_export(broken)


def test_undecodable_video_names_the_file(tmp_path, exported):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(ValueError, match=f"Cannot decode the video {bad}"):
        inference.classify_video_file(exported, bad)
