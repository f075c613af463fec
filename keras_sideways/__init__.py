"""keras_sideways: Sideways, depth-parallel training of video models, for Keras 3.

See ../shared/SIDEWAYS.md and README.md. The public names:

- `SidewaysModel`: trains a chain of per-frame stages with Sideways or backprop.
- `callbacks.ResetPipeline`: clears a stateful model's pipeline at each epoch start.
"""

from keras_sideways import callbacks
from keras_sideways.model import MODES, SidewaysModel

__version__ = "0.1.0"
__all__ = ["MODES", "SidewaysModel", "callbacks"]
