"""Sideways pseudo-gradients batched in time, whole clips or chunks of consecutive ticks.

docs/algorithm.md ("The same pseudo-gradients, batched in time"): with weights fixed during a
clip, stage k at tick t of the pipeline computes f_k on its input of that tick, and that
input is stage k-1's output of tick t-1 (the primed value at t = 0, which is stage k-1's
output of tick 0). So each stage can process all B*T ticks in one call, its input being
the output of the stage below shifted by one tick. Going down, the error of stage k at
tick t is the input-gradient of stage k+1 at tick t-1 (zero at t = 0, as primed). One
forward and one backward pass per stage over every tick: the FLOPs and batch shapes of
BP, the numbers of the tick-by-tick engine.

Cut into chunks of C consecutive ticks (docs/algorithm.md, "Blocks of ticks"), the passes
become L x T/C blocks: stage k's forward pass over chunk c needs only stage k-1's over
chunks c and c-1, and its backward pass only stage k+1's backward over chunks c and c-1
(and its own forward over c, on the tape). Blocks of different stages and chunks are
independent, so TensorFlow runs them concurrently, as the pipeline runs its stages within
a tick, with ops C times bigger than a tick's. C = T is the batched engine; C = 1 has the
tick engine's parallelism (and the batched engine's memory, all activations of the clip).

Batch normalisation and random layers keep that equality (`tick_layers.ClipRows`): each
frame is normalised with the statistics of its tick and group of lanes, and each dropout
mask is the one the pipeline draws for that tick and group.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras
import tensorflow as tf

from keras_sideways import clips
from keras_sideways import graph as graphs
from keras_sideways.engines import tick_layers, windows
from keras_sideways.engines.bp import frame_loss
from keras_sideways.engines.gradients import EngineResult, LossFn, dense, stage_weights
from keras_sideways.graph import StageGraph
from keras_sideways.placement import device_scope


def shift_ticks(x: tf.Tensor, before: tf.Tensor | None = None) -> tf.Tensor:
    """[batch, time, ...] -> the value of the tick before: x[:, max(t-1, 0)].

    `before` [batch, 1, ...] is the value of the tick before the first (a chunk's: the
    last tick of the chunk before); None repeats the first, as primed.
    """
    return tf.concat([x[:, :1] if before is None else before, x[:, :-1]], axis=1)


def delay_errors(g: tf.Tensor, before: tf.Tensor | None = None) -> tf.Tensor:
    """[batch, time, ...] -> the error that arrives one tick later: zero at t = 0.

    `before` [batch, 1, ...] is the error of the tick before the first (a chunk's: the
    last of the chunk before); None is a clip's start, where none arrives.
    """
    return tf.concat([tf.zeros_like(g[:, :1]) if before is None else before, g[:, :-1]], axis=1)


def runs_by_frame(graph: StageGraph, stages: Sequence[keras.layers.Layer]) -> bool:
    """Whether a clip's pseudo-gradients are computed frame by frame: a drained clip with
    no frame gap left (`stash_depth="full"`), per-frame stages and no batch norm.

    Every error then meets the input of the frame it was born from, at the tick that
    frame passed (docs/algorithm.md, "Fill and drain"): stage k's forward pass over the
    frames of the clip is kept on its tape and its backward pass takes each frame's error
    there, instead of recomputing the stashed inputs over the ticks of the drained clip.
    The numbers are the tick-by-tick pipeline's (tested), at BP's cost. A temporal stage
    must send whole errors (`StageGraph.is_exact`), which by frame are each frame's error
    from every window that holds it. Batch norm's statistics count every tick of the
    drained clip: with it the clip runs tick by tick (over the drained clip).
    """
    return graph.is_exact and not tick_layers.TickLayers(stages).norms


def ticks_run(graph: StageGraph, stages: Sequence[keras.layers.Layer], frames: int) -> int:
    """The ticks the batched passes run for a clip of `frames` (its drained tail too,
    unless they run by frame)."""
    return frames + (0 if runs_by_frame(graph, stages) else graph.tail_ticks)


def chunk_bounds(time: int | tf.Tensor, chunk: int | None) -> list[tuple]:
    """(first tick, ticks) of each chunk of `chunk` consecutive ticks, the last one
    shorter if `chunk` does not divide `time`; None: one chunk of every tick."""
    if chunk is None:
        return [(0, time)]
    return [(start, min(chunk, time - start)) for start in range(0, time, chunk)]


def batched_sideways_gradients(
    stages: Sequence[keras.layers.Layer],
    video: tf.Tensor,
    target: tf.Tensor,
    loss_fn: LossFn,
    sample_weight: tf.Tensor | None = None,
    graph: StageGraph | None = None,
    capacity: int | None = None,
    chunk: int | None = None,
) -> EngineResult:
    """The pseudo-gradients of `lanes.sideways_gradients`, one batched pass per stage.

    `graph` says which stage reads which, where each runs and its stash (None: the chain
    of `stages`, no stash). With `graph.stash[k]` = D_k > 0, stage k's backward pass runs
    at its inputs of D_k ticks earlier (a second forward pass over the lagged inputs), as
    the pipeline's stash does. `capacity` is the pipeline's number of lanes: batch
    normalisation and dropout treat the batch in groups of that many lanes, as the
    pipeline runs it (None: one group). `chunk` cuts the clip into blocks of that many
    ticks that run concurrently (the clip length must then be static); None makes one
    block of the whole clip.
    """
    if chunk is not None and (video.shape[1] is None or chunk < 1):
        raise ValueError(
            f"Chunks of ticks need a clip of static length and a chunk >= 1; got clip "
            f"length {video.shape[1]} and chunk {chunk!r}."
        )
    graph = graph or graphs.of_stages(stages)
    frames = video.shape[1] or tf.shape(video)[1]  # the clip's; the pipeline runs it drained
    layers = tick_layers.TickLayers(stages)
    with layers.patched():
        blocks = _Blocks.of(stages, video, target, loss_fn, sample_weight, graph, layers)
        blocks = dataclasses.replace(blocks, lanes=capacity or blocks.lanes)
        if chunk is not None:
            blocks = blocks.chunked(chunk)
        inputs, outputs, tapes, losses = _forward(stages, blocks)
        grads = _backward(blocks, inputs, outputs, tapes, losses)
        # Average each stage over its valid ticks (the 1/T of the loss becomes 1/count).
        valid = graph.valid_error_ticks(tf.constant(0, tf.int64), frames)
        frames_f = tf.cast(frames, tf.float32)
        scales = [frames_f / tf.cast(tf.maximum(count, 1), tf.float32) for count in valid]
        top = [clips.batch_to_frames(out, piece) for out, piece in zip(outputs[-1], blocks.pieces)]
        top = top[0] if len(top) == 1 else tf.concat(top, axis=1)
        first, count = blocks.scored
        return EngineResult(
            gradients=[
                [g * tf.cast(scale, g.dtype) for g in stage_grads]  # float16 weights too
                for stage_grads, scale in zip(grads, scales)
            ],
            loss=tf.add_n([loss for loss in losses if loss is not None]),
            outputs=top[:, first : first + count] if graph.drain else top,
            targets=blocks.scored_targets(),
            valid_ticks=valid,
            statistics=[
                (layer, mean, variance)
                for layer, (mean, variance) in zip(
                    layers.recording_norms(), layers.take_statistics()
                )
            ],
        )


@dataclasses.dataclass(frozen=True)
class _Blocks:
    """A clip batch cut into blocks of consecutive ticks, and what every block reads."""

    graph: StageGraph
    layers: tick_layers.TickLayers
    video: tf.Tensor  # as the pipeline runs it (`StageGraph.drained`)
    target: tf.Tensor
    aligned: tf.Tensor  # the targets scored at each tick
    scored: tuple  # (first, count) of the ticks whose top output the loss scores
    loss_fn: LossFn
    sample_weight: tf.Tensor | None
    weights: list  # per stage, its trainable variables' values
    seeds: tf.Tensor
    lanes: tf.Tensor | int  # lanes per group, as the pipeline runs them
    bounds: list  # (first tick, ticks) of each block
    pieces: list  # the video of each block, [batch, ticks, ...]
    by_frame: bool = False  # rows are frames, each stage's at its tick (`runs_by_frame`)

    @classmethod
    def of(cls, stages, video, target, loss_fn, sample_weight, graph, layers) -> _Blocks:
        """One block of the whole clip (drained, with `graph.drain`, unless by frame)."""
        frames = video.shape[1] or tf.shape(video)[1]
        by_frame = runs_by_frame(graph, stages)
        if by_frame:
            aligned, scored = target, (0, frames)
        else:
            video = graph.drained(video)
            aligned, scored = graph.align_targets(target, frames), graph.scored_ticks(frames)
        return cls(
            graph,
            layers,
            video,
            target,
            aligned,
            scored,
            loss_fn,
            sample_weight,
            stage_weights(stages),
            layers.draw_seeds(),
            video.shape[0] or tf.shape(video)[0],
            chunk_bounds(video.shape[1] or tf.shape(video)[1], None),
            [video],
            by_frame,
        )

    def chunked(self, chunk: int) -> _Blocks:
        """Blocks of `chunk` ticks (a clip of static length)."""
        bounds = chunk_bounds(self.video.shape[1], chunk)
        pieces = [self.video[:, start : start + size] for start, size in bounds]
        return dataclasses.replace(self, bounds=bounds, pieces=pieces)

    def rows(self, c: int, lag: int = 0) -> tick_layers.ClipRows:
        """The rows of block c's ticks, holding the inputs of `lag` ticks before."""
        start, size = self.bounds[c]
        indices = tf.maximum(tf.range(start, start + size) - lag, 0)
        batch = tf.shape(self.video)[0]
        return tick_layers.ClipRows(self.seeds, batch, size, self.lanes, indices)

    def loss(self, c: int, out: tf.Tensor) -> tf.Tensor | None:
        """Block c's share of the mean over the B*T scored tick losses (each error scaled
        by 1/T); None for a block with no scored tick (a drained clip's tail)."""
        start, size = self.bounds[c]
        first, count = self.scored
        low, high = start, start + size
        if self.graph.drain:  # the ticks of the block that the loss scores
            low, high = _bound(max, low, first), _bound(min, high, first + count)
            if isinstance(high, int) and isinstance(low, int) and high <= low:
                return None
        frames = clips.batch_to_frames(out, self.pieces[c])[:, low - start : high - start]
        scored = self.aligned
        if self.target.shape.rank != 1:
            scored = scored[:, low:high]
        share = tf.cast(high - low, tf.float32) / tf.cast(count, tf.float32)
        return frame_loss(self.loss_fn, scored, frames, self.sample_weight) * share

    def scored_targets(self) -> tf.Tensor:
        """The targets of the scored ticks, as the engine's outputs are returned."""
        if self.target.shape.rank == 1 or not self.graph.drain:
            return self.aligned
        first, count = self.scored
        return self.aligned[:, first : first + count]


