"""How a SidewaysModel computes the gradients of one clip batch: one module per way.

- `bp`: exact backprop of the mean per-frame loss (the baseline).
- `pipeline`: Sideways tick by tick (docs/algorithm.md): buffers, priming, the one `tick`
  that training, `pipelined_call` and the exported `stream` endpoint all run.
- `batched`: the same pseudo-gradients, one batched pass per stage over every tick.
- `ticks`: the pipeline's clock (frame gaps, valid errors, target alignment, fill).
- `gradients`: what every engine returns, and its alignment with a model's variables.

Each engine is a plain function of stages and tensors, testable without `fit`.
"""

from keras_sideways.engines import batched, bp, gradients, pipeline, ticks
from keras_sideways.engines.gradients import EngineResult

__all__ = ["EngineResult", "batched", "bp", "gradients", "pipeline", "ticks"]
