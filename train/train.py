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
_STAGES_ON = flags.DEFINE_string(
    "stages_on",
    "auto",
    "With --cluster, the worker task of each stage, e.g. 0,0,1,1,1; 'auto' balances measured "
    "stage costs over the workers; 'even' cuts the stages into equal blocks.",
)
flags.mark_flags_as_required(["config", "workdir"])


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
            return tf.distribute.MirroredStrategy([group[0] for group in groups])
        return tf.distribute.MirroredStrategy(
            None if tf.config.list_logical_devices("GPU") else devices
        )
    if _STRATEGY.value == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()  # the cluster comes from TF_CONFIG
    return None


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
    cluster.connect(spec)
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