def _forward(stages, blocks: _Blocks) -> tuple:
    """Each stage over each block on its own tape (at the stashed inputs); returns per
    stage and block its input, its output, the tape, and per block the top's loss."""
    graph = blocks.graph
    shifted = [None] * graph.num_stages  # per stage, its outputs one tick late, by block
    inputs, outputs, tapes, losses = [], [], [], []
    for k, stage in enumerate(stages):
        # Its inputs, by source, block by block.
        frames = graph.sources(k, graph.input_of(k, blocks.pieces, shifted))
        results = [_forward_block(blocks, k, stage, frames, c) for c in range(len(blocks.bounds))]
        x, out, tape, ups, loss = (list(r) for r in zip(*results))
        inputs.append(x)
        outputs.append(out)
        tapes.append(tape)
        losses = loss if k == graph.top else losses
        # The reader's input at tick t is this stage's output at t-1 (by frame: of its frame).
        shifted[k] = (
            ups
            if blocks.by_frame
            else [shift_ticks(up, ups[c - 1][:, -1:] if c else None) for c, up in enumerate(ups)]
        )
    return inputs, outputs, tapes, losses


def _forward_block(blocks: _Blocks, k: int, stage, frames: list, c: int) -> tuple:
    """Stage k over block c, from its inputs `frames` by source and block: (input,
    output, tape, what moves up [batch, ticks, ...], the loss at the top or None)."""
    graph, layers = blocks.graph, blocks.layers
    depth, window, device = graph.stash[k], graph.windows[k], graph.devices[k]
    lag = depth
    if blocks.by_frame:  # the tape is the stash: row r is frame r, at tick r + depth(k)
        depth, lag = 0, -graph.depth(k)

    def stage_input(lag=0):  # shaped as the stage reads it: one tensor, or one per source
        return graph.shaped(k, [_stage_input(f, blocks.bounds, c, window, lag) for f in frames])

    tape = tf.GradientTape(watch_accessed_variables=False)
    with device_scope(device):
        if depth:
            with layers.rows(blocks.rows(c), record=True):  # what moves up; the tape sees the stash
                up = stage(stage_input(), training=True)
        x = stage_input(depth)
    with device_scope(device), tape, layers.rows(blocks.rows(c, lag), record=not depth):
        tape.watch(blocks.weights[k])
        tape.watch(graph.stage_sources(k, x))  # what it reads from stages
        out = stage(x, training=True)
        loss = blocks.loss(c, out) if k == graph.top else None
    up = clips.batch_to_frames(up if depth else out, blocks.pieces[c])
    return x, out, tape, up, loss


