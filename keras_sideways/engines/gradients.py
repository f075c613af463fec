"""What every engine returns, and gradients lined up with a model's variables."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import keras
import tensorflow as tf

# loss_fn(y_true, y_pred, sample_weight) -> scalar mean over the examples given.
LossFn = Callable[[tf.Tensor, tf.Tensor, "tf.Tensor | None"], tf.Tensor]


@dataclasses.dataclass
class EngineResult:
    """What one clip batch through an engine gives the trainer."""

    gradients: list  # per stage, a list aligned with stage.trainable_variables
    loss: tf.Tensor  # the mean per-frame (per-tick) loss
    outputs: tf.Tensor  # the top stage's output for every frame or tick, [batch, time, ...]
    targets: tf.Tensor  # the targets those outputs were scored against
    valid_ticks: list | None = None  # Sideways: per stage, the ticks averaged over
    # Sideways: (BatchNormalization, mean, variance) of the step, for one moving update.
    statistics: list = dataclasses.field(default_factory=list)


def stage_weights(stages: Sequence[keras.layers.Layer]) -> list[list]:
    """Per stage, the values of its trainable variables: what an engine differentiates."""
    return [[v.value for v in stage.trainable_variables] for stage in stages]


def zero_sums(weights: Sequence[Sequence]) -> list[list]:
    """Per stage, zero accumulators shaped like `stage_weights`."""
    return [[tf.zeros_like(w) for w in ws] for ws in weights]


def dense(grads: Sequence, sources: Sequence) -> list:
    """Gradients as tensors, a zero tensor shaped like its source where the tape gave None."""
    return [
        tf.zeros_like(s) if g is None else tf.convert_to_tensor(g) for g, s in zip(grads, sources)
    ]


def stage_variable_indices(
    variables: Sequence, stages: Sequence[keras.layers.Layer]
) -> list[list[int]]:
    """For each stage, the positions of its trainable variables in `variables`."""
    position = {id(v): i for i, v in enumerate(variables)}
    return [[position[id(v)] for v in stage.trainable_variables] for stage in stages]


def in_variable_order(
    variables: Sequence, stages: Sequence[keras.layers.Layer], stage_grads: Sequence
) -> list:
    """Per-stage gradient lists -> one list aligned with `variables` (zeros where unused).

    A variable shared by several stages gets the sum of their gradients.
    """
    grads = [tf.zeros_like(v.value) for v in variables]
    for indices, stage_grad in zip(stage_variable_indices(variables, stages), stage_grads):
        for i, grad in zip(indices, stage_grad):
            grads[i] = grads[i] + grad
    return grads
