"""keras_sideways: Sideways, depth-parallel training of video models, for Keras 3.

See docs/algorithm.md and README.md. The public names:

- `SidewaysModel`: trains per-frame stages with Sideways or backprop: a chain, or a graph
  of stages (`inputs=`, with `VIDEO` for the video) with skip connections between stages.
- `callbacks`: `ResetPipeline`, `GradientFidelity`, an atomic `BackupAndRestore`,
  `TrainingClock` (training seconds per epoch, validation left out), and the
  `ProgbarLogger` and `SkippedEpochWarning` that `SidewaysModel.fit` adds.
- `cut`: a Functional Keras model of the per-frame computation, cut into stages at named
  layers (or into N stages balanced by estimated cost), with the stage graph of its cuts.
- `export_saved_model`: writes a SavedModel with `serve`, `stream` and `reset`.
- `layers`: temporal layers (`CausalTemporalConv`, `TemporalShift`) for stages that see
  a causal window of their recent inputs.
- `models`: reference models cut into stages; `data`: video datasets (tf.data), loaded
  on first use so that `import keras_sideways` does not pay for tensorflow-datasets.
- `cluster`: stages on other processes and machines (TensorFlow's distributed runtime):
  `connect` to a cluster, `serve` a worker, `task_devices` to place stages on.
- `engines`: the gradient computations (bp, pipeline, batched) and the tick arithmetic.
- `inference`: an export's clip classification of a video file (`train/predict.py`'s),
  loaded on first use.
"""

import importlib

from keras_sideways import callbacks, cluster, engines, layers, models
from keras_sideways.cutting import cut
from keras_sideways.export import export_saved_model
from keras_sideways.graph import VIDEO
from keras_sideways.model import ENGINES, MODES, CheckpointError, SidewaysModel

__version__ = "0.1.0"
__all__ = [
    "CheckpointError",
    "ENGINES",
    "MODES",
    "SidewaysModel",
    "VIDEO",
    "callbacks",
    "cluster",
    "cut",
    "data",
    "engines",
    "export_saved_model",
    "inference",
    "layers",
    "models",
]


def __getattr__(name: str):
    # `ks.data` imports the data builders (and tensorflow-datasets) on first use, and
    # `ks.inference` (which reads video files) too.
    if name in ("data", "inference"):
        return importlib.import_module(f"keras_sideways.{name}")
    raise AttributeError(f"module 'keras_sideways' has no attribute {name!r}")