def _backward(blocks: _Blocks, inputs, outputs, tapes, losses) -> list:
    """One vector-Jacobian product per stage and block, errors delayed by one tick; returns
    per stage its weights' gradients summed over the blocks."""
    graph = blocks.graph
    grads, input_grads = [None] * graph.num_stages, [None] * graph.num_stages
    for k in reversed(range(graph.num_stages)):
        errors = None if k == graph.top else _errors_of(blocks, k, input_grads)
        whole = graph.holds(k) > 0
        stage_grads, below = [], []
        for c in range(len(blocks.bounds)):
            watched = graph.stage_sources(k, inputs[k][c])
            sources = watched + blocks.weights[k]
            with device_scope(graph.devices[k]):
                if errors is None:  # the top: no gradient from a block the loss skips
                    g = [None] * len(sources)
                    if losses[c] is not None:
                        g = tapes[k][c].gradient(losses[c], sources)
                else:  # by frame, a frame's error meets that frame: no delay
                    delayed = errors[c]
                    if not blocks.by_frame:
                        delayed = delay_errors(errors[c], errors[c - 1][:, -1:] if c else None)
                    g = tapes[k][c].gradient(
                        outputs[k][c], sources, output_gradients=clips.frames_to_batch(delayed)
                    )
            g = dense(g, sources)
            # A window's input-gradients are summed: the error of its tick (or kept whole).
            summed = [
                tf.reduce_sum(e, axis=1) if graph.windows[k] > 1 and not whole else e
                for e in g[: len(watched)]
            ]
            below.append([clips.batch_to_frames(e, blocks.pieces[c]) for e in summed])
            stage_grads.append(g[len(watched) :])
        by_source = [list(blocks_) for blocks_ in zip(*below)]
        if whole and by_source:
            by_source = [_whole_errors(blocks, k, by_source[0])]  # a temporal stage: one source
        # Per source (None: the video), its input-gradients block by block.
        input_grads[k] = graph.input_gradient(k, by_source)
        grads[k] = [tf.add_n(list(parts)) for parts in zip(*stage_grads)]
    return grads


