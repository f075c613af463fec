"""keras_sideways: Sideways, depth-parallel training of video models, for Keras 3.

See ../shared/SIDEWAYS.md and README.md. The public names:

- `SidewaysModel`: trains a chain of per-frame stages with Sideways or backprop.
- `callbacks.ResetPipeline`: clears a stateful model's pipeline at each epoch start.
- `export_saved_model`: writes a SavedModel with `serve`, `stream` and `reset`.
- `models`: reference models cut into stages; `data`: video datasets (tf.data).
"""

from keras_sideways import callbacks, models
from keras_sideways.export import export_saved_model
from keras_sideways.model import ENGINES, MODES, CheckpointError, SidewaysModel

__version__ = "0.1.0"
__all__ = [
    "CheckpointError",
    "ENGINES",
    "MODES",
    "SidewaysModel",
    "callbacks",
    "export_saved_model",
    "models",
]
