"""Train one model with Sideways or BP from a config, log to TensorBoard, export a SavedModel.

    python -m train.train --config train/configs/moving_digits.py --workdir runs/moving_digits
    python -m train.train --config train/configs/moving_digits.py --workdir runs/digits_bp \
        --config.mode=bp --config.data.temporal_stride=2
    python -m train.train --config train/configs/moving_digits.py:tiny --workdir runs/mirrored \
        --strategy=mirrored --logical_cpus=2      # data parallelism on 2 logical CPUs
    python -m train.train --config train/configs/moving_digits.py:tiny --workdir runs/2x2 \
        --strategy=mirrored --logical_cpus=4 --replicas=2   # 2 replicas x 2 devices each
    python -m train.train --config train/configs/moving_digits.py --workdir runs/digits_2_1 \
        --config.engine=pipeline --config.threads=2,1   # inter-op, intra-op threads
    python -m train.train --config train/configs/moving_digits.py:tiny --workdir runs/two \
        --cluster '{"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}' --stages_on 0,0,0,1,1
        # stages on two worker processes (python -m train.worker, started first)

See docs/distributed.md for multi-worker training and stages on other machines.
"""

import contextlib
import sys

from absl import app, flags, logging

from train import command_line

# The library and TensorFlow load in main(), once the flags parse: a mistyped flag or
# override, or --help, answers at once rather than after TensorFlow's start-up.

_CONFIG = command_line.define_config_file(
    "config", None, "Experiment config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Logs and checkpoints; its name names the export.")
_STRATEGY = flags.DEFINE_enum(
    "strategy", "none", ["none", "mirrored", "multi_worker"], "tf.distribute strategy."
)
_LOGICAL_CPUS = flags.DEFINE_integer(
    "logical_cpus",
    0,
    "Split the CPU into this many logical devices (to try strategies); 0: leave it whole.",
    lower_bound=0,
)
_REPLICAS = flags.DEFINE_integer(
    "replicas",
    0,
    "With --strategy=mirrored: this many replicas of the pipeline, each with its stages spread "
    "over its share of the devices (data x depth); 0: one replica per device.",
    lower_bound=0,
)
_CLUSTER = flags.DEFINE_string(
    "cluster",
    None,
    "Run the stages on the workers of this cluster (each started with python -m train.worker): "
    'JSON {"worker": ["host:port", ...]}, a TF_CONFIG, or "TF_CONFIG" for the environment\'s.',
)
_CONNECT_TIMEOUT = flags.DEFINE_float(
    "connect_timeout",
    60.0,
    "Seconds to wait for the other tasks of --cluster or of --strategy=multi_worker's "
    "TF_CONFIG before giving up, naming the one not reached.",
    lower_bound=0.0,
)
_STAGES_ON = flags.DEFINE_string(
    "stages_on",
    "auto",
    "With --cluster, the worker task of each stage, e.g. 0,0,1,1,1; 'auto' balances measured "
    "stage costs over the workers; 'even' cuts the stages into equal blocks.",
)
flags.mark_flags_as_required(["config", "workdir"])
# Combinations refused as the flags parse, before TensorFlow's start-up.
flags.register_multi_flags_validator(
    ["stages_on", "cluster"],
    lambda f: f["stages_on"] == "auto" or f["cluster"] is not None,
    "--stages_on places the stages on the workers of --cluster: give --cluster too (it was "
    "ignored).",
)
flags.register_multi_flags_validator(
    ["logical_cpus", "cluster"],
    lambda f: not f["logical_cpus"] or f["cluster"] is None,
    "--logical_cpus splits this process' CPU for --strategy=mirrored; with --cluster the "
    "stages run on the workers' devices: give one of them.",
)


