"""Stage placement: which device runs each pipeline stage, given or balanced by measured cost.

`"auto"` partitions consecutive stages over the visible devices so that the slowest
device's share of a tick is as small as possible, from per-stage forward+backward times
measured on a sample batch (as torchgpipe's `balance_by_time` does).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence

import keras
import tensorflow as tf

from keras_sideways.engines import tick_layers


def visible_devices() -> list:
    """The devices stages may go to: the GPUs (or TPUs) if any, else the CPUs.

    In a process connected to a cluster (`keras_sideways.cluster.connect`), the devices
    of the cluster's tasks, not this client's own.
    """
    for kind in ("TPU", "GPU", "CPU"):
        devices = [d.name for d in tf.config.list_logical_devices(kind)]
        remote = [d for d in devices if _job(d) != LOCAL_JOB]
        if remote or devices:
            return remote or devices
    return ["/CPU:0"]


LOCAL_JOB = "localhost"  # the job of this process's own devices, connected or not


def _job(device: str) -> str:
    return tf.DeviceSpec.from_string(device).job or LOCAL_JOB


def _device_key(device: str) -> tuple:
    """One device however it is written ("/cpu:0", "CPU:0", "/device:CPU:0",
    "/job:localhost/replica:0/task:0/device:CPU:0"): its job, replica, task, type and index."""
    spec = tf.DeviceSpec.from_string(device)
    kind = (spec.device_type or "").upper() or None  # no type: names no device of a task
    return (spec.job or LOCAL_JOB, spec.replica or 0, spec.task or 0, kind, spec.device_index or 0)


def distinct_devices(devices: Sequence[str | None]) -> int:
    """How many devices `devices` name (None left out), one however it is written."""
    return len({_device_key(d) for d in devices if d is not None})


def check_placement(placement: Sequence[str], num_stages: int) -> list:
    """Returns `placement` as a list after checking one visible device per stage."""
    placement = list(placement)
    if len(placement) != num_stages:
        raise ValueError(
            f"placement needs one device per stage ({num_stages}); got {len(placement)}: "
            f"{placement}."
        )
    for device in unknown_devices(placement):
        hint = ""
        if _job(device) != LOCAL_JOB:
            hint = " (a device of another task needs keras_sideways.cluster.connect first)"
        names = [d.name for d in tf.config.list_logical_devices()]
        raise ValueError(
            f"Unknown device {device!r} in placement{hint}; visible devices: {', '.join(names)}."
        )
    return placement


def unknown_devices(placement: Sequence[str]) -> list[str]:
    """The devices of `placement` that this process does not see. A device of another task
    ("/job:worker/task:1/device:CPU:0") must be one of the connected cluster's; one without
    a job is this process's."""
    visible = {_device_key(d.name) for d in tf.config.list_logical_devices()}
    return [device for device in placement if _device_key(device) not in visible]


def device_scope(device: str | None):
    """`tf.device(device)`, or no scope at all for None."""
    return contextlib.nullcontext() if device is None else tf.device(device)


def measure_stage_costs(
    stages: Sequence[keras.layers.Layer],
    frame_batch: tf.Tensor,
    repeats: int = 3,
    graph=None,
) -> list:
    """Seconds of one forward and backward pass of each stage on its input for `frame_batch`.

    Each stage is timed alone, on the outputs of the stages it reads in `graph` (a
    `StageGraph`; None: the chain of `stages`, `graph.of_stages`), with the best of
    `repeats` runs after one warm-up run.
    """
    from keras_sideways import graph as graphs  # the engines import this module
    from keras_sideways.engines import windows

    graph = graph or graphs.of_stages(stages)
    costs, outputs, frame_batch = [], [], tf.convert_to_tensor(frame_batch)
    for k, stage in enumerate(stages):
        x = graph.input_of(k, frame_batch, outputs)
        size = graph.windows[k]  # a temporal stage is timed on a window of its input
        x = windows.tick_window(windows.primed_history(x, size), x)
        stage(x)  # built, so that what timing changes can be put back
        state = tick_layers.state_variables([stage])  # batch-norm statistics, seeds
        saved = [v.numpy() for v in state]
        weights = [v.value for v in stage.trainable_variables]

        @tf.function
        def step(inputs, stage=stage, weights=weights):
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                out = stage(inputs, training=True)
            grads = tape.gradient(out, [inputs] + weights, output_gradients=tf.ones_like(out))
            return out, grads

        out, _ = step(x)  # warm-up: tracing and first-run allocations
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            _, grads = step(x)
            [g.numpy() for g in tf.nest.flatten(grads) if g is not None]
            best = min(best, time.perf_counter() - start)
        for variable, value in zip(state, saved):
            variable.assign(value)
        costs.append(best)
        outputs.append(out)
    return costs


