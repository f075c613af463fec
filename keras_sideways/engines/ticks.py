"""The pipeline's clock for a chain of `L` stages, as functions of `L`.

The arithmetic itself lives in `keras_sideways.graph.StageGraph` (docs/algorithm.md, "The
clock"), which the engines and the model read; these are its values for
`StageGraph.chain(L)`, for the study's report, the training command and checks. With
priming at tick 0:

- stage `k` at tick `t` processes frame `t - k` (frame 0 while the pipeline fills);
- the error reaching stage `k` at tick `t` was born from the loss of frame
  `t - 2(L-1) + k`: a frame gap of `2(L-1-k)`, zero at the top;
- stage `k` receives its first error born from a real loss at tick `L-1-k`;
- with a stash of its last `D_k` inputs, stage `k` pairs that error with its input of
  `min(D_k, 2(L-1-k))` ticks ago: the frame gap shrinks to `max(0, 2(L-1-k) - D_k)`;
- the output at the top at tick `t` belongs to frame `max(t - L + 1, 0)`.
"""

from __future__ import annotations

from collections.abc import Sequence

from keras_sideways.graph import StageGraph


def _chain(num_stages: int) -> StageGraph:
    return StageGraph.chain(num_stages)


def frame_gap(num_stages: int, k: int, stash: int = 0) -> int:
    """Frames between the activation and the error that stage k pairs (`StageGraph`)."""
    return _chain(num_stages).frame_gap(k, stash)


def stash_depths(num_stages: int, stash_depth: int | str | Sequence[int]) -> list[int]:
    """Per stage, the stash depth asked for, capped at its gap (`StageGraph.stash_depths`)."""
    return _chain(num_stages).stash_depths(stash_depth)


def bottom_gap(num_stages: int) -> int:
    """The largest frame gap, the bottom stage's: 2(L-1)."""
    return frame_gap(num_stages, 0)


def valid_ticks(clip_length: int, num_stages: int, k: int) -> int:
    """Ticks of a primed clip in which stage k receives a valid error."""
    return _chain(num_stages).valid_ticks(clip_length, k)


def primed_ticks(clip_length: int, num_stages: int, k: int) -> int:
    """Of stage k's valid ticks, those whose error was born from frame 0 (the fill)."""
    return _chain(num_stages).primed_ticks(clip_length, k)


def loss_frames(clip_length: int, num_stages: int) -> int:
    """Distinct frames a primed clip puts through Sideways' loss: 0 ... T-L (BP: all T)."""
    return _chain(num_stages).loss_frames(clip_length)
