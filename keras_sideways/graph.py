"""How the stages connect and where each runs: the stage graph, and the clock it implies.

One `StageGraph` says, per stage, which earlier stages (or the video) it reads, the device
it runs on, the frames it sees per tick (its window) and how many past inputs it stashes.
Everything that depends on how stages connect reads it: the clock arithmetic of
docs/algorithm.md (frame gaps, valid errors, target alignment), the pipeline's buffers,
both Sideways engines, BP, `SidewaysModel.build` and the export.

A chain (stage 0 reads the video, stage k reads stage k-1; `StageGraph.chain`) is what
`SidewaysModel` builds by default. Any DAG in stage order is accepted (`check_graph`):
stage k may read several earlier stages and/or the video, and gets them as a list
`[x_a, x_b, ...]` in the order of `inputs[k]` (one source: the tensor alone). Every edge
carries its source's output of the previous tick, every error flows back one tick per
edge, and a stage read by several sums their errors (docs/algorithm.md, "Stage graphs").
Remote stages (`keras_sideways.cluster`): `devices[k]` may name a device of another task
("/job:worker/task:1/device:GPU:0"); every engine runs stage k under
`device_scope(devices[k])`, and `tasks` says which stages leave this one.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from keras_sideways.layers import stage_window

VIDEO = -1  # the source a stage reads when it reads the video
FULL_STASH = "full"
AUTO = "auto"  # drain="auto": drain where the stash leaves no frame gap


@dataclasses.dataclass(frozen=True)
class StageGraph:
    """The stages' connections, devices, windows and stash depths (immutable).

    Attributes:
        inputs: per stage, bottom first, the sources it reads: earlier stages' indices,
            or VIDEO.
        devices: per stage, the device it runs on (None: wherever TensorFlow puts it).
        windows: per stage, the frames it sees per tick (W > 1: a temporal stage).
        stash: per stage, how many past inputs it keeps, capped at its frame gap.
        drain: whether a clip fills and drains the pipeline (docs/algorithm.md, "Fill and
            drain"): the clip runs `tail_ticks` more ticks on its last frame so that
            every frame reaches the top and every error the bottom, and the loss scores
            each frame once (the primed frame 0 only as itself).
        relays: per stage, whether it is one tick of a delay line (`with_delay_lines`): an
            identity with no weights, whose error does not depend on its input, so it
            has no frame gap and stashes nothing. Empty: no relays.
        whole_errors: whether a temporal stage sends each frame's whole error down
            (docs/algorithm.md, "Temporal stages"): the sum of its input-gradients with
            respect to that frame from the W windows that hold it, complete W-1 ticks
            later; otherwise it sends the sum over its window of this tick. Set with a
            full stash (`of`), where it makes the drained clip's gradient BP's.
    """

    inputs: tuple
    devices: tuple
    windows: tuple
    stash: tuple
    drain: bool = False
    relays: tuple = ()
    whole_errors: bool = False

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(tuple(s) for s in self.inputs))
        count = len(self.inputs)
        object.__setattr__(self, "relays", tuple(bool(r) for r in self.relays or [False] * count))
        for name in ("devices", "windows", "stash", "relays"):
            if len(getattr(self, name)) != count:
                raise ValueError(
                    f"A StageGraph needs one entry of {name} per stage ({count}); got "
                    f"{len(getattr(self, name))}: {list(getattr(self, name))}."
                )
        self.check_graph()

    @classmethod
    def chain(
        cls,
        num_stages: int,
        devices: Sequence[str | None] | None = None,
        windows: Sequence[int] | None = None,
        **options,
    ) -> StageGraph:
        """Stage 0 reads the video, stage k reads stage k-1: the paper's Sideways.

        `options` are `of`'s: `stash_depth` and `drain` (`SidewaysModel`'s options), and
        `stateful`.
        """
        inputs = tuple((k - 1,) if k else (VIDEO,) for k in range(num_stages))
        return cls.of(inputs, devices, windows, **options)

    @classmethod
    def of(
        cls,
        inputs: Sequence,
        devices: Sequence[str | None] | None = None,
        windows: Sequence[int] | None = None,
        stash_depth: int | str | Sequence[int] = 0,
        drain: bool | str = False,
        stateful: bool = False,
        relays: Sequence[bool] | None = None,
    ) -> StageGraph:
        """The graph in which stage k reads `inputs[k]`: a source or a list of sources, each
        an earlier stage's index or VIDEO (also spelled "video"). Checked (`check_graph`).

        `drain="auto"` drains a balanced graph (a chain, or a graph with delay lines) where
        no frame gap is left and the model does not stream (`stateful`); True drains any
        graph (on an unbalanced one no error is masked: docs/algorithm.md, "Fill and
        drain"). `relays` marks the stages that are delay lines'
        ticks (`with_delay_lines`). With `stash_depth="full"`, temporal stages send whole
        errors (`whole_errors`) where every path from a stage to the top delays its errors
        alike (`errors_are_balanced`), and each stage's full depth covers that delay.
        """
        inputs = check_inputs(inputs)
        count = len(inputs)
        devices = tuple(devices or [None] * count)
        windows = tuple(windows or [1] * count)
        bare = cls(inputs, devices, windows, (0,) * count, relays=tuple(relays or ()))
        if isinstance(stash_depth, np.ndarray):  # per stage, as a list would be
            stash_depth = stash_depth.tolist()
        if isinstance(stash_depth, str) and stash_depth == FULL_STASH and bare.accumulators:
            whole = dataclasses.replace(bare, whole_errors=True)
            bare = whole if whole.errors_are_balanced else bare
        graph = dataclasses.replace(bare, stash=tuple(bare.stash_depths(stash_depth)))
        if drain == AUTO:
            drain = graph.is_balanced and not stateful and not any(graph.gaps())
        return dataclasses.replace(graph, drain=bool(drain))

    @property
    def is_chain(self) -> bool:
        """True when stage 0 reads the video and stage k reads stage k-1 alone."""
        return all(
            tuple(sources) == ((k - 1,) if k else (VIDEO,)) for k, sources in enumerate(self.inputs)
        )

    @property
    def is_balanced(self) -> bool:
        """True when every edge spans one tick of depth (only stages of depth 0 read the
        video): every path between two stages is then as long as any other, so each stage
        merges one frame, and every error it gets was born from one frame. A chain is."""
        return all(
            self.depth(k) == (0 if s == VIDEO else self.depth(s) + 1)
            for k, sources in enumerate(self.inputs)
            for s in sources
        )

    def check_graph(self) -> None:
        """Raises ValueError, naming the stage, unless the graph is one the engines run.

        Every source of stage k is VIDEO or an earlier stage, each at most once (so the
        graph is a DAG in stage order and every stage is reached from the video); every
        stage but the top (the last) is read by a later one (so every stage reaches the
        top); a temporal stage (window > 1) reads one source.
        """
        for k, sources in enumerate(self.inputs):
            if not sources:
                raise ValueError(f"Stage {k} reads nothing; give it the video or earlier stages.")
            if self.relays[k] and (len(sources) != 1 or self.windows[k] != 1):
                raise ValueError(
                    f"Stage {k} is a delay line's relay: it reads one source, one frame a tick."
                )
            for s in sources:
                if s != VIDEO and not (_is_int(s) and 0 <= s < k):
                    raise ValueError(
                        f"Stage {k} reads {_named(s)}, which is not an earlier stage: a stage "
                        f"reads the video (VIDEO) or stages 0 to {k - 1} (the stages run "
                        "in the order given, bottom first)."
                        if k
                        else f"Stage 0 reads {_named(s)}; the first stage can read only the "
                        "video (VIDEO)."
                    )
            if len(set(sources)) != len(sources):
                raise ValueError(
                    f"Stage {k} reads {', '.join(_named(s) for s in sources)}: a source may "
                    "appear once in a stage's inputs."
                )
            if len(sources) > 1 and self.windows[k] > 1:
                raise ValueError(
                    f"Stage {k} is temporal (window {self.windows[k]}) and reads "
                    f"{len(sources)} sources; a temporal stage reads one source (put its "
                    "merge in the stage below)."
                )
        for k in range(self.top):
            if not self.readers(k):
                raise ValueError(
                    f"Stage {k}'s output is read by no stage: every stage but the top "
                    f"(stage {self.top}, whose output the loss scores) must feed a later "
                    "stage."
                )

    # ----------------------------------------------------------------- connections
    @property
    def num_stages(self) -> int:
        """L."""
        return len(self.inputs)

    @property
    def top(self) -> int:
        """The stage whose output the loss scores."""
        return self.num_stages - 1

    @property
    def buffered(self) -> list[int]:
        """The stages whose outputs another stage reads: each keeps A_k and E_k."""
        return sorted({s for sources in self.inputs for s in sources if s != VIDEO})

    @property
    def tasks(self) -> list[str | None]:
        """Per stage, the job and task of its device ("/job:worker/replica:0/task:1"), or
        None where the device names none (this process)."""
        specs = [None if d is None else tf.DeviceSpec.from_string(d) for d in self.devices]
        return [
            None
            if s is None or s.job is None
            else f"/job:{s.job}/replica:{s.replica or 0}/task:{s.task or 0}"
            for s in specs
        ]

    def placed(self, devices: Sequence[str | None]) -> StageGraph:
        """The same graph with stage k on `devices[k]`."""
        return dataclasses.replace(self, devices=tuple(devices))

    def reads_video(self, k: int) -> bool:
        """True for a stage that reads the video alone (it passes no error down)."""
        return all(s == VIDEO for s in self.inputs[k])

    def stage_sources(self, k: int, value) -> list:
        """Of stage k's input `value` (shaped as `input_of`), the parts read from stages
        (not the video), in order: what its vector-Jacobian product differentiates."""
        return [x for x, s in zip(self.sources(k, value), self.inputs[k]) if s != VIDEO]

    def input_gradient(self, k: int, grads: Sequence):
        """Stage k's input-gradient shaped as its input (`input_of`), from `grads`, one per
        part read from a stage (`stage_sources`); None for the video's parts."""
        grads = iter(grads)
        return self.shaped(k, [None if s == VIDEO else next(grads) for s in self.inputs[k]])

    def input_of(self, k: int, video_input, outputs):
        """What stage k reads: `video_input` (a frame, a clip, a shape) for VIDEO, else
        `outputs[j]` of the stage j it reads (`outputs` indexed by stage, bottom first);
        a list of those, in the order of `inputs[k]`, for a stage of several sources."""
        read = [video_input if s == VIDEO else outputs[s] for s in self.inputs[k]]
        return read[0] if len(read) == 1 else read

    def sources(self, k: int, value) -> list:
        """`value`, something shaped as stage k's input (`input_of`), as a list by source."""
        return list(value) if len(self.inputs[k]) > 1 else [value]

    def shaped(self, k: int, values: Sequence):
        """The inverse of `sources`: one value per source of stage k -> its input's shape."""
        return values[0] if len(self.inputs[k]) == 1 else list(values)

    def stage_inputs(self, video_input, held: Sequence) -> list:
        """Per stage, bottom first, what it reads at a tick: `video_input`, or the `held`
        output of the stage it reads (`held`: the buffered stages', in `buffered` order)."""
        by_stage = dict(zip(self.buffered, held))
        return [self.input_of(k, video_input, by_stage) for k in range(self.num_stages)]

    def held(self, outputs: Sequence) -> list:
        """The outputs of the buffered stages, from every stage's `outputs` bottom first:
        what the pipeline holds for the next tick (A_0 ... A_{L-2} in a chain)."""
        return [outputs[k] for k in self.buffered]

    def input_shapes(self, frame_shape, output_shapes: Sequence) -> list:
        """Per stage, the per-lane shape of what it reads, from every stage's output shape
        (a list of shapes for a stage of several sources)."""
        return [self.input_of(k, frame_shape, output_shapes) for k in range(self.num_stages)]

    def readers(self, k: int) -> list[int]:
        """The stages that read stage k's output (none for the top)."""
        return [j for j, sources in enumerate(self.inputs) if k in sources]

    def error_parts(self, k: int, input_grads: Sequence) -> list:
        """The errors stage k's readers send it: of each reader r (bottom first), its
        input-gradient with respect to stage k's output (`input_grads[r]`, shaped as r's
        input: one value, or one per source)."""
        return [self.sources(r, input_grads[r])[self.inputs[r].index(k)] for r in self.readers(k)]

    def error_of(self, k: int, input_grads: Sequence):
        """The error of stage k's output: the sum of its readers' input-gradients with
        respect to it (`input_grads` indexed by stage; see `error_parts`)."""
        parts = self.error_parts(k, input_grads)
        return parts[0] if len(parts) == 1 else tf.add_n(parts)

    def output_errors(self, input_grads: Sequence) -> list:
        """Per buffered stage, the error of its output (E_k), from every stage's
        input-gradient bottom first (the video reader's unused)."""
        return [self.error_of(k, input_grads) for k in self.buffered]

    # ----------------------------------------------------------------- the clock
    def depth(self, k: int) -> int:
        """Ticks from a frame entering the bottom to stage k processing it, along the
        longest path from the video: k in a chain."""
        depths = []
        for sources in self.inputs[: k + 1]:
            depths.append(max(0 if s == VIDEO else depths[s] + 1 for s in sources))
        return depths[k]

    def height(self, k: int) -> int:
        """Ticks from stage k's output to the top along the longest path: L-1-k in a chain."""
        return self._heights(max, errors=False)[k]

    def error_height(self, k: int) -> int:
        """Ticks an error takes from the top to stage k along the longest path: `height(k)`,
        plus W-1 for each temporal stage on the way that sends whole errors (each holds a
        frame's error until its last window has been through). From this tick after
        priming on, errors born from a loss arrive along every path."""
        return self._heights(max)[k]

    def shortest_height(self, k: int) -> int:
        """Ticks an error takes from the top to stage k along the shortest path: the first
        tick after priming at which an error born from a loss reaches it along any path."""
        return self._heights(min)[k]

    def masks_errors(self, k: int) -> bool:
        """True where stage k's paths to the top differ in length and clips are not
        drained: from tick `shortest_height(k)` to `error_height(k) - 1` its error holds
        only the shorter paths' share, and the engines zero it (docs/algorithm.md, "Stage
        graphs"). A drained clip scores no loss before its paths' errors can arrive, and
        counts every path's error of every scored frame: nothing is masked."""
        return not self.drain and self.shortest_height(k) < self.error_height(k)

    def _heights(self, pick, errors: bool = True) -> list[int]:
        heights = [0] * self.num_stages
        for k in reversed(range(self.top)):
            heights[k] = pick(
                heights[j] + 1 + (self.holds(j) if errors else 0) for j in self.readers(k)
            )
        return heights

    @property
    def accumulators(self) -> list[int]:
        """The temporal stages that send an error down (they read a stage)."""
        return [k for k, w in enumerate(self.windows) if w > 1 and not self.reads_video(k)]

    def holds(self, k: int) -> int:
        """Ticks stage k holds an error before sending it down: W-1 for a temporal stage
        that sends whole errors, else 0."""
        return self.windows[k] - 1 if self.whole_errors and k in self.accumulators else 0

    @property
    def errors_are_balanced(self) -> bool:
        """True when, from every stage, every path to the top delays errors alike: each
        error a stage gets at a tick was then born from one frame (in a balanced graph)."""
        return all(self.shortest_height(k) == self.error_height(k) for k in range(self.num_stages))

    @property
    def is_exact(self) -> bool:
        """True when the pseudo-gradient of a clip is BP's gradient on any video (up to
        batch normalisation's per-tick statistics): drained, balanced (every error a stage
        gets at a tick born from one frame), no frame gap left, and every temporal stage
        that sends errors sends whole ones."""
        return (
            self.drain
            and self.is_balanced
            and not any(self.gaps())
            and (self.whole_errors or not self.accumulators)
        )

    @property
    def latency(self) -> int:
        """Ticks from a frame entering to its output at the top: L-1."""
        return self.depth(self.top)

    def frame_gap(self, k: int, stash: int = 0) -> int:
        """Frames between the activation and the error that stage k pairs, along its
        longest path to the top and back: 2(L-1-k) in a chain (plus the ticks temporal
        stages above hold whole errors, `error_height`), less a stash of its last `stash`
        inputs, at least 0; 0 for a relay, whose error does not depend on the input it is
        paired with."""
        if self.relays[k]:
            return 0
        return max(0, self.height(k) + self.error_height(k) - stash)

    def gaps(self) -> list[int]:
        """Per stage, the frame gap left after its own stash."""
        return [self.frame_gap(k, d) for k, d in enumerate(self.stash)]

    def stash_depths(self, stash_depth: int | str | Sequence[int]) -> list[int]:
        """Per stage, how many past inputs it keeps: the depth asked for, capped at its gap.

        Args:
            stash_depth: 0 (Sideways), one depth for every stage, "full" (each stage's
                whole gap: exact per-frame gradients), or a list of L depths, bottom first.

        Returns:
            L ints, min(D_k, gap_k): 0 at the top, where there is no gap.

        Raises:
            ValueError: naming what was expected and what was given.
        """
        count = self.num_stages
        gaps = [self.frame_gap(k) for k in range(count)]
        if isinstance(stash_depth, str):
            if stash_depth != FULL_STASH:
                raise ValueError(
                    f"stash_depth must be an int >= 0, 'full' or a list of {count} ints "
                    f">= 0 (one per stage); got {stash_depth!r}."
                )
            return gaps
        if _is_int(stash_depth):
            depths = [int(stash_depth)] * count
        elif isinstance(stash_depth, Sequence) and all(_is_int(d) for d in stash_depth):
            depths = [int(d) for d in stash_depth]
            if len(depths) != count:
                raise ValueError(
                    f"stash_depth as a list needs one depth per stage ({count}); got "
                    f"{len(depths)}: {list(stash_depth)}."
                )
        else:
            raise ValueError(
                f"stash_depth must be an int >= 0, 'full' or a list of {count} ints >= 0; "
                f"got {stash_depth!r}."
            )
        if any(d < 0 for d in depths):
            raise ValueError(f"stash_depth must be >= 0 for every stage; got {stash_depth!r}.")
        return [min(d, gap) for d, gap in zip(depths, gaps)]

    def first_valid_tick(self, k: int) -> int:
        """The first tick after priming at which stage k receives errors born from a
        scored loss along every path (its longest, `error_height`): L-1-k, or with
        `drain` (frame 0's loss scored at tick L-1 only) 2(L-1)-k (more below temporal
        stages that send whole errors: `error_height`)."""
        return self.error_height(k) + (self.latency if self.drain else 0)

    def first_whole_error_tick(self, k: int) -> int:
        """The tick after priming at which temporal stage k sends its first whole error
        (`whole_errors`): that of its first valid input, complete `holds(k)` ticks after
        stage k's first valid tick (`windows.whole_error_tick`)."""
        return self.first_valid_tick(k) + self.holds(k)

    def valid_ticks(self, clip_length: int, k: int) -> int:
        """Ticks of a primed clip of `clip_length` frames in which stage k receives a
        valid error (every frame's, with `drain`)."""
        if self.drain:
            return clip_length
        return max(clip_length - self.first_valid_tick(k), 0)

    def primed_ticks(self, clip_length: int, k: int) -> int:
        """Of stage k's valid ticks, those whose error was born from frame 0 (the fill);
        with `drain` frame 0 is scored once, as every frame."""
        if self.drain:
            return min(1, clip_length)
        return min(self.latency + 1, self.valid_ticks(clip_length, k))

    def loss_frames(self, clip_length: int) -> int:
        """Distinct frames a primed clip puts through Sideways' loss: 0 ... T-L, or every
        frame with `drain`."""
        if self.drain:
            return clip_length
        return max(clip_length - self.latency - 1, 0) + 1

    # ----------------------------------------------------------------- the drain
    @property
    def tail_ticks(self) -> int:
        """Ticks a drained clip runs after its last frame entered: until that frame's
        error has reached every stage, latency + the largest `error_height` (2(L-1) in a
        chain of per-frame stages); 0 without `drain`."""
        if not self.drain:
            return 0
        return self.latency + max(self.error_height(k) for k in range(self.num_stages))

    def drained(self, video: tf.Tensor) -> tf.Tensor:
        """`video` [batch, time, ...] as the pipeline runs it: with `drain`, its last frame
        held for `tail_ticks` more ticks (no new frame enters); as it is otherwise."""
        if not self.drain:
            return video
        last = video[:, -1:]
        return tf.concat([video, tf.repeat(last, self.tail_ticks, axis=1)], axis=1)

    def scored_ticks(self, time: tf.Tensor) -> tuple:
        """(first, count): the ticks whose top output the loss scores, of a clip of `time`
        frames: every tick, or with `drain` the ticks at which frames 0 ... T-1 reach
        the top, L-1 ... T+L-2."""
        return (self.latency if self.drain else 0), time

    def valid_error_ticks(self, ticks_before: tf.Tensor, time: tf.Tensor) -> list:
        """Per stage, how many of the next `time` ticks bring it an error born from a loss,
        after `ticks_before` ticks since priming; int64 scalars, bottom first. With
        `drain`, `time` is the clip's frames, and every frame's error arrives: `time`."""
        ticks_before = tf.cast(ticks_before, tf.int64)
        time = tf.cast(time, tf.int64)
        if self.drain:
            return [time for _ in range(self.num_stages)]
        return [
            tf.clip_by_value(ticks_before + time - self.first_valid_tick(k), 0, time)
            for k in range(self.num_stages)
        ]

    def aligned_target_indices(self, time: tf.Tensor) -> tf.Tensor:
        """For each tick t, the frame whose output reaches the top: max(t - L + 1, 0)
        (with `drain`, over the clip's `time` + `tail_ticks` ticks, at most T-1)."""
        indices = tf.maximum(tf.range(time + self.tail_ticks) - self.latency, 0)
        return tf.minimum(indices, time - 1) if self.drain else indices

    def align_targets(self, target: tf.Tensor, time: tf.Tensor) -> tf.Tensor:
        """The targets scored at each tick: clip labels [batch] as they are, per-frame
        targets [batch, time, ...] from the frame that reached the top at that tick
        (with `drain`, [batch, time + tail_ticks, ...])."""
        if target.shape.rank == 1:
            return target
        return tf.gather(target, self.aligned_target_indices(time), axis=1)


def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _named(source) -> str:
    """A source as an error message names it."""
    return (
        "the video" if source == VIDEO else f"stage {source}" if _is_int(source) else repr(source)
    )


def check_inputs(inputs: Sequence) -> tuple:
    """`SidewaysModel`'s `inputs` as `StageGraph.inputs`: per stage, a tuple of sources.

    Each entry is a source or a list of sources; a source is an earlier stage's index or
    VIDEO ("video"). Raises ValueError naming the stage for anything else (`check_graph`
    checks how they connect).
    """
    if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence):
        raise ValueError(
            "inputs must be a list with one entry per stage, each a source or a list of "
            f"sources (an earlier stage's index, or ks.VIDEO); got {inputs!r}."
        )
    checked = []
    for k, entry in enumerate(inputs):
        sources = list(entry) if isinstance(entry, (list, tuple, np.ndarray)) else [entry]
        sources = [VIDEO if s == "video" else s for s in sources]
        for s in sources:
            if s != VIDEO and not _is_int(s):
                raise ValueError(
                    f"Stage {k} reads {s!r}; a source is an earlier stage's index or "
                    "ks.VIDEO (the video)."
                )
        checked.append(tuple(int(s) for s in sources))
    return tuple(checked)


