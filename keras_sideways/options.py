"""The options of a SidewaysModel: modes, engines, which combine, and which engine runs."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import keras

from keras_sideways import placement as placements
from keras_sideways.graph import FULL_STASH
from keras_sideways.layers import stage_window

MODES = ("sideways", "bp")
ENGINES = ("auto", "pipeline", "batched")
AUTO_CHUNK = "auto"


def check_stages(stages: Sequence[keras.layers.Layer] | keras.Sequential) -> list:
    """The stages as a list (a Sequential's layers); TypeError for something else than a
    list of layers or a Sequential, ValueError for too few or a bad one (named)."""
    expected = (
        "stages must be a list of Keras layers or models (one per stage) or a keras.Sequential"
    )
    if isinstance(stages, keras.Sequential):
        stages = stages.layers
    elif isinstance(stages, keras.Model):
        raise TypeError(
            f"{expected}; got a {type(stages).__name__} model ({stages.name}). A model is "
            "one stage: cut it into stages, e.g. with stages, inputs = ks.cut(model, "
            "at=[layer names]) and SidewaysModel(stages, inputs=inputs), or as the list of "
            "its blocks, each a per-frame function [N, ...] -> [N, ...]."
        )
    elif isinstance(stages, keras.layers.Layer) or not hasattr(stages, "__iter__"):
        raise TypeError(f"{expected}; got a {type(stages).__name__}.")
    stages = list(stages)
    if len(stages) < 2:
        raise ValueError(
            f"SidewaysModel needs at least two stages (a pipeline of one stage is "
            f"plain backprop); got {len(stages)}."
        )
    if len(stages) == 2 and isinstance(stages[0], list) and isinstance(stages[1], list):
        raise TypeError(
            f"{expected}; got a pair of lists, as ks.cut returns (stages, inputs): give "
            "them as SidewaysModel(stages, inputs=inputs)."
        )
    for k, stage in enumerate(stages):
        if not isinstance(stage, keras.layers.Layer):
            raise ValueError(
                f"Each stage must be a Keras layer or model; stage {k} is a {type(stage).__name__}."
            )
    return stages


def check_windows(stages: Sequence[keras.layers.Layer]) -> list[int]:
    """The frames each stage sees per tick (`layers.stage_window`; ValueError for a
    temporal layer that is not first in its stage)."""
    return [stage_window(stage) for stage in stages]


def check_mode(mode: str) -> str:
    """`mode`, or ValueError listing the valid ones."""
    if isinstance(mode, (list, tuple)):  # SidewaysModel(*ks.cut(...)): the graph as mode
        raise ValueError(
            f"Unknown mode {mode!r}; expected one of {', '.join(MODES)}. A list of each "
            "stage's sources is the stage graph: give it as inputs=, e.g. stages, inputs = "
            "ks.cut(model, ...); SidewaysModel(stages, inputs=inputs)."
        )
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; expected one of {', '.join(MODES)}.")
    return mode


def check_options(mode: str, stateful: bool, engine: str) -> None:
    """Raises ValueError for an unknown mode or engine, a `stateful` that is not a bool
    (a string "no" would stream), or one that cannot stream."""
    check_mode(mode)
    if not isinstance(stateful, bool):
        raise ValueError(f"stateful must be True or False; got {stateful!r}.")
    if stateful and mode != "sideways":
        raise ValueError(
            "stateful=True carries the Sideways pipeline buffers across batches; "
            f"mode={mode!r} has no pipeline. Use mode='sideways' or stateful=False."
        )
    if engine not in ENGINES:
        raise ValueError(f"Unknown engine {engine!r}; expected one of {', '.join(ENGINES)}.")
    if stateful and engine == "batched":
        raise ValueError(
            "engine='batched' starts every batch afresh, so it cannot stream "
            "(stateful=True). Use engine='pipeline' or 'auto'."
        )


AUTO_DRAIN = "auto"  # the "auto" of `drain` and of `delay_lines`


def _true_false_or_auto(name: str, value) -> bool | str:
    """`value` of option `name`: True, False or "auto" (ValueError for another value)."""
    if value != AUTO_DRAIN and not isinstance(value, bool):
        raise ValueError(f"{name} must be True, False or 'auto'; got {value!r}.")
    return value


def check_drain(drain, stateful: bool) -> bool | str:
    """`drain`: True, False or "auto" (ValueError for another value, or True for a
    stream, which has no clip end to drain at)."""
    _true_false_or_auto("drain", drain)
    if drain is True and stateful:
        raise ValueError(
            "drain=True fills and drains the pipeline at the end of every clip; a stream "
            "(stateful=True) carries it on to the next batch instead. Use one or the other."
        )
    return drain


def check_delay_lines(delay_lines) -> bool | str:
    """`delay_lines`: True, False or "auto" (ValueError for another value)."""
    return _true_false_or_auto("delay_lines", delay_lines)


def resolve_delay_lines(delay_lines: bool | str, stash_depth) -> bool:
    """Whether skip edges get delay lines: as asked, or with "auto" where the stash is
    full (the exact end of the knob, which they make exact on a graph too)."""
    if delay_lines == AUTO_DRAIN:
        return isinstance(stash_depth, str) and stash_depth == FULL_STASH
    return delay_lines


def check_placement(placement, num_stages: int):
    """None, "auto", one visible device name per stage, or a list of such lists (one per
    replica of a tf.distribute strategy: data x depth); ValueError otherwise."""
    if placement is None or placement == "auto":
        return placement
    if isinstance(placement, str):
        raise ValueError(
            f"placement must be a list of device names (one per stage), a list of such "
            f"lists (one per replica) or 'auto'; got {placement!r}."
        )
    placement = list(placement)
    bad = [p for p in placement if not isinstance(p, (str, list, tuple))]
    if bad:
        raise ValueError(
            "placement must name one device per stage, e.g. ['/CPU:0', '/GPU:0'], or list "
            f"such lists (one per replica); got {bad[0]!r} in {placement!r}."
        )
    if placement and all(not isinstance(p, str) for p in placement):
        return [placements.check_placement(p, num_stages) for p in placement]
    return placements.check_placement(placement, num_stages)


def resolve_engine(engine: str, stateful: bool, spread: bool, batched_ok: bool = True) -> str:
    """The engine Sideways mode runs: the one asked for, or for "auto" the batched engine
    unless the model streams, its stages span several devices, or they hold a layer the
    batched engine cannot run (`batched_ok` False: see `engines.tick_layers`)."""
    if engine != "auto":
        return engine
    return "pipeline" if stateful or spread or not batched_ok else "batched"


def check_chunk(chunk, stateful: bool):
    """`pipeline_chunk`: "auto" or an int >= 1 (ValueError naming what was given)."""
    if chunk == AUTO_CHUNK:
        return chunk
    if isinstance(chunk, bool) or not isinstance(chunk, numbers.Integral) or chunk < 1:
        raise ValueError(
            f"pipeline_chunk must be 'auto' or an int >= 1 (ticks per block; 1: tick by "
            f"tick); got {chunk!r}."
        )
    chunk = int(chunk)
    if stateful and chunk > 1:
        raise ValueError(
            "stateful=True streams tick by tick, carrying the buffers from batch to batch; "
            f"pipeline_chunk must be 1 or 'auto' then; got {chunk!r}."
        )
    return chunk


def resolve_chunk(
    chunk, time: int | None, stateful: bool, keyed: bool = True, workers: int = 2, stages: int = 2
) -> int | None:
    """Ticks per block of the pipeline engine, or None for the tick-by-tick loop.

    The loop runs where blocks cannot: a stream (`stateful`), a clip of unknown length
    under "auto", random layers the blocks cannot key to their ticks (`keyed` False), and
    `chunk` 1. "auto" cuts a clip of T ticks into as many blocks as there are `workers`
    (devices the stages span, else CPU cores), at least 2 and at most `stages`: blocks of
    ceil(T / blocks) ticks (docs/performance.md, "Blocks of ticks").
    """
    if stateful or not keyed or chunk == 1:
        return None
    if time is None:
        if chunk == AUTO_CHUNK:
            return None
        raise ValueError(
            f"pipeline_chunk={chunk} cuts clips into blocks of {chunk} ticks, which needs "
            "clips of a static length; got a clip of unknown length. Use "
            "pipeline_chunk='auto' or 1, or batches of fixed-length clips."
        )
    if chunk == AUTO_CHUNK:
        blocks = min(max(workers, 2), max(stages, 2))
        chunk = -(-time // blocks)
    return min(chunk, time)
