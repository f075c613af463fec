"""Delay-aware optimisation: smaller early steps for the stages whose errors are oldest.

Stage `k`'s pseudo-gradient pairs an error with an activation `g_k` frames apart (its
frame gap, `engines.ticks.frame_gap`), so the bottom stages follow the least faithful
directions, worst early in training while the weights move fastest. PipeMare's
learning-rate rescheduling (Yang et al., 2021) damps them: over the first `N` steps,
stage `k`'s update is multiplied by

    (1 + g_k) ** -(1 - t / N)          (t: the step, from 0)

which is `1 / (1 + g_k)` at the first step and grows to 1 (uniform) at step `N`. The top
stage (gap 0) and every stage of a full stash are never scaled. With Adam the update, not
the gradient, is scaled (Adam's steps ignore the gradient's scale).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import tensorflow as tf


def check_warmup_steps(steps) -> int:
    """`steps` (an int >= 0; 0 turns the rescheduling off), or ValueError."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise ValueError(
            f"delay_warmup_steps must be a whole number >= 0 (0: uniform learning rate); "
            f"got {steps!r}."
        )
    return int(steps)


def stage_scales(gaps: Sequence[int], step: tf.Tensor, warmup_steps: int) -> list[tf.Tensor]:
    """Per stage, the factor its update is multiplied by at `step` (see the module doc)."""
    done = tf.minimum(tf.cast(step, tf.float32) / float(max(warmup_steps, 1)), 1.0)
    return [tf.pow(1.0 + float(gap), done - 1.0) for gap in gaps]