def of_stages(stages: Sequence, devices: Sequence[str | None] | None = None) -> StageGraph:
    """The chain of `stages` (their windows), on `devices`: what an engine called with
    stages alone runs."""
    return StageGraph.chain(len(stages), devices, [stage_window(s) for s in stages])


def with_delay_lines(inputs: Sequence) -> tuple[tuple, tuple]:
    """The graph `inputs` (per stage, its sources) with a delay line on every edge that
    skips depth: a source j read by a stage k of depth(k) > depth(j) + 1 (the video's depth
    is -1) passes through depth(k) - depth(j) - 1 relays, each one stage that holds its
    input for one tick (docs/algorithm.md, "Delay lines"). The result is balanced
    (`StageGraph.is_balanced`); a balanced graph comes back as it is.

    Returns:
        (inputs, origins): the new graph's inputs, bottom first, a stage's relays just
        before it; and per new stage, the index of the stage of `inputs` it is, or for a
        relay the (source, reader, tick) of the edge it delays, its tick counted from 1 at
        the source.
    """
    inputs = check_inputs(inputs)
    depths, index, new_inputs, origins = [], {}, [], []
    for k, sources in enumerate(inputs):
        depths.append(max(0 if s == VIDEO else depths[s] + 1 for s in sources))
        read = []
        for s in sources:
            source = VIDEO if s == VIDEO else index[s]
            for tick in range(1, depths[k] - (-1 if s == VIDEO else depths[s])):
                new_inputs.append((source,))
                origins.append((s, k, tick))
                source = len(new_inputs) - 1
            read.append(source)
        index[k] = len(new_inputs)
        new_inputs.append(tuple(read))
        origins.append(k)
    return tuple(new_inputs), tuple(origins)