def balanced_partition(costs: Sequence[float], num_devices: int) -> list:
    """Device index of each stage: consecutive blocks with the smallest largest block cost."""
    n = len(costs)
    parts = min(num_devices, n)
    prefix = [0.0]
    for c in costs:
        prefix.append(prefix[-1] + c)
    inf = float("inf")
    # best[p][i]: the smallest largest-block cost of the first i stages in p blocks.
    best = [[inf] * (n + 1) for _ in range(parts + 1)]
    cut = [[0] * (n + 1) for _ in range(parts + 1)]
    best[0][0] = 0.0
    for p in range(1, parts + 1):
        for i in range(p, n + 1):
            for j in range(p - 1, i):
                cost = max(best[p - 1][j], prefix[i] - prefix[j])
                if cost < best[p][i]:
                    best[p][i], cut[p][i] = cost, j
    assignment, i = [0] * n, n
    for p in range(parts, 0, -1):
        j = cut[p][i]
        for k in range(j, i):
            assignment[k] = p - 1
        i = j
    return assignment


def predicted_speedup(costs: Sequence[float], assignment: Sequence[int]) -> float:
    """One device's tick time over the pipelined tick time (the slowest device's share)."""
    loads = {}
    for cost, device in zip(costs, assignment):
        loads[device] = loads.get(device, 0.0) + cost
    return sum(costs) / max(loads.values())


def auto_placement(
    stages: Sequence[keras.layers.Layer],
    frame_batch: tf.Tensor,
    devices: Sequence[str] | None = None,
    graph=None,
) -> list:
    """One device name per stage, balancing measured stage costs over `devices`.

    The costs are measured on fresh copies of the stages (from their configs), so the
    stages themselves can then be built on their devices; `graph` (a `StageGraph`; None:
    the chain) says what each stage reads.
    """
    devices = list(devices or visible_devices())
    if len(devices) == 1:
        return devices * len(stages)
    with tf.init_scope():  # measure eagerly, even when asked from inside a trace
        costs = measure_stage_costs([_fresh_copy(s) for s in stages], frame_batch, graph=graph)
    return [devices[i] for i in balanced_partition(costs, len(devices))]


def _fresh_copy(stage: keras.layers.Layer) -> keras.layers.Layer:
    try:
        return keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(stage))
    except Exception:  # a custom layer without get_config: time the stage itself
        return stage


def check_fits_strategy(devices, strategy, replica_devices=None) -> None:
    """Checks stage placement against a tf.distribute strategy's replicas.

    `replica_devices` (a placement per replica, or None) must give each of the strategy's
    replicas its own placement; without it, stages spread over several devices are refused
    under several replicas, as are replica placements without a strategy of as many.
    """
    count = strategy.num_replicas_in_sync
    if replica_devices is not None:
        if len(replica_devices) != count:
            raise ValueError(
                f"A placement per replica ({len(replica_devices)} replicas: "
                f"{replica_devices}) needs a tf.distribute strategy with as many replicas "
                f"(data x depth: build the model in the scope of e.g. "
                f"tf.distribute.MirroredStrategy over each replica's first device); the "
                f"strategy has {count}."
            )
        return
    spread = sorted({d for d in devices if d is not None})
    if count > 1 and distinct_devices(devices) > 1:
        raise ValueError(
            f"Stage placement over several devices ({', '.join(spread)}) cannot be "
            f"combined with a {count}-replica tf.distribute strategy as one list: give "
            f"each replica its own devices, a list of {count} placements (data x depth, "
            "docs/distributed.md), or use placement=None under the strategy (data "
            "parallelism; engine='pipeline' still runs stages concurrently on a "
            "replica's device), or placement without a strategy (depth parallelism)."
        )


def replica_placements(devices: Sequence[str], replicas: int, num_stages: int) -> list:
    """R placements (data x depth): the devices cut into `replicas` equal groups, each
    replica's stages in consecutive near-equal blocks over its group.

    Raises:
        ValueError: unless the devices split evenly into at least one per replica.
    """
    devices = list(devices)
    if replicas < 1 or len(devices) % replicas:
        raise ValueError(
            f"{len(devices)} devices ({', '.join(devices)}) do not split into {replicas} equal "
            "groups, one per replica."
        )
    size = len(devices) // replicas
    groups = [devices[r * size : (r + 1) * size] for r in range(replicas)]
    return [[group[k * size // num_stages] for k in range(num_stages)] for group in groups]


def replica_index() -> int:
    """The index of the tf.distribute replica tracing this code (0 outside a strategy).

    Raises ValueError where the strategy gives no index known while tracing (TPUStrategy).
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return 0
    index = tf.get_static_value(context.replica_id_in_sync_group)
    if index is None:
        raise ValueError(
            f"A placement per replica needs each replica's index while tracing; "
            f"{type(tf.distribute.get_strategy()).__name__} does not give it."
        )
    return int(index)
