"""Stages on other processes and machines, through TensorFlow's distributed runtime.

A cluster is a `tf.train.ClusterSpec`: named jobs of `host:port` tasks. Each worker
process runs `serve` (a `tf.distribute.Server` that waits for work); the training process
(the client) calls `connect`, after which every device of every task has a name such as
"/job:worker/replica:0/task:1/device:CPU:0" that a `SidewaysModel`'s `placement` may
use. TensorFlow then runs each stage's ops (its weights, its forward and backward) on its
task and moves the tensors that cross a stage boundary between tasks: one activation
forward and one error back per tick (or per block of ticks), no transport written here.

    # on each worker machine (or process):
    CLUSTER='{"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}'
    python -m train.worker --cluster "$CLUSTER" --index 0   # 1 on the other (train/worker.py)

    # in the training process:
    ks.cluster.connect({"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]})
    model = ks.SidewaysModel(stages, placement=ks.cluster.spread(ks.cluster.task_devices(), 4))
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time
from collections.abc import Mapping, Sequence

import tensorflow as tf

WORKER = "worker"  # the job the workers run as
_TASK = re.compile(r"/job:([\w-]+)/replica:\d+/task:(\d+)")


class ClusterError(RuntimeError):
    """A task of the cluster failed or cannot be reached; the message names it."""


def cluster_spec(cluster=None) -> tf.train.ClusterSpec:
    """The cluster as a `tf.train.ClusterSpec`.

    Args:
        cluster: a ClusterSpec; a dict of jobs ({"worker": ["host:port", ...]}); a
            TF_CONFIG dict ({"cluster": {...}, "task": {...}}); either as a JSON string;
            or None for the TF_CONFIG environment variable.

    Raises:
        ValueError: naming what was expected and what was given.
    """
    if isinstance(cluster, tf.train.ClusterSpec):
        return cluster
    given = cluster
    if cluster is None:
        cluster = os.environ.get("TF_CONFIG")
        if not cluster:
            raise ValueError(
                "No cluster given and TF_CONFIG is not set: pass the cluster as a dict of "
                'jobs, e.g. {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}, or as TF_CONFIG.'
            )
    if isinstance(cluster, str):
        try:
            cluster = json.loads(cluster)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"The cluster must be JSON (a dict of jobs or a TF_CONFIG); got {given!r}: {error}."
            ) from error
    if isinstance(cluster, Mapping) and "cluster" in cluster:
        cluster = cluster["cluster"]  # a TF_CONFIG
    if (
        not isinstance(cluster, Mapping)
        or not cluster
        or not all(
            isinstance(tasks, Sequence) and not isinstance(tasks, str) and tasks
            for tasks in cluster.values()
        )
    ):
        raise ValueError(
            'The cluster must map each job to its "host:port" tasks, e.g. {"worker": '
            f'["127.0.0.1:2222", "127.0.0.1:2223"]}}; got {given!r}.'
        )
    for job, tasks in cluster.items():  # (TensorFlow failed on them with a traceback)
        for task in tasks:
            if _host_port(task) is None:
                raise ValueError(
                    f'Each task of the cluster must be a "host:port" address, with a port '
                    f"from 1 to 65535; got {task!r} in job {job!r}."
                )
    return tf.train.ClusterSpec({job: list(tasks) for job, tasks in cluster.items()})


def _host_port(address) -> tuple[str, int] | None:
    """(host, port) of a "host:port" task address ("[::1]:2222": "::1"); None for anything
    else."""
    host, _, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
    if not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]"), int(port)


def task_index(tf_config=None) -> int:
    """This process's task index in a TF_CONFIG (the environment's if None)."""
    config = tf_config if tf_config is not None else os.environ.get("TF_CONFIG", "{}")
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError as error:
            raise ValueError(f"TF_CONFIG must be JSON; got {config!r}: {error}.") from error
    try:
        return int(config["task"]["index"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f'TF_CONFIG needs a "task": {{"type": ..., "index": N}}; got {config!r}.'
        ) from error


def start_server(
    cluster, index: int, job: str = WORKER, threads: int | None = None
) -> tf.distribute.Server:
    """Starts task `index` of `job`: a `tf.distribute.Server`, serving until the process ends.

    `threads` (optional) caps the task's intra- and inter-op thread pools, e.g. 1 to give
    each of several workers on one machine its own core.
    """
    spec = cluster_spec(cluster)
    tasks = spec.job_tasks(job) if job in spec.jobs else []
    if not 0 <= index < len(tasks):
        raise ValueError(
            f"Task index {index} is not in job {job!r} of the cluster, which has "
            f"{len(tasks)} task(s): {spec.as_dict()}."
        )
    config = None
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a whole number >= 1; got {threads!r}.")
        config = tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=threads, inter_op_parallelism_threads=threads
        )
    return tf.distribute.Server(spec, job_name=job, task_index=index, config=config)


def serve(cluster, index: int, job: str = WORKER, threads: int | None = None) -> None:
    """Runs task `index` of `job` (`start_server`) and waits for work; never returns.

    `python -m train.worker` is this, from the command line.
    """
    start_server(cluster, index, job, threads).join()


def connect(cluster=None, timeout: float = 60.0) -> tf.train.ClusterSpec:
    """Connects this process to the cluster's tasks, as a client of them.

    After it, `task_devices()` lists the remote devices, which stage `placement` may name.
    Call it before building any model (it resets TensorFlow's eager context). TensorFlow
    waits without end for a task that does not answer, so each task's address is tried
    first, for up to `timeout` seconds in all.

    Returns:
        The ClusterSpec connected to.

    Raises:
        ClusterError: naming a task that could not be reached, and its address.
    """
    spec = cluster_spec(cluster)
    wait_for_tasks(spec, timeout)
    # A ClusterSpec, not a resolver: with a SimpleClusterResolver the client's own job is
    # not added and remote device names come out unknown.
    tf.config.experimental_connect_to_cluster(spec)
    _connected["spec"] = spec
    return spec


def wait_for_tasks(cluster, timeout: float = 60.0) -> None:
    """Waits until every task of the cluster accepts a connection at its address.

    Raises:
        ClusterError: naming the first task still unreachable after `timeout` seconds.
    """
    spec = cluster_spec(cluster)
    deadline = time.monotonic() + timeout
    for job in spec.jobs:
        for index, address in enumerate(spec.job_tasks(job)):
            while True:
                try:
                    with socket.create_connection(_host_port(address), timeout=1.0):
                        break
                except OSError as error:
                    if time.monotonic() > deadline:
                        raise ClusterError(
                            f"Cannot reach the cluster task /job:{job}/replica:0/task:{index} "
                            f"at {address} after {timeout:g} s ({error}). Start it first: "
                            f"python -m train.worker --cluster '<the cluster>' "
                            f"--index {index}."
                        ) from error
                    time.sleep(0.2)


def task_devices(kind: str | None = None, job: str = WORKER) -> list[str]:
    """One device per task of `job` of the connected cluster, task 0 first.

    `kind` ("GPU", "CPU"): the first device of that kind on each task; None: a GPU where
    the task has one, else its CPU.
    """
    by_task: dict[int, list[str]] = {}
    for device in tf.config.list_logical_devices():
        spec = tf.DeviceSpec.from_string(device.name)
        if spec.job == job:
            by_task.setdefault(spec.task or 0, []).append(device.name)
    if not by_task:
        raise ValueError(
            f"No devices of job {job!r}: connect to a cluster with that job first "
            "(keras_sideways.cluster.connect)."
        )
    chosen = []
    for task in sorted(by_task):
        kinds = [kind] if kind else ["GPU", "CPU"]
        names = [
            n for k in kinds for n in by_task[task] if tf.DeviceSpec.from_string(n).device_type == k
        ]
        if not names:
            raise ValueError(f"Task {task} of job {job!r} has no {kind} device: {by_task[task]}.")
        chosen.append(names[0])
    return chosen


def spread(devices: Sequence[str], num_stages: int) -> list[str]:
    """A placement of `num_stages` stages over `devices` in consecutive, near-equal blocks."""
    count = len(devices)
    return [devices[k * count // num_stages] for k in range(num_stages)]


def parse_stages_on(stages_on: str | Sequence[int], num_stages: int, num_tasks: int):
    """ "auto", "even", or one task index per stage as a list: `stages_on` checked.

    Args:
        stages_on: "auto" (balance measured stage costs over the tasks: the model's
            placement="auto"), "even" (consecutive blocks of near-equal counts, `spread`),
            or one task index per stage, bottom first, as ints or "0,0,1,1".
        num_stages: the model's stages.
        num_tasks: the tasks of the job the stages go to.

    Raises:
        ValueError: naming what was expected and what was given.
    """
    if stages_on in ("auto", "even"):
        return stages_on
    given = stages_on
    if isinstance(stages_on, str):
        try:
            stages_on = [int(i) for i in stages_on.split(",")]
        except ValueError:
            stages_on = None
    if (
        stages_on is None
        or len(stages_on) != num_stages
        or not all(0 <= i < num_tasks for i in stages_on)
    ):
        raise ValueError(
            f"expected 'auto', 'even' or one task index per stage ({num_stages}), each in "
            f"0..{num_tasks - 1} (the cluster's tasks); got {given!r}."
        )
    return list(stages_on)


def stages_on_tasks(stages_on: str | Sequence[int], num_stages: int, job: str = WORKER):
    """A placement from the task of each stage (`parse_stages_on`) on the connected
    cluster's `job`: "auto", or one device per stage (`task_devices`)."""
    devices = task_devices(job=job)
    parsed = parse_stages_on(stages_on, num_stages, len(devices))
    if parsed == "auto":
        return "auto"
    if parsed == "even":
        return spread(devices, num_stages)
    return [devices[i] for i in parsed]


def task_error(error: Exception, devices: Sequence[str | None]) -> Exception:
    """A `ClusterError` naming the task (and its stages) behind a failed cluster call.

    `error` is what TensorFlow raised (an `OpError`); where its message names a task
    of `devices`, or it says a task is unreachable, the ClusterError names that task, its
    address where known, and the stages placed on it. Other errors come back as they are.
    """
    if not isinstance(error, tf.errors.OpError):
        return error
    text = str(error)
    tasks = _tasks_of(devices)
    if not tasks:  # every stage in this process: nothing of a cluster to name
        return error
    named = [t for t in tasks if _task_key(t) in {(j, int(i)) for j, i in _TASK.findall(text)}]
    lost = isinstance(error, tf.errors.UnavailableError | tf.errors.AbortedError) or any(
        word in text
        for word in ("unavailable", "Connection reset", "Socket closed", "failed to connect")
    )
    if not named and not lost:
        return error
    named = named or list(tasks)
    described = "; ".join(
        f"{t}{_address(t)} (stages {', '.join(map(str, tasks[t]))})" for t in named
    )
    return ClusterError(
        f"Lost the cluster task {described}: it died or cannot be reached. Restart it "
        "(python -m train.worker --cluster ... --index N), then rerun the training "
        f"command to resume from its last backup. TensorFlow said: {type(error).__name__}: "
        f"{text.strip().splitlines()[0] if text.strip() else ''}"
    )


@contextlib.contextmanager
def naming_lost_tasks(devices: Sequence[str | None]):
    """Re-raises a TensorFlow error of a lost task as a `ClusterError` naming it (`task_error`)."""
    try:
        yield
    except tf.errors.OpError as error:
        named = task_error(error, devices)
        if named is error:
            raise
        raise named from error


def _tasks_of(devices: Sequence[str | None]) -> dict[str, list[int]]:
    """The remote tasks among `devices`, each with the stages placed on it."""
    tasks: dict[str, list[int]] = {}
    for k, device in enumerate(devices):
        spec = None if device is None else tf.DeviceSpec.from_string(device)
        if spec is not None and spec.job not in (None, "localhost"):
            name = f"/job:{spec.job}/replica:{spec.replica or 0}/task:{spec.task or 0}"
            tasks.setdefault(name, []).append(k)
    return tasks


def remote_tasks(devices: Sequence[str | None]) -> list[str]:
    """The tasks of other processes that `devices` (one per stage) name."""
    return list(_tasks_of(devices))


def _task_key(task: str) -> tuple[str, int]:
    ((job, index),) = _TASK.findall(task)
    return job, int(index)


def _address(task: str) -> str:
    """ " at host:port" for a task of the connected cluster, else ""."""
    job, index = _task_key(task)
    spec = _connected.get("spec")
    try:
        return f" at {spec.task_address(job, index)}" if spec is not None else ""
    except (ValueError, KeyError):
        return ""


_connected: dict = {}