def _whole_errors(blocks: _Blocks, k: int, grads: list) -> list:
    """Temporal stage k's whole errors block by block, from its input-gradients over the
    window of every tick, block by block [batch, ticks, W, ...]: those the tick-by-tick
    loop sends (`windows.whole_errors`), or by frame each frame's own. A frame's error
    takes shares from the next W-1 ticks, so the blocks' are joined for it."""
    graph = blocks.graph
    joined = grads[0] if len(grads) == 1 else tf.concat(grads, axis=1)
    if blocks.by_frame:
        errors = windows.whole_errors(joined, first=0, back=graph.holds(k))
    else:
        errors = windows.whole_errors(joined, first=graph.first_whole_error_tick(k))
    return [errors[:, start : start + size] for start, size in blocks.bounds]


def _bound(pick, a, b):
    """`pick` (max or min) of two ticks: a Python int when both are, else a tensor."""
    if isinstance(a, int) and isinstance(b, int):
        return pick(a, b)
    return (tf.maximum if pick is max else tf.minimum)(a, b)


def _errors_of(blocks: _Blocks, k: int, input_grads: list) -> list:
    """Stage k's errors block by block, [batch, ticks, ...], before the one-tick delay:
    the sum of its readers' input-gradients; zero, where its paths to the top differ in
    length, at the ticks before errors have arrived along all of them (`masks_errors`)."""
    graph = blocks.graph
    parts = graph.error_parts(k, input_grads)  # per reader, block by block
    errors = [p[0] if len(p) == 1 else tf.add_n(list(p)) for p in zip(*parts)]
    if not graph.masks_errors(k):
        return errors
    # The error delayed into tick t is the one computed at t-1: keep those of t >= first - 1.
    first = graph.first_valid_tick(k)
    masked = []
    for e, (start, size) in zip(errors, blocks.bounds):
        kept = tf.cast(tf.range(start, start + size) >= first - 1, e.dtype)
        masked.append(e * tf.reshape(kept, [1, -1] + [1] * (e.shape.rank - 2)))
    return masked


def _stage_input(frames: list, bounds: list, c: int, window: int, lag: int = 0) -> tf.Tensor:
    """A stage's input at the ticks of chunk c, [batch·ticks, ...], from its inputs chunk
    by chunk `frames`: those of `lag` ticks earlier, in causal windows of `window` ticks
    (oldest first, [batch·ticks, window, ...]); before the clip, its first input."""
    if window == 1 and lag == 0:
        return clips.frames_to_batch(frames[c])
    start, size = bounds[c]
    reach = start - lag - (window - 1)  # the earliest tick needed
    first = 0
    while c and bounds[first][0] + bounds[first][1] <= reach:
        first += 1
    seen = frames[c] if first == c else tf.concat(frames[first : c + 1], axis=1)
    wanted = tf.range(start, start + size) - lag
    return windows.gathered_windows(seen, wanted, window, first=bounds[first][0])