def make_strategy(config):
    """The tf.distribute strategy of the --strategy, --logical_cpus and --replicas flags, or
    None; with --replicas, `config.placement` gets each replica's devices (data x depth)."""
    import tensorflow as tf

    from keras_sideways import placement
    from train.builders import ConfigError

    if _LOGICAL_CPUS.value:
        cpu = tf.config.list_physical_devices("CPU")[0]
        devices = [tf.config.LogicalDeviceConfiguration()] * _LOGICAL_CPUS.value
        tf.config.set_logical_device_configuration(cpu, devices)
    if _REPLICAS.value and _STRATEGY.value != "mirrored":
        raise ConfigError(
            f"--replicas needs --strategy=mirrored; got --strategy={_STRATEGY.value}."
        )
    if _STRATEGY.value == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or [
            d.name for d in tf.config.list_logical_devices("CPU")
        ]
        if _REPLICAS.value:
            try:
                groups = placement.replica_placements(
                    devices, _REPLICAS.value, config.model.num_stages
                )
            except ValueError as error:
                raise ConfigError(f"--replicas: {error}") from error
            with config.unlocked():
                config.placement = groups
            strategy = tf.distribute.MirroredStrategy([group[0] for group in groups])
        else:
            strategy = tf.distribute.MirroredStrategy(
                None if tf.config.list_logical_devices("GPU") else devices
            )
        _check_batches_fill_replicas(config, strategy.num_replicas_in_sync)
        return strategy
    if _STRATEGY.value == "multi_worker":
        spec, task = _tf_config()
        with _ended_if_unreachable(spec, task, _CONNECT_TIMEOUT.value):
            strategy = tf.distribute.MultiWorkerMirroredStrategy()  # from TF_CONFIG
        _check_batches_fill_replicas(config, strategy.num_replicas_in_sync)
        return strategy
    return None


