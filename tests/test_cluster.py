"""Stages on other processes: two workers on loopback, a client that places stages on them.

The workers are `python -m train.worker` processes, as a user starts them; the
client is `cluster_probe.py` in a subprocess (connecting changes TensorFlow's context for
the whole process, so not this one).
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import run_module

import keras_sideways as ks
from keras_sideways import cluster

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
# float32 through the same kernels on the same CPU: the runtime only moves tensors, so
# the results should agree to the bit; 1e-6 allows one rounding per reduction at most.
TOLERANCE = 1e-6


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Workers:
    """Two worker processes on loopback, started and ended by the test."""

    def __init__(self):
        self.ports = [free_port(), free_port()]
        self.spec = json.dumps({"worker": [f"127.0.0.1:{p}" for p in self.ports]})
        self.processes = [None, None]
        for index in range(2):
            self.start(index)
        for index in range(2):
            self.wait_ready(index)

    def start(self, index):
        self.processes[index] = subprocess.Popen(
            [sys.executable, "-m", "train.worker", "--cluster", self.spec]
            + ["--index", str(index)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=ENV,
        )

    def wait_ready(self, index):
        line = self.processes[index].stdout.readline()  # printed once it serves
        assert "serving at" in line, f"worker {index} did not start: {line!r}"

    def ensure_alive(self):
        """Restarts a worker an earlier test killed."""
        for index, process in enumerate(self.processes):
            if process.poll() is not None:
                process.stdout.close()
                self.start(index)
                self.wait_ready(index)

    def client(self, *args):
        done = subprocess.run(
            [sys.executable, os.path.join(HERE, "cluster_probe.py"), args[0], *map(str, self.ports)]
            + [str(a) for a in args[1:]],
            capture_output=True,
            text=True,
            timeout=240,
            env=ENV,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    def close(self):
        for process in self.processes:
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
            if process is not None:
                process.stdout.close()


@pytest.fixture(scope="module")
def workers():
    started = Workers()
    try:
        yield started
    finally:
        started.close()


@pytest.fixture(scope="module")
def first_client(workers, tmp_path_factory):
    """The client's first run: gradients, fit, checkpoint, export, then worker 1 killed."""
    outdir = tmp_path_factory.mktemp("cluster")
    done = workers.client("first", outdir, workers.processes[1].pid)
    workers.processes[1].wait()  # killed mid-epoch by the client
    return json.loads(done.stdout.strip().splitlines()[-1]), outdir


@pytest.mark.slow
def test_stages_on_two_workers_give_the_gradients_of_one_process(first_client):
    report, outdir = first_client
    # The stages' weights live on the workers' devices, stages 0-1 on task 0, 2 on task 1.
    assert [d.split("/device")[0] for d in report["weight_devices"]] == [
        "/job:worker/replica:0/task:0",
        "/job:worker/replica:0/task:1",
    ]
    assert report["engine"] == "pipeline"  # two devices: auto picks the depth-parallel engine
    workers_devices = [f"/job:worker/replica:0/task:{i}/device:CPU:0" for i in (0, 1)]
    assert report["auto"] == sorted(report["auto"]) and set(report["auto"]) == set(
        workers_devices
    ), report["auto"]  # consecutive blocks over both workers
    for mode in ("sideways", "bp"):
        assert report[mode]["size"] > 1e-4, mode  # gradients that could differ
        assert report[mode]["rel_error"] <= TOLERANCE, mode
    assert report["checkpoint_identical"]  # saved from the workers, loaded back onto them
    # The export needs no cluster: this process never connected to one.
    exported = tf.saved_model.load(str(outdir / "export"))
    outputs = exported.serve(tf.constant(np.load(outdir / "clips.npy")))["frames"]
    expected = np.load(outdir / "outputs.npy")
    np.testing.assert_allclose(outputs.numpy(), expected, rtol=1e-5, atol=1e-6)
    identical = {k: v["identical"] for k, v in report.items() if isinstance(v, dict)}
    print("bit-identical:", identical)  # the aim; the tolerance is the requirement


@pytest.mark.slow
def test_a_killed_worker_is_named_and_a_rerun_resumes_exactly(workers, first_client):
    report, outdir = first_client
    error = report["error"]
    assert error and error.startswith("ClusterError"), error
    assert "/job:worker/replica:0/task:1" in error and "(stages 2)" in error, error
    assert f"127.0.0.1:{workers.ports[1]}" in error, error
    workers.ensure_alive()  # the worker comes back; the same command resumes from the backup
    resumed = json.loads(workers.client("resume", outdir).stdout.strip().splitlines()[-1])
    # Trained on the workers, killed, resumed: the weights of training in one process.
    assert resumed["rel_error"] <= TOLERANCE, resumed
    print("resumed bit-identical:", resumed["identical"])


