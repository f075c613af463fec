"""How a SidewaysModel computes the gradients of one clip batch: one module per way.

- `bp`: exact backprop of the mean per-frame loss (the baseline).
- `pipeline`: Sideways tick by tick (docs/algorithm.md): the one `tick` and `prime` that
  the training loop over ticks, `pipelined_call` and the exported `stream` endpoint run;
  `lanes` runs that loop over a batch in groups of lanes, `buffers` holds its state.
- `batched`: the same pseudo-gradients, one batched pass per stage over every tick, or
  in blocks of ticks (what the pipeline engine runs wherever it can).
- `ticks`: the pipeline's clock for a chain of L stages, for reports (the arithmetic is
  `keras_sideways.graph.StageGraph`'s, which the engines read).
- `gradients`: what every engine returns, and its alignment with a model's variables.

Each engine is a plain function of stages and tensors, testable without `fit`.
"""

from keras_sideways.engines import batched, bp, buffers, gradients, lanes, pipeline, ticks
from keras_sideways.engines.gradients import EngineResult

__all__ = [
    "EngineResult",
    "batched",
    "bp",
    "buffers",
    "gradients",
    "lanes",
    "pipeline",
    "ticks",
]
