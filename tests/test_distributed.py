"""tf.distribute (mirrored, multi-worker), XLA, and surviving a kill: backups and checkpoints."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import random_video, run_module, tiny_conv_stages

import keras_sideways as ks

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def run_probe(name, *args, timeout=300):
    done = subprocess.run(
        [sys.executable, os.path.join(HERE, name), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_mirrored_strategy_step_equals_a_single_device_step():
    report = json.loads(run_probe("distribute_probe.py"))
    assert report["replicas"] == 2
    for run, figures in report["runs"].items():
        assert figures["update_size"] > 1e-3, run  # the step did change the weights
        assert figures["max_difference"] < 1e-5, run
        assert figures["uneven_update_size"] > 1e-3, run
        assert figures["uneven_difference"] < 1e-5, run  # 2 clips and 1: as one device
        assert figures["skipped_after_nan"] == 1.0, run  # counted once, not per replica
        assert figures["loss"] == pytest.approx(figures["single_loss"], rel=1e-5), run
        assert figures["evaluate"] == pytest.approx(figures["single_evaluate"], rel=1e-5), run
        assert figures["unchanged_after_nan"], run
    assert "cannot be combined with a 2-replica tf.distribute strategy" in report["placement_error"]


@pytest.mark.slow
def test_replicas_of_a_placed_pipeline_step_as_one_device():
    # 2 replicas x 2 stages on 4 logical CPUs (MirroredStrategy over the replicas' first
    # devices): the all-reduced step on a global batch of 4 is one device's step on it.
    report = json.loads(run_probe("data_depth_probe.py"))
    for mode in ("sideways", "bp"):
        figures = report[mode]
        assert figures["update"] > 1e-3, mode  # the step did change the weights
        assert figures["rel_error"] <= 1e-5, (mode, figures["rel_error"])
        # Each replica runs each stage on its own device.
        assert sorted(map(tuple, figures["ops"])) == [
            (0, 0, "/CPU:0"),
            (0, 1, "/CPU:2"),
            (1, 0, "/CPU:1"),
            (1, 1, "/CPU:3"),
        ], figures["ops"]
    assert report["sideways"]["engine"] == "pipeline"


@pytest.mark.slow
def test_the_training_command_runs_replicas_of_a_placed_pipeline(tmp_path):
    run_module(
        "train.train",
        "--config=train/configs/moving_digits.py:tiny",
        f"--workdir={tmp_path / 'two_by_two'}",
        f"--config.export_dir={tmp_path / 'exports'}",
        "--strategy=mirrored",
        "--logical_cpus=4",
        "--replicas=2",
    )
    summary = json.loads((tmp_path / "two_by_two" / "summary.json").read_text())
    assert summary["engine"] == "pipeline"  # each replica's stages span 2 devices
    assert summary["distribution"] == dict(strategy="MirroredStrategy", replicas=2)
    assert os.path.isdir(summary["export"])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_distribution_the_command_cannot_run_is_one_line_of_error(tmp_path):
    def train(*flags, tf_config=None, status=1):
        env = dict(ENV, TF_CONFIG=tf_config) if tf_config else ENV
        done = subprocess.run(
            [sys.executable, "-m", "train.train", "--config=train/configs/moving_digits.py:tiny"]
            + [f"--workdir={tmp_path / 'run'}", "--config.export_dir=", *flags],
            cwd=os.path.dirname(HERE),
            capture_output=True,
            text=True,
            timeout=240,
            env=env,
        )
        assert done.returncode == status, done.stderr[-3000:]
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        return done.stderr.strip().splitlines()[-1]

    # Batches of 4 over 3 replicas split 2, 2 and 0: oneDNN's convolution failed on the
    # empty one, a traceback.
    assert train("--strategy=mirrored", "--logical_cpus=3") == (
        "error: config.data.batch_size: expected a multiple of the 3 replicas, which share "
        "each batch; got 4."
    )
    # A worker of TF_CONFIG that never starts: it waited for it without end, and neither
    # Ctrl-C nor SIGTERM stopped it. Waiting in C++ that holds Python's lock, it is ended
    # by a watching process: SIGKILL.
    own, peer = free_port(), free_port()  # nothing listens at the peer's
    tf_config = {
        "cluster": {"worker": [f"127.0.0.1:{own}", f"127.0.0.1:{peer}"]},
        "task": {"type": "worker", "index": 0},
    }
    line = train(
        "--strategy=multi_worker",
        "--connect_timeout=1",
        tf_config=json.dumps(tf_config),
        status=-signal.SIGKILL,
    )
    assert line.startswith(
        "error: --strategy=multi_worker: cannot reach the cluster task /job:worker/task:1 at "
        f"127.0.0.1:{peer} after 1 s ("
    ), line
    tf_config["task"]["index"] = 5
    line = train("--strategy=multi_worker", tf_config=json.dumps(tf_config))
    assert line == (
        "error: --strategy=multi_worker: TF_CONFIG: its task ('worker', index 5) is not one of "
        f"its cluster's: {{'worker': ['127.0.0.1:{own}', '127.0.0.1:{peer}']}}."
    )


@pytest.mark.slow
def test_multi_worker_training_ends_with_identical_weights(tmp_path):
    ports = [free_port(), free_port()]
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                os.path.join(HERE, "multiworker_probe.py"),
                str(i),
                *map(str, ports),
                str(tmp_path / f"worker{i}.npz"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for i in range(2)
    ]
    try:
        outputs = [w.communicate(timeout=240) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    for w, (_, err) in zip(workers, outputs):
        assert w.returncode == 0, err[-3000:]
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert all(r["replicas"] == 2 for r in reports)
    assert reports[0]["loss"] == reports[1]["loss"]
    first, second = np.load(tmp_path / "worker0.npz"), np.load(tmp_path / "worker1.npz")
    assert len(first.files) == 8
    for key in first.files:
        np.testing.assert_array_equal(first[key], second[key])


@pytest.mark.parametrize(
    "mode, engine", [("sideways", "batched"), ("sideways", "pipeline"), ("bp", "auto")]
)
def test_train_step_compiles_with_xla(mode, engine):
    video, labels = random_video(batch=2, time=5), np.array([0, 2])
    data = tf.data.Dataset.from_tensors((video, labels))
    weights = []
    for jit in (False, True):
        keras.utils.set_random_seed(0)
        model = ks.SidewaysModel(tiny_conv_stages(), mode=mode, engine=engine)
        model.compile(
            optimizer=keras.optimizers.SGD(0.5),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit,
        )
        model.fit(data, epochs=1, verbose=0)
        assert model.jit_compile == jit
        weights.append([v.numpy() for v in model.trainable_variables])
    for plain, compiled in zip(*weights):
        np.testing.assert_allclose(plain, compiled, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("stateful", [False, True], ids=["batched", "stateful-pipeline"])
def test_training_killed_mid_epoch_resumes_to_the_same_weights(tmp_path, stateful):
    flags = ["--stateful"] if stateful else []
    run_probe("resume_probe.py", tmp_path / "straight", tmp_path / "straight.npz", *flags)

    workdir = tmp_path / "killed"
    workdir.mkdir()
    probe = [
        sys.executable,
        os.path.join(HERE, "resume_probe.py"),
        str(workdir),
        str(tmp_path / "unused.npz"),
        "--stall-at",
        "1",
        "2",
        *flags,
    ]
    victim = subprocess.Popen(probe, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    try:
        deadline = time.time() + 240
        while not (workdir / "stalled").exists():
            assert victim.poll() is None, victim.stderr.read()[-3000:]
            assert time.time() < deadline, "the training run never reached the kill point"
            time.sleep(0.2)
        os.kill(victim.pid, signal.SIGKILL)  # mid-epoch 1, after epoch 0's backup
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.wait()
    assert victim.returncode == -signal.SIGKILL
    backup = workdir / "backup"
    assert sorted(os.listdir(backup)) == ["latest.weights.h5", "training_metadata.json"]

    run_probe("resume_probe.py", workdir, tmp_path / "resumed.npz", *flags)
    straight, resumed = np.load(tmp_path / "straight.npz"), np.load(tmp_path / "resumed.npz")
    assert straight.files == resumed.files and any(k.startswith("opt") for k in straight.files)
    for key in straight.files:
        np.testing.assert_allclose(resumed[key], straight[key], atol=1e-5, err_msg=key)


def test_missing_or_corrupt_checkpoint_names_the_file(tmp_path):
    model = ks.SidewaysModel(tiny_conv_stages())
    model.build((2, 4, 8, 8, 1))
    with pytest.raises(
        ks.CheckpointError, match=f"No checkpoint at {tmp_path / 'none.weights.h5'}"
    ):
        model.load_weights(tmp_path / "none.weights.h5")
    corrupt = tmp_path / "corrupt.weights.h5"
    corrupt.write_bytes(b"\x89HDF\r\n" + os.urandom(64))
    with pytest.raises(ValueError, match=f"Cannot load the checkpoint {corrupt}"):
        model.load_weights(corrupt)
    model.save_weights(tmp_path / "good.weights.h5")
    model.load_weights(tmp_path / "good.weights.h5")  # a good one still loads
    other = ks.SidewaysModel(tiny_conv_stages(num_stages=3))  # the same layers, 3 stages
    other.build((2, 4, 8, 8, 1))
    with pytest.raises(
        ks.CheckpointError,
        match="the file holds 4 layers at its top; this model holds 3, its stages\\)",
    ):
        other.load_weights(tmp_path / "good.weights.h5")