@pytest.mark.slow
def test_the_training_command_runs_its_stages_on_the_workers(workers, tmp_path):
    workers.ensure_alive()
    done = subprocess.run(
        [sys.executable, "-m", "train.train", "--config", "train/configs/moving_digits.py:tiny"]
        + ["--workdir", str(tmp_path / "two"), f"--config.export_dir={tmp_path / 'exports'}"]
        + ["--cluster", workers.spec, "--stages_on", "0,0,0,1,1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env=ENV,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["engine"] == "pipeline"  # stages on 2 workers: the depth-parallel engine
    assert os.path.isdir(summary["export"])


def test_stages_on_is_checked_against_the_cluster():
    assert cluster.parse_stages_on("0,0,1", 3, 2) == [0, 0, 1]
    assert cluster.parse_stages_on([1, 0], 2, 2) == [1, 0]
    assert cluster.parse_stages_on("auto", 5, 2) == "auto"
    for bad in ("0,2", "0,x,1", "0,1", "first"):
        with pytest.raises(ValueError, match=r"one task index per stage \(3\), each in 0..1"):
            cluster.parse_stages_on(bad, 3, 2)


def test_an_unreachable_task_is_named():
    port = free_port()  # nothing listens there
    spec = {"worker": [f"127.0.0.1:{port}"]}
    with pytest.raises(cluster.ClusterError, match=rf"task:0 at 127.0.0.1:{port} after 0.5 s"):
        cluster.wait_for_tasks(spec, timeout=0.5)


def test_cluster_specs_from_dicts_json_and_tf_config(monkeypatch):
    jobs = {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}
    expected = tf.train.ClusterSpec(jobs).as_dict()
    assert cluster.cluster_spec(jobs).as_dict() == expected
    assert cluster.cluster_spec(json.dumps(jobs)).as_dict() == expected
    tf_config = {"cluster": jobs, "task": {"type": "worker", "index": 1}}
    assert cluster.cluster_spec(tf_config).as_dict() == expected
    monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert cluster.cluster_spec().as_dict() == expected
    assert cluster.task_index() == 1
    with pytest.raises(ValueError, match="must map each job"):
        cluster.cluster_spec({"worker": "127.0.0.1:2222"})
    with pytest.raises(ValueError, match="must be JSON"):
        cluster.cluster_spec("worker=127.0.0.1:2222")
    # Addresses TensorFlow failed on with a traceback (int(), "must be bytes or unicode").
    for task in ("127.0.0.1", 23001, "127.0.0.1:port", "127.0.0.1:70000", ":2222"):
        with pytest.raises(ValueError, match=r'must be a "host:port" address.*got'):
            cluster.cluster_spec({"worker": ["127.0.0.1:2222", task]})
    monkeypatch.setenv("TF_CONFIG", '{"cluster": ')
    with pytest.raises(ValueError, match="TF_CONFIG must be JSON"):
        cluster.task_index()
    monkeypatch.delenv("TF_CONFIG")
    with pytest.raises(ValueError, match="TF_CONFIG is not set"):
        cluster.cluster_spec()
    assert cluster.spread(["a", "b"], 3) == ["a", "a", "b"]
    assert cluster.spread(["a", "b", "c", "d"], 8) == ["a", "a", "b", "b", "c", "c", "d", "d"]


def test_placement_on_a_task_not_connected_is_refused():
    from conftest import tiny_conv_stages

    remote = "/job:worker/replica:0/task:1/device:CPU:0"
    with pytest.raises(ValueError, match="Unknown device.*task:1.*cluster.connect first"):
        ks.SidewaysModel(tiny_conv_stages(num_stages=3), placement=["/CPU:0", "/CPU:0", remote])


def test_task_errors_name_the_task_and_its_stages():
    devices = ["/job:worker/replica:0/task:0/device:CPU:0"] * 2 + [
        "/job:worker/replica:0/task:1/device:CPU:0"
    ]
    lost = tf.errors.UnavailableError(
        None, None, "from remote target /job:worker/replica:0/task:1/device:CPU:0: reset"
    )
    named = cluster.task_error(lost, devices)
    assert isinstance(named, cluster.ClusterError)
    assert "/job:worker/replica:0/task:1 (stages 2)" in str(named)
    assert "task:0" not in str(named).split("TensorFlow said")[0]
    other = tf.errors.InvalidArgumentError(None, None, "bad shape")
    assert cluster.task_error(other, devices) is other  # not a lost task: as it was
    assert cluster.task_error(lost, [None, None, None]) is lost  # no remote stage


def test_a_worker_given_a_cluster_it_cannot_use_is_one_line_of_error():
    def worker(*args):
        done = run_module("train.worker", *args, timeout=120, status=1)
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        return done.stderr.splitlines()[-1]  # (a flag error's: absl's line on --helpshort)

    spec = json.dumps({"worker": ["127.0.0.1:2222"]})
    assert worker("--cluster", spec, "--index", "3") == (
        "error: Task index 3 is not in job 'worker' of the cluster, which has 1 task(s): "
        "{'worker': ['127.0.0.1:2222']}."
    )
    # A port in use was TensorFlow's traceback naming no address; -1 threads aborted it.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        line = worker("--cluster", json.dumps({"worker": [address]}), "--index", "0")
    assert line.startswith(f"error: cannot serve worker 0 at {address}: "), line
    assert "--helpshort" in worker("--cluster", spec, "--index", "0", "--threads", "-1")
