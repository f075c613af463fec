"""One worker of a cluster: serves its devices to a training process until killed.

    CLUSTER='{"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}'
    python -m train.worker --cluster "$CLUSTER" --index 0 &
    python -m train.worker --cluster "$CLUSTER" --index 1 &
    python -m train.train --config train/configs/moving_digits.py:tiny --workdir runs/two \
        --cluster "$CLUSTER" --stages_on 0,0,0,1,1

`--cluster` takes the same JSON (or a TF_CONFIG; unset: the TF_CONFIG environment
variable, whose task index is then this worker's). A cluster, index or thread count it
cannot use is one line of error (exit status 1). See docs/distributed.md.
"""

import sys

from absl import app, flags

_CLUSTER = flags.DEFINE_string(
    "cluster", None, 'The cluster as JSON, {"worker": ["host:port", ...]}, or a TF_CONFIG.'
)
_INDEX = flags.DEFINE_integer("index", None, "This worker's task index (default: TF_CONFIG's).")
_THREADS = flags.DEFINE_integer(
    "threads",
    None,
    "Intra- and inter-op threads of this worker (default: TensorFlow's).",
    lower_bound=1,  # TensorFlow aborted the process on -1
)


def main(argv):
    del argv
    import tensorflow as tf

    from keras_sideways import cluster  # loads TensorFlow: after the flags parse

    try:
        spec = cluster.cluster_spec(_CLUSTER.value)
        index = _INDEX.value if _INDEX.value is not None else cluster.task_index(_CLUSTER.value)
        server = cluster.start_server(spec, index, threads=_THREADS.value)
    except ValueError as error:  # a cluster, index or thread count it cannot use
        sys.exit(f"error: {error}")  # one line, exit status 1, as the training command
    except tf.errors.OpError as error:  # a port in use, say: a traceback, no address named
        address = spec.task_address(cluster.WORKER, index)
        sys.exit(f"error: cannot serve worker {index} at {address}: {error.message}")
    address = spec.task_address(cluster.WORKER, index)
    print(f"worker {index} serving at {address}; waiting for the training process", flush=True)
    server.join()


if __name__ == "__main__":
    app.run(main)
