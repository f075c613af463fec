"""The pipeline's clock: which frame, error and target every stage meets at every tick.

The one home of the tick arithmetic of docs/algorithm.md, used by the Sideways engines,
the model's options and the study's report. With `L` stages, priming at tick 0:

- stage `k` at tick `t` processes frame `t - k` (frame 0 while the pipeline fills);
- the error reaching stage `k` at tick `t` was born from the loss of frame
  `t - 2(L-1) + k`: a frame gap of `2(L-1-k)`, zero at the top;
- stage `k` receives its first error born from a real loss at tick `L-1-k`;
- with a stash of its last `D_k` inputs, stage `k` pairs that error with its input of
  `min(D_k, 2(L-1-k))` ticks ago: the frame gap shrinks to `max(0, 2(L-1-k) - D_k)`;
- the output at the top at tick `t` belongs to frame `max(t - L + 1, 0)`.

The functions of Python ints serve reports and checks; `valid_error_ticks`,
`aligned_target_indices` and `align_targets` take tensors, inside traced steps.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import tensorflow as tf

FULL_STASH = "full"


def frame_gap(num_stages: int, k: int, stash: int = 0) -> int:
    """Frames between the activation and the error that stage k pairs.

    2(L-1-k) in Sideways; a stash of the stage's last `stash` inputs shortens it to
    max(0, 2(L-1-k) - stash).
    """
    return max(0, 2 * (num_stages - 1 - k) - stash)


def stash_depths(num_stages: int, stash_depth: int | str | Sequence[int]) -> list[int]:
    """Per stage, how many past inputs it keeps: the depth asked for, capped at its gap.

    Args:
        num_stages: L.
        stash_depth: 0 (Sideways), one depth for every stage, "full" (each stage's whole
            gap 2(L-1-k): exact per-frame gradients), or a list of L depths, bottom first.

    Returns:
        L ints, min(D_k, 2(L-1-k)): 0 at the top, where there is no gap.

    Raises:
        ValueError: naming what was expected and what was given.
    """
    gaps = [frame_gap(num_stages, k) for k in range(num_stages)]
    if isinstance(stash_depth, str):
        if stash_depth != FULL_STASH:
            raise ValueError(
                f"stash_depth must be an int >= 0, 'full' or a list of {num_stages} ints "
                f">= 0 (one per stage); got {stash_depth!r}."
            )
        return gaps
    if isinstance(stash_depth, numbers.Integral) and not isinstance(stash_depth, bool):
        depths = [int(stash_depth)] * num_stages
    elif isinstance(stash_depth, Sequence) and all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in stash_depth
    ):
        depths = [int(d) for d in stash_depth]
        if len(depths) != num_stages:
            raise ValueError(
                f"stash_depth as a list needs one depth per stage ({num_stages}); got "
                f"{len(depths)}: {list(stash_depth)}."
            )
    else:
        raise ValueError(
            f"stash_depth must be an int >= 0, 'full' or a list of {num_stages} ints >= 0; "
            f"got {stash_depth!r}."
        )
    if any(d < 0 for d in depths):
        raise ValueError(f"stash_depth must be >= 0 for every stage; got {stash_depth!r}.")
    return [min(d, gap) for d, gap in zip(depths, gaps)]


def lagged_indices(time: tf.Tensor, lag: int) -> tf.Tensor:
    """For each tick t, the tick `lag` earlier, max(t - lag, 0) (the primed input before)."""
    return tf.maximum(tf.range(time) - lag, 0)


def bottom_gap(num_stages: int) -> int:
    """The largest frame gap, the bottom stage's: 2(L-1)."""
    return frame_gap(num_stages, 0)


def first_valid_tick(num_stages: int, k: int) -> int:
    """The first tick after priming at which stage k receives an error born from a loss."""
    return num_stages - 1 - k


def valid_ticks(clip_length: int, num_stages: int, k: int) -> int:
    """Ticks of a primed clip in which stage k receives a valid error: t >= L-1-k."""
    return max(clip_length - first_valid_tick(num_stages, k), 0)


def primed_ticks(clip_length: int, num_stages: int, k: int) -> int:
    """Of stage k's valid ticks, those whose error was born from frame 0 (the fill).

    The error at stage k at tick t was born from frame max(t - 2(L-1) + k, 0); that is
    frame 0 for the first L valid ticks.
    """
    return min(num_stages, valid_ticks(clip_length, num_stages, k))


def loss_frames(clip_length: int, num_stages: int) -> int:
    """Distinct frames a primed clip puts through Sideways' loss: 0 ... T-L (BP: all T)."""
    return max(clip_length - num_stages, 0) + 1


def valid_error_ticks(num_stages: int, ticks_before: tf.Tensor, time: tf.Tensor) -> list:
    """Per stage, how many of the next `time` ticks bring it an error born from a loss.

    `ticks_before` counts the ticks already run since priming (0 for a fresh clip; more
    when a stateful pipeline continues a video). Returns int64 scalars, bottom first.
    """
    ticks_before = tf.cast(ticks_before, tf.int64)
    time = tf.cast(time, tf.int64)
    return [
        tf.clip_by_value(ticks_before + time - first_valid_tick(num_stages, k), 0, time)
        for k in range(num_stages)
    ]


def aligned_target_indices(num_stages: int, time: tf.Tensor) -> tf.Tensor:
    """For each tick t, the frame whose output reaches the top: max(t - L + 1, 0)."""
    return tf.maximum(tf.range(time) - (num_stages - 1), 0)


def align_targets(target: tf.Tensor, num_stages: int, time: tf.Tensor) -> tf.Tensor:
    """The targets scored at each tick: clip labels [batch] as they are, per-frame targets
    [batch, time, ...] taken from the frame that reached the top at that tick."""
    if target.shape.rank == 1:
        return target
    return tf.gather(target, aligned_target_indices(num_stages, time), axis=1)