def _check_batches_fill_replicas(config, replicas: int) -> None:
    """ConfigError for batches that leave a replica without a clip: tf.distribute splits a
    batch of b clips ceil(b / replicas) a replica (4 over 3 replicas: 2, 2 and 0), and
    TensorFlow's CPU convolution fails on an empty one with a long traceback."""
    from train.builders import ConfigError

    def leaves_one_empty(clips: int) -> bool:
        return 0 < clips and -(-clips // replicas) * (replicas - 1) >= clips

    d = config.data
    if d.batch_size % replicas:
        raise ConfigError(
            f"config.data.batch_size: expected a multiple of the {replicas} replicas, which "
            f"share each batch; got {d.batch_size}."
        )
    for field in ("num_train_clips", "num_test_clips"):  # the last batch (data that counts)
        if leaves_one_empty(d.get(field, 0) % d.batch_size):
            raise ConfigError(
                f"config.data.{field}: its last batch of {d[field] % d.batch_size} clips "
                f"leaves one of the {replicas} replicas without a clip; got {d[field]} "
                f"(give a multiple of config.data.batch_size, {d.batch_size})."
            )


def _tf_config():
    """(ClusterSpec, (task type, index)) of TF_CONFIG for --strategy=multi_worker; a
    ConfigError for one it cannot use (it was JSON's or TensorFlow's traceback)."""
    import json
    import os

    from keras_sideways import cluster
    from train.builders import ConfigError

    try:
        spec = cluster.cluster_spec(None)  # unset, not JSON, or no cluster: its error
        tf_config = json.loads(os.environ["TF_CONFIG"])  # read once more: it is JSON
        index = cluster.task_index(tf_config)
        kind = tf_config["task"].get("type", cluster.WORKER)  # (a mapping: it has an index)
        if kind not in spec.jobs or not 0 <= index < len(spec.job_tasks(kind)):
            raise ValueError(
                f"its task ({kind!r}, index {index}) is not one of its cluster's: {spec.as_dict()}."
            )
    except ValueError as error:
        raise ConfigError(f"--strategy=multi_worker: TF_CONFIG: {error}") from error
    return spec, (kind, index)


# Run by `_ended_if_unreachable` in a process of its own: after TIMEOUT seconds, if a peer
# does not answer and its parent still waits, says so in one line and ends the parent; so
# does a Ctrl-C (SIGINT to the terminal's process group) or SIGTERM that reaches it.
_WATCHER = """
import json, os, signal, socket, sys, time
parent, timeout, peers = int(sys.argv[1]), float(sys.argv[2]), json.loads(sys.argv[3])
signal.signal(signal.SIGTERM, signal.default_int_handler)

def end(line):
    if os.getppid() == parent:
        sys.stderr.write(line + "\\n")
        sys.stderr.flush()
        os.kill(parent, signal.SIGKILL)  # (TensorFlow's C++ takes SIGTERM there)

try:
    time.sleep(timeout)
    for job, index, address in peers:
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=2.0).close()
        except OSError as error:
            end(
                f"error: --strategy=multi_worker: cannot reach the cluster task /job:{job}/"
                f"task:{index} at {address} after {timeout:g} s ({error}): start the command "
                "there too (the same TF_CONFIG, its own task)."
            )
            break
except KeyboardInterrupt:
    end("\\ninterrupted: nothing has trained yet.")
"""


@contextlib.contextmanager
def _ended_if_unreachable(spec, task, timeout: float):
    """Ends this process (SIGKILL) with one line of error if, `timeout` seconds in, the
    block still runs and a task of `spec` other than `task` does not answer at its
    address. MultiWorkerMirroredStrategy waits for its peers in C++ without end, holding
    Python's lock: no thread of this process can end it, no signal's Python handler runs
    there, and its C++ takes SIGTERM (a preemption notice). So a process of its own
    watches; a Ctrl-C, which the terminal sends it too, ends both. It waited without end,
    and neither Ctrl-C nor SIGTERM stopped it."""
    import json
    import os
    import subprocess

    peers = [
        (job, index, address)
        for job in spec.jobs
        for index, address in enumerate(spec.job_tasks(job))
        if (job, index) != task
    ]
    watcher = subprocess.Popen(
        [sys.executable, "-c", _WATCHER, str(os.getpid()), str(timeout), json.dumps(peers)],
        stdin=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        watcher.kill()
        watcher.wait()


def connect_cluster(config):
    """Connects to the --cluster and sets `config.placement` from --stages_on (if given)."""
    from keras_sideways import cluster
    from train.builders import ConfigError

    if _CLUSTER.value is None:
        return
    if _STRATEGY.value != "none":
        raise ConfigError(
            "--cluster runs the stages on the cluster's workers from this one process; "
            f"--strategy={_STRATEGY.value} runs the command on every worker. Use one."
        )
    spec = None if _CLUSTER.value == "TF_CONFIG" else _CLUSTER.value
    try:
        spec = cluster.cluster_spec(spec)
    except ValueError as error:
        raise ConfigError(f"--cluster: {error}") from error
    tasks = len(spec.job_tasks(cluster.WORKER)) if cluster.WORKER in spec.jobs else 0
    try:  # checked before waiting for the workers
        cluster.parse_stages_on(_STAGES_ON.value, config.model.num_stages, tasks)
    except ValueError as error:
        raise ConfigError(f"--stages_on: {error}") from error
    cluster.connect(spec, timeout=_CONNECT_TIMEOUT.value)
    with config.unlocked():
        config.placement = cluster.stages_on_tasks(_STAGES_ON.value, config.model.num_stages)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # TensorFlow's SavedModel chatter
    from keras_sideways import cluster
    from train.builders import ConfigError, apply_threads, check_config
    from train.printing import summary_lines
    from train.recipe import RunError, train_and_evaluate

    try:
        check_config(_CONFIG.value)  # bad values: one line, before TensorFlow starts
        apply_threads(_CONFIG.value)  # TensorFlow sizes its thread pools once, as it starts
        connect_cluster(_CONFIG.value)
        summary = train_and_evaluate(_CONFIG.value, _WORKDIR.value, make_strategy(_CONFIG.value))
    except (ConfigError, RunError, cluster.ClusterError) as error:
        sys.exit(f"error: {error}")  # one line, exit status 1: no traceback for bad input
    print("\n".join(summary_lines(summary)))


if __name__ == "__main__":
    app.run(
        command_line.interruptible(
            main, "run the same command again to resume from the last finished epoch."
        ),
        flags_parser=command_line.parse,
    )
