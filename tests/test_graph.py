"""The stage graph: a chain's clock equals the formulas of docs/algorithm.md, a graph
that the engines cannot run is refused by name, and graphs of stages (skip connections)
train in both engines as a slow tick-by-tick reference says, and as BP on static video."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import CLIP_LOSS, FRAME_LOSS, clip_labels, frame_targets, layer_of, random_video

import keras_sideways as ks
from keras_sideways import models
from keras_sideways.graph import VIDEO, StageGraph, with_delay_lines


# docs/algorithm.md's clock for a chain of L stages, written plainly (the functions of L
# the engines used before the graph).
def old_frame_gap(L, k, stash=0):
    return max(0, 2 * (L - 1 - k) - stash)


def old_valid_ticks(T, L, k):
    return max(T - (L - 1 - k), 0)


@pytest.mark.parametrize("L", [2, 3, 5])
def test_a_chains_clock_is_the_old_arithmetic(L):
    graph = StageGraph.chain(L)
    assert graph.buffered == list(range(L - 1)) and graph.top == L - 1 and graph.latency == L - 1
    for k in range(L):
        for stash in range(2 * L):
            assert graph.frame_gap(k, stash) == old_frame_gap(L, k, stash)
        assert graph.first_valid_tick(k) == L - 1 - k
        for T in range(1, 12):
            assert graph.valid_ticks(T, k) == old_valid_ticks(T, L, k)
            assert graph.primed_ticks(T, k) == min(L, old_valid_ticks(T, L, k))
    assert [graph.loss_frames(T) for T in range(1, 12)] == [max(T - L, 0) + 1 for T in range(1, 12)]
    for before in (0, 1, 7):
        counts = graph.valid_error_ticks(tf.constant(before), tf.constant(6))
        expected = [min(max(before + 6 - (L - 1 - k), 0), 6) for k in range(L)]
        assert [int(c) for c in counts] == expected
    np.testing.assert_array_equal(
        graph.aligned_target_indices(7), [max(t - L + 1, 0) for t in range(7)]
    )


def test_a_chain_caps_its_stash_and_keeps_devices_and_windows():
    graph = StageGraph.chain(4, ["/CPU:0"] * 4, [3, 1, 2, 1], stash_depth=[9, 1, 5, 3])
    assert graph.stash == (6, 1, 2, 0)  # capped at each gap: 6, 4, 2, 0
    assert graph.gaps() == [0, 3, 0, 0]
    assert graph.windows == (3, 1, 2, 1) and graph.devices == ("/CPU:0",) * 4
    moved = graph.placed([None, None, "/CPU:0", "/CPU:0"])
    assert moved.devices[0] is None and moved.stash == graph.stash  # immutable: a new graph
    assert graph.tasks == [None] * 4
    assert StageGraph.chain(2, ["/job:worker/task:1/device:GPU:0", None]).tasks == [
        "/job:worker/replica:0/task:1",
        None,
    ]


def test_a_chain_routes_inputs_and_errors_one_stage_apart():
    graph = StageGraph.chain(3)
    assert graph.stage_inputs("video", ["A0", "A1"]) == ["video", "A0", "A1"]
    assert graph.input_shapes((8, 8, 1), [(4,), (5,), (3,)]) == [(8, 8, 1), (4,), (5,)]
    assert graph.held(["o0", "o1", "o2"]) == ["o0", "o1"]
    assert graph.output_errors(["g0", "g1", "g2"]) == ["g1", "g2"]  # E_k <- stage k+1's
    assert [graph.reads_video(k) for k in range(3)] == [True, False, False]


@pytest.mark.parametrize(
    "inputs, message",
    [
        (((VIDEO,), (VIDEO,), (1,)), "Stage 0's output is read by no stage"),
        (((0,), (VIDEO,)), "Stage 0 reads stage 0; the first stage can read only the video"),
        (((VIDEO,), (2,), (1,)), "Stage 1 reads stage 2, which is not an earlier stage"),
        (((VIDEO,), (0, 0), (1,)), "Stage 1 reads stage 0, stage 0: a source may appear once"),
        (((VIDEO,), (0,), ()), "Stage 2 reads nothing"),
        (((VIDEO,), (0,), (1,), (1,)), "Stage 2's output is read by no stage"),
    ],
)
def test_a_graph_that_the_engines_cannot_run_is_refused_by_name(inputs, message):
    count = len(inputs)
    with pytest.raises(ValueError, match=message):
        StageGraph(inputs, (None,) * count, (1,) * count, (0,) * count)


def test_a_temporal_stage_reads_one_source():
    with pytest.raises(ValueError, match="Stage 2 is temporal \\(window 3\\) and reads 2"):
        StageGraph.of([VIDEO, 0, [1, 0]], windows=[1, 1, 3])


def test_a_graph_needs_one_device_window_and_stash_per_stage():
    with pytest.raises(ValueError, match="one entry of devices per stage \\(3\\); got 2"):
        StageGraph(((VIDEO,), (0,), (1,)), (None, None), (1,) * 3, (0,) * 3)
    with pytest.raises(ValueError, match="one depth per stage \\(3\\); got 2"):
        StageGraph.chain(3, stash_depth=[1, 2])


# ---------------------------------------------------------------- graphs of stages
# Two tiny graphs (8x8 frames): "skips" sends stage 0 to every later stage, so stage 0's
# errors come back along paths of 1, 2 and 3 edges; in "video" stage 2 reads the video
# beside stage 1. Stages of several sources are small Functional models.
GRAPHS = {"skips": [VIDEO, 0, [1, 0], [2, 0]], "video": [VIDEO, 0, ["video", 1], 2]}


def _two_input_conv(channels, shapes):
    inputs = [keras.Input(shape) for shape in shapes]
    merged = keras.layers.Concatenate()(inputs)
    return keras.Model(
        inputs, keras.layers.Conv2D(channels, 3, padding="same", activation="tanh")(merged)
    )


def _two_input_head(classes, shapes):
    inputs = [keras.Input(shape) for shape in shapes]
    pooled = [keras.layers.GlobalAveragePooling2D()(x) for x in inputs]
    return keras.Model(inputs, keras.layers.Dense(classes)(keras.layers.Concatenate()(pooled)))


def graph_stages(name, classes=3, norm=None):
    """The stages of GRAPHS[name]: 8x8 frames of 1 channel, `classes` outputs per frame;
    `norm` ("batch_norm", ...) inside stage 0."""
    conv = lambda: keras.layers.Conv2D(4, 3, padding="same", activation="tanh")  # noqa: E731
    bottom = conv()
    if norm is not None:
        bottom = keras.Sequential(
            [
                keras.layers.Conv2D(4, 3, padding="same", use_bias=False),
                layer_of(norm),
                keras.layers.Activation("tanh"),
            ]
        )
    if name == "skips":
        return [
            bottom,
            conv(),
            _two_input_conv(4, [(8, 8, 4), (8, 8, 4)]),
            _two_input_head(classes, [(8, 8, 4), (8, 8, 4)]),
        ]
    return [
        bottom,
        conv(),
        _two_input_conv(4, [(8, 8, 1), (8, 8, 4)]),
        keras.Sequential([keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(classes)]),
    ]


def graph_reference(stages, inputs, video, target, loss_fn, stash=None, drain=False):
    """docs/algorithm.md's "Stage graphs", written plainly: a Python loop over ticks, one
    GradientTape per stage, one error buffer per edge.

    At tick t stage k reads, per source, the video's frame t or the source's output of
    tick t-1 (the primed output before); its error is the sum of what its readers sent it
    at tick t-1 (zero at priming); it pairs that error with its input of tick t - D_k (the
    primed input before tick 0); a temporal stage reads the window of its inputs of ticks
    t-W+1 .. t and sends down their input-gradients summed. Its gradient is averaged over
    the ticks t >= its longest path to the top, where every path has brought an error
    born from a loss. With `drain`, the loop runs latency + height(0) more ticks on the
    last frame, the loss scores only ticks latency ... latency+T-1 (frames 0 ... T-1, once
    each), and each stage sums every tick's gradient (an error born from no scored loss is
    zero), divided by T.
    """
    video, target = tf.constant(video), tf.constant(target)
    count, time = len(stages), video.shape[1]
    sources = [s if isinstance(s, list) else [s] for s in inputs]
    sources = [[VIDEO if x == "video" else x for x in s] for s in sources]
    stash = stash or [0] * count
    readers = [[r for r in range(count) if k in sources[r]] for k in range(count)]
    height, depth = [0] * count, [0] * count
    for k in reversed(range(count - 1)):
        height[k] = max(height[r] + 1 for r in readers[k])
    for k in range(count):
        depth[k] = max(0 if s == VIDEO else depth[s] + 1 for s in sources[k])
    frames, ticks, first = time, time, 0  # frames of the clip, ticks run, first scored
    if drain:
        ticks, first = time + depth[-1] + height[0], depth[-1]
        video = tf.concat([video] + [video[:, -1:]] * (ticks - time), axis=1)

    def read(k, frame, outputs):
        parts = [frame if s == VIDEO else outputs[s] for s in sources[k]]
        return parts[0] if len(parts) == 1 else parts

    sizes = [ks.layers.stage_window(stage) for stage in stages]

    def window_of(inputs, t, size):  # a temporal stage's inputs of ticks t-size+1 .. t
        if size == 1:
            return inputs[max(t, 0)]
        return tf.stack([inputs[max(t - j, 0)] for j in reversed(range(size))], axis=1)

    outputs = []  # priming: one synchronised forward pass of frame 0
    for k, stage in enumerate(stages[:-1]):
        primed = window_of([read(k, video[:, 0], outputs)], 0, sizes[k])
        outputs.append(stage(primed, training=True))
    edge_errors = {(r, k): tf.zeros_like(outputs[k]) for k in range(count - 1) for r in readers[k]}
    history = [[] for _ in stages]
    sums = [[tf.zeros_like(v) for v in s.trainable_variables] for s in stages]
    counts = [0] * count
    for t in range(ticks):
        new_outputs, new_errors = [None] * (count - 1), {}
        for k, stage in enumerate(stages):
            history[k].append(read(k, video[:, t], outputs))
            # Ticks before the clip read the primed input, which is tick 0's.
            paired = window_of(history[k], t - stash[k], sizes[k])
            if k < count - 1:
                new_outputs[k] = stage(window_of(history[k], t, sizes[k]), training=True)
            parts = paired if isinstance(paired, list) else [paired]
            from_stages = [p for p, s in zip(parts, sources[k]) if s != VIDEO]
            weights = stage.trainable_variables
            with tf.GradientTape() as tape:
                tape.watch(from_stages)
                out = stage(paired, training=True)
                if k == count - 1:
                    frame = min(max(t - depth[k], 0), frames - 1)
                    y = target if target.shape.rank == 1 else target[:, frame]
                    loss = loss_fn(y, out) * (1.0 if first <= t < first + frames else 0.0)
            if k == count - 1:
                grads = tape.gradient(loss, from_stages + weights)
            else:
                error = tf.add_n([edge_errors[(r, k)] for r in readers[k]])
                grads = tape.gradient(out, from_stages + weights, output_gradients=error)
            grads = [
                tf.zeros_like(v) if g is None else g for g, v in zip(grads, from_stages + weights)
            ]
            for s, g in zip([s for s in sources[k] if s != VIDEO], grads):
                new_errors[(k, s)] = g if sizes[k] == 1 else tf.reduce_sum(g, axis=1)
            if t >= height[k] or drain:
                counts[k] += 1
                sums[k] = [a + g for a, g in zip(sums[k], grads[len(from_stages) :])]
        outputs, edge_errors = new_outputs, new_errors
    counts = [frames] * count if drain else counts
    return [g / max(c, 1) for s, c in zip(sums, counts) for g in s]


def relative_errors(actual, expected):
    """Per variable, |actual - expected| / |expected| in the Euclidean norm."""
    return [
        float(np.linalg.norm(np.asarray(a) - np.asarray(e)) / max(np.linalg.norm(e), 1e-30))
        for a, e in zip(actual, expected)
    ]


# float32 sums over a few ticks of small reductions: rounding of ~1e-7 per operation.
RELATIVE = 1e-5
ENGINE_OPTIONS = {
    "ticks": dict(engine="pipeline", pipeline_chunk=1),
    "blocks": dict(engine="pipeline", pipeline_chunk=2),
    "batched": dict(engine="batched"),
}


def graph_model(name, loss=CLIP_LOSS, classes=3, engine="ticks", stages=None, **options):
    stages = stages or graph_stages(name, classes)
    model = ks.SidewaysModel(stages, inputs=GRAPHS[name], **ENGINE_OPTIONS[engine], **options)
    model.compile(optimizer="sgd", loss=loss)
    return model


def test_a_graphs_clock_follows_its_longest_and_shortest_paths():
    graph = StageGraph.of(GRAPHS["skips"], stash_depth="full")
    assert [graph.depth(k) for k in range(4)] == [0, 1, 2, 3]
    assert [graph.height(k) for k in range(4)] == [3, 2, 1, 0]  # longest paths to the top
    assert [graph.shortest_height(k) for k in range(4)] == [1, 2, 1, 0]
    assert [graph.masks_errors(k) for k in range(4)] == [True, False, False, False]
    assert graph.stash == (6, 4, 2, 0)  # capped at 2 x the longest path
    assert graph.readers(0) == [1, 2, 3] and graph.buffered == [0, 1, 2]
    # A stage of several sources reads, and sends errors back to, each in order.
    assert graph.stage_inputs("x", ["A0", "A1", "A2"]) == ["x", "A0", ["A1", "A0"], ["A2", "A0"]]
    grads = [None, "g1", ["g21", "g20"], ["g32", "g30"]]
    assert graph.error_parts(0, grads) == ["g1", "g20", "g30"]
    assert graph.error_parts(2, grads) == ["g32"]
    video = StageGraph.of(GRAPHS["video"])
    assert video.reads_video(0) and not video.reads_video(2)
    assert video.input_gradient(2, ["g"]) == [None, "g"]
    assert [video.height(k) for k in range(4)] == [3, 2, 1, 0] and video.latency == 3


def test_whole_errors_where_every_path_to_the_top_holds_errors_alike():
    # A temporal top (window 2) that every path goes through: every stage's errors come
    # one tick later, so the full stash is one deeper and the drain one tick longer.
    inputs, origins = with_delay_lines(GRAPHS["video"])  # two relays hold the video for 2
    windows = [1] * (len(inputs) - 1) + [2]
    relays = [not isinstance(o, int) for o in origins]
    whole = StageGraph.of(inputs, None, windows, "full", "auto", relays=relays)
    plain = StageGraph.of(inputs, None, windows, 0, relays=relays)
    assert whole.whole_errors and not plain.whole_errors
    heights = [whole.height(k) for k in range(len(inputs))]
    assert heights == [3, 2, 3, 2, 1, 0]
    assert [whole.error_height(k) for k in range(len(inputs))] == [h + 1 for h in heights[:-1]] + [
        0
    ]
    assert whole.stash == (7, 5, 0, 0, 3, 0)  # up and back: height + error height
    assert whole.is_exact and whole.tail_ticks == whole.latency + 4
    # A temporal stage that a skip goes around: the skip's errors would come W-1 ticks
    # sooner than the stage's, from another frame, so a full stash keeps the windows' sums.
    inputs, _ = with_delay_lines(GRAPHS["skips"])
    windows = [1, 2] + [1] * (len(inputs) - 2)
    around = StageGraph.of(inputs, windows=windows, stash_depth="full")
    assert not around.whole_errors and not around.is_exact


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, targets, stash_depth, delay_lines, drain",
    [
        ("skips", "clip", 0, False, False),
        ("skips", "frames", 0, True, False),
        ("skips", "clip", "full", False, False),
        ("skips", "frames", 1, False, False),
        ("video", "clip", 0, False, False),
        ("video", "frames", "full", True, False),
        # Drained without delay lines: the skips' fresher errors, every frame scored once.
        ("skips", "clip", 0, False, True),
        ("skips", "frames", 1, False, True),
        ("video", "frames", 0, False, True),
    ],
    ids=str,
)
def test_both_engines_equal_the_slow_reference_on_a_graph(
    name, targets, stash_depth, delay_lines, drain
):
    video = random_video(batch=2, time=6, seed=3)
    target = clip_labels(2) if targets == "clip" else frame_targets(video)
    loss = CLIP_LOSS if targets == "clip" else FRAME_LOSS
    stages = graph_stages(name)
    results = {}
    for engine in ENGINE_OPTIONS:
        model = graph_model(
            name,
            loss,
            engine=engine,
            stages=stages,
            stash_depth=stash_depth,
            delay_lines=delay_lines,
            drain=drain,
        )
        results[engine] = model.compute_gradients(video, target)
    # With delay lines the reference runs the model's relays as stages of its graph.
    inputs = [list(s) for s in model.graph.inputs]
    assert (len(model.stages) > len(stages)) == delay_lines
    assert model.graph.drain == drain and model.graph.is_balanced == delay_lines
    reference = graph_reference(model.stages, inputs, video, target, loss, model.stash, drain)
    for engine, gradients in results.items():
        errors = relative_errors(gradients, reference)
        assert max(errors) <= RELATIVE, (engine, errors)
    assert all(np.abs(g).max() > 0 for g in reference)


@pytest.mark.slow
@pytest.mark.parametrize("stash_depth", [0, "full"], ids=str)
@pytest.mark.parametrize("targets", ["clip", "frames"])
@pytest.mark.parametrize("drain", [False, True], ids=["undrained", "drained"])
def test_static_video_through_a_graph_gives_bp_gradients(targets, stash_depth, drain):
    # Drained without delay lines, no error is masked: a stage's paths to the top bring
    # each scored frame's errors at different ticks, all within the tail, and their sum
    # over the clip is BP's.
    video = np.repeat(random_video(batch=2, time=6, seed=4)[:, :1], 6, axis=1)
    target = clip_labels(2) if targets == "clip" else frame_targets(video)
    loss = CLIP_LOSS if targets == "clip" else FRAME_LOSS
    stages = graph_stages("skips")
    bp = graph_model("skips", loss, stages=stages).compute_gradients(video, target, mode="bp")
    for engine in ENGINE_OPTIONS:
        model = graph_model(
            "skips",
            loss,
            engine=engine,
            stages=stages,
            stash_depth=stash_depth,
            drain=drain,
            delay_lines=False,
        )
        assert model.graph.drain == drain and not model.graph.is_balanced
        errors = relative_errors(model.compute_gradients(video, target), bp)
        assert max(errors) <= RELATIVE, (engine, errors)


def temporal_graph_stages():
    """GRAPHS["skips"] with a causal temporal convolution of window 3 at the bottom."""
    return [ks.layers.CausalTemporalConv(4, 3, window=3, activation="tanh")] + graph_stages(
        "skips"
    )[1:]


@pytest.mark.slow
@pytest.mark.parametrize("stash_depth", [0, "full"], ids=str)
def test_a_temporal_stage_in_a_graph_equals_the_reference_and_bp_on_static_video(stash_depth):
    video = random_video(batch=2, time=6, seed=5)
    stages = temporal_graph_stages()
    reference = graph_reference(
        stages,
        GRAPHS["skips"],
        video,
        clip_labels(2),
        CLIP_LOSS,
        graph_model("skips", stages=stages, stash_depth=stash_depth, delay_lines=False).stash,
    )
    static = np.repeat(video[:, :1], 6, axis=1)
    bp = graph_model("skips", stages=stages).compute_gradients(static, clip_labels(2), mode="bp")
    for engine in ENGINE_OPTIONS:
        model = graph_model(
            "skips", engine=engine, stages=stages, stash_depth=stash_depth, delay_lines=False
        )
        assert model.windows == [3, 1, 1, 1]
        errors = relative_errors(model.compute_gradients(video, clip_labels(2)), reference)
        assert max(errors) <= RELATIVE, (engine, errors)
        errors = relative_errors(model.compute_gradients(static, clip_labels(2)), bp)
        assert max(errors) <= RELATIVE, (engine, "static", errors)


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["batch_norm", "layer_norm"])
def test_normalisation_in_a_graph_agrees_across_engines_and_with_bp_on_static_video(norm):
    video = random_video(batch=2, time=5, seed=6)
    static = np.repeat(video[:, :1], 5, axis=1)
    stages = graph_stages("skips", norm=norm)
    bp = graph_model("skips", stages=stages).compute_gradients(static, clip_labels(2), mode="bp")
    moving, still = {}, {}
    for engine in ENGINE_OPTIONS:
        model = graph_model("skips", engine=engine, stages=stages, stash_depth="full")
        moving[engine] = model.compute_gradients(video, clip_labels(2))
        still[engine] = model.compute_gradients(static, clip_labels(2))
        # BP normalises over all B*T frames at once, Sideways tick by tick: the same
        # statistics from other sums, whose rounding the normalisation's backward pass
        # (differences of near-equal terms) magnifies: the chain's tolerance for it
        # (tests/test_model.py), 1e-4.
        assert max(relative_errors(still[engine], bp)) <= 10 * RELATIVE, engine
    for engine in ("blocks", "batched"):
        assert max(relative_errors(moving[engine], moving["ticks"])) <= RELATIVE, engine


def shuffled_clips(batch_size=2):
    """8 clips of 5 frames, 8x8: the class is which half of the frame is brighter."""
    rng = np.random.default_rng(7)
    x = rng.random((8, 5, 8, 8, 1), dtype=np.float32) * 0.2
    y = np.arange(8) % 2
    x[y == 0, :, :4] += 0.8
    x[y == 1, :, 4:] += 0.8
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(8, seed=1)
    return data.batch(batch_size, drop_remainder=True)


@pytest.mark.slow
@pytest.mark.parametrize("engine", list(ENGINE_OPTIONS))
def test_fit_trains_a_graph_model_on_a_shuffled_dataset(engine):
    model = ks.SidewaysModel(
        graph_stages("skips", classes=2), inputs=GRAPHS["skips"], **ENGINE_OPTIONS[engine]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=CLIP_LOSS)
    model.build((2, 5, 8, 8, 1))
    before = [v.numpy() for v in model.trainable_variables]
    history = model.fit(shuffled_clips(), epochs=3, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    assert all(np.any(a != v.numpy()) for a, v in zip(before, model.trainable_variables))


def assert_exported_stream_is_the_pipeline(model, video, tmp_path):
    """Exports `model`; its `stream`, fed `video` frame by frame, gives `pipelined_call`'s
    outputs. Returns the loaded export."""
    exported = tf.saved_model.load(ks.export_saved_model(model, tmp_path / "export"))
    frames = video.shape[1]
    streamed = [exported.stream(tf.constant(video[:, t]))["output"] for t in range(frames)]
    np.testing.assert_allclose(np.stack(streamed, 1), model.pipelined_call(video), atol=1e-5)
    return exported


def test_a_graph_model_saves_loads_exports_and_streams(tmp_path):
    model = ks.SidewaysModel(graph_stages("skips"), inputs=GRAPHS["skips"], stash_depth=1)
    model.compile(optimizer="adam", loss=CLIP_LOSS)
    video = random_video(batch=2, time=6, seed=8)
    model.fit(video, clip_labels(2), epochs=1, verbose=0)
    # The whole model, its graph included, and its weights alone.
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.stage_sources == [[VIDEO], [0], [1, 0], [2, 0]] and loaded.graph == model.graph
    np.testing.assert_allclose(loaded(video), model(video), atol=1e-6)
    model.save_weights(tmp_path / "m.weights.h5")
    fresh = ks.SidewaysModel(graph_stages("skips"), inputs=GRAPHS["skips"], stash_depth=1)
    fresh.build(video.shape)
    fresh.load_weights(tmp_path / "m.weights.h5")
    np.testing.assert_allclose(fresh(video), model(video), atol=1e-6)
    # The exported stream runs the graph's pipeline: outputs as pipelined_call's.
    exported = assert_exported_stream_is_the_pipeline(model, video, tmp_path)
    np.testing.assert_allclose(
        exported.serve(tf.constant(video))["frames"], model(video), atol=1e-5
    )
    # At tick t the top reads stage 2 (frame t-3) and stage 0 (frame t-1): on a video
    # that only changes after frame 2, the stream's output differs from the per-frame one.
    assert model.graph.latency == 3


def test_a_streamed_graph_continues_its_buffers_across_chunks():
    # Two chunks streamed leave every buffer (activations, errors, stash rings) where one
    # clip of both chunks run at once leaves it.
    video = random_video(batch=2, time=6, seed=9)
    stages = graph_stages("skips")
    options = dict(stash_depth="full", delay_lines=False)  # the rings of stage 2 as given
    streamed = graph_model("skips", stages=stages, stateful=True, **options)
    whole = graph_model("skips", stages=stages, **options)
    for model in (streamed, whole):
        model.compile(optimizer=keras.optimizers.SGD(0.0), loss=CLIP_LOSS)
    streamed.train_on_batch(video[:, :3], clip_labels(2))
    streamed.train_on_batch(video[:, 3:], clip_labels(2))
    whole.train_on_batch(video, clip_labels(2))
    assert set(streamed.buffers.named_variables) >= {"stash_2_0", "stash_2_1", "error_0"}
    assert int(streamed.buffers.ticks.numpy()) == 6  # a stream counts its ticks
    for name, buffer in whole.buffers.named_variables.items():
        if name == "ticks":
            continue
        np.testing.assert_allclose(
            streamed.buffers.named_variables[name].numpy(), buffer.numpy(), atol=1e-6, err_msg=name
        )


def test_a_graph_model_trains_under_mixed_precision():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = ks.SidewaysModel(
            graph_stages("skips", classes=2), inputs=GRAPHS["skips"], stash_depth=1
        )
    finally:
        keras.config.set_dtype_policy("float32")
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=CLIP_LOSS)
    history = model.fit(shuffled_clips(), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert {v.dtype for v in model.trainable_variables} == {"float32"}
    assert {b.dtype for b in model.buffers.errors} == {"float16"}


@pytest.mark.parametrize(
    "inputs, message",
    [
        ([VIDEO, 0, 1], "inputs needs one entry per stage \\(4\\); got 3"),
        ([VIDEO, 0, [1, 3], 2], "Stage 2 reads stage 3, which is not an earlier stage"),
        ([VIDEO, VIDEO, 1, 2], "Stage 0's output is read by no stage"),
        ([VIDEO, 0, "one", 2], "Stage 2 reads 'one'; a source is an earlier stage's index"),
        ("video", "inputs must be a list with one entry per stage"),
    ],
)
def test_a_model_with_a_bad_graph_is_refused_by_name(inputs, message):
    with pytest.raises(ValueError, match=message):
        ks.SidewaysModel(graph_stages("video"), inputs=inputs)


@pytest.mark.parametrize("delay_lines", [True, False])
def test_a_stage_that_cannot_take_what_it_reads_is_named_as_given(delay_lines):
    # With delay lines (the default), the stages were named as the relays renumber them:
    # "Stage 3 (merge) ... (from stage 2, stage 1)" for the given stage 2, reading 0 and 1.
    def stages():
        return [
            keras.layers.Conv2D(2, 3, padding="same"),
            keras.layers.Conv2D(3, 3, padding="same"),
            keras.layers.Add(name="merge"),  # 2 channels and 3
            keras.Sequential([keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)]),
        ]

    model = ks.SidewaysModel(stages(), inputs=[VIDEO, 0, [0, 1], 2], delay_lines=delay_lines)
    with pytest.raises(ValueError, match=r"^Stage 2 \(merge\) .*\(from stage 0, stage 1\)"):
        model.build((2, 4, 8, 8, 1))
    reads_video = ks.SidewaysModel(stages()[1:], inputs=[VIDEO, [VIDEO, 0], 1])
    with pytest.raises(ValueError, match=r"^Stage 1 \(merge\) .*\(from the video, stage 0\)"):
        reads_video.build((2, 4, 8, 8, 2))


def test_placement_measures_each_stage_on_the_outputs_it_reads():
    from keras_sideways import placement

    graph = StageGraph.of(GRAPHS["skips"])
    costs = placement.measure_stage_costs(
        graph_stages("skips"), tf.constant(random_video(batch=2, time=1)[:, 0]), 1, graph
    )
    assert len(costs) == 4 and all(c > 0 for c in costs)


# ----------------------------------------------------------------- delay lines
def test_delay_lines_hold_each_skip_for_the_depth_it_jumps():
    inputs, origins = with_delay_lines(GRAPHS["skips"])
    # The skip 0 -> 2 gets one relay, 0 -> 3 two, each just before its reader.
    assert inputs == ((VIDEO,), (0,), (0,), (1, 2), (0,), (4,), (3, 5))
    assert origins == (0, 1, (0, 2, 1), 2, (0, 3, 1), (0, 3, 2), 3)
    relays = [not isinstance(o, int) for o in origins]
    graph = StageGraph.of(inputs, stash_depth="full", drain="auto", relays=relays)
    heights = [graph.height(k) for k in range(graph.num_stages)]
    assert graph.is_balanced and heights == [graph.shortest_height(k) for k in range(7)]
    assert graph.stash == (6, 4, 0, 2, 0, 0, 0)  # a relay stashes nothing: it has no gap
    assert graph.drain and graph.tail_ticks == 6 and not StageGraph.of(GRAPHS["skips"]).is_balanced
    # The video, read beside stage 1 by stage 2 (depth 2), waits two ticks.
    inputs, origins = with_delay_lines(GRAPHS["video"])
    assert inputs == ((VIDEO,), (0,), (VIDEO,), (2,), (3, 1), (4,))
    assert with_delay_lines(inputs)[0] == inputs  # balanced: as it is


@pytest.mark.slow
@pytest.mark.parametrize("engine", list(ENGINE_OPTIONS))
@pytest.mark.parametrize("name, targets", [("skips", "clip"), ("video", "frames")])
def test_the_defaults_give_a_graph_bps_gradient_on_moving_video(name, targets, engine):
    video = random_video(batch=2, time=6, seed=3)  # every frame new
    target = clip_labels(2) if targets == "clip" else frame_targets(video)
    loss = CLIP_LOSS if targets == "clip" else FRAME_LOSS
    stages = graph_stages(name)
    model = graph_model(name, loss, engine=engine, stages=stages)  # full stash, delay lines
    assert model.graph.drain and len(model.stages) > len(stages)
    bp = model.compute_gradients(video, target, mode="bp")
    assert max(relative_errors(model.compute_gradients(video, target), bp)) <= RELATIVE
    # The same stash without delay lines is not drained by "auto" and is not BP on moving
    # video, drained or not: the shorter paths' errors meet inputs of other frames.
    undelayed = graph_model(name, loss, engine=engine, stages=stages, delay_lines=False)
    assert not undelayed.graph.drain and not undelayed.graph.is_exact
    assert max(relative_errors(undelayed.compute_gradients(video, target), bp)) > 100 * RELATIVE
    drained = graph_model(name, loss, engine=engine, stages=stages, delay_lines=False, drain=True)
    assert drained.graph.drain and not drained.graph.is_exact
    assert max(relative_errors(drained.compute_gradients(video, target), bp)) > 100 * RELATIVE


def test_with_delay_lines_the_pipeline_computes_each_frames_call():
    # On moving video the stream's output at tick t is `call`'s of frame t - latency:
    # every source brings the same frame. Without delay lines it mixes frames.
    video = random_video(batch=2, time=7, seed=10)
    stages = graph_stages("skips")
    delayed = graph_model("skips", stages=stages, delay_lines=True)
    latency = delayed.graph.latency
    expected = delayed(video)[:, : 7 - latency]
    np.testing.assert_allclose(delayed.pipelined_call(video)[:, latency:], expected, atol=1e-5)
    mixed = graph_model("skips", stages=stages, delay_lines=False).pipelined_call(video)
    assert np.abs(np.asarray(mixed)[:, latency:] - expected).max() > 1e-3


def test_delay_lines_round_trip_and_load_weights_saved_without_them(tmp_path):
    model = graph_model("skips", loss=CLIP_LOSS)  # the defaults: delay lines
    video = random_video(batch=2, time=6, seed=8)
    model.fit(video, clip_labels(2), epochs=1, verbose=0)
    assert [s.name for s in model.stages if isinstance(s, ks.layers.Relay)] == [
        "delay_line_stage_0_to_stage_2_tick_1",
        "delay_line_stage_0_to_stage_3_tick_1",
        "delay_line_stage_0_to_stage_3_tick_2",
    ]
    assert model.count_params() == sum(s.count_params() for s in model.stages if s.weights)
    # The config keeps the stages and graph as given: loading makes the relays again.
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.stage_sources == [[VIDEO], [0], [1, 0], [2, 0]] and loaded.graph == model.graph
    np.testing.assert_allclose(loaded(video), model(video), atol=1e-6)
    # Relays have no weights: a weights file loads with or without them.
    model.save_weights(tmp_path / "m.weights.h5")
    plain = graph_model("skips", loss=CLIP_LOSS, delay_lines=False)
    plain.build(video.shape)
    plain.load_weights(tmp_path / "m.weights.h5")
    np.testing.assert_allclose(plain(video), model(video), atol=1e-6)
    assert_exported_stream_is_the_pipeline(model, video, tmp_path)  # the delayed one


def test_delay_lines_train_under_mixed_precision_and_on_placed_devices():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = ks.SidewaysModel(
            graph_stages("skips", classes=2),
            inputs=GRAPHS["skips"],
            placement=["/CPU:0"] * 4,  # one device per stage as given; relays on their source's
        )
    finally:
        keras.config.set_dtype_policy("float32")
    assert model.devices == ["/CPU:0"] * 7
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=CLIP_LOSS)
    history = model.fit(shuffled_clips(), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert {b.dtype for b in model.buffers.errors} == {"float16"}


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(delay_lines="yes"), "delay_lines must be True, False or 'auto'; got 'yes'"),
        (dict(stash_depth=[1, 1, 1]), "stash_depth as a list needs one depth per stage \\(4\\)"),
    ],
)
def test_bad_delay_line_options_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        ks.SidewaysModel(graph_stages("skips"), inputs=GRAPHS["skips"], **options)


def test_the_short_clip_warning_counts_the_longest_path_not_the_relays():
    # Delay lines' relays are stages of the graph but not of its depth: 4 stages, 7 nodes.
    def model():
        stages, inputs = models.skip_classifier(3, num_stages=4, width=2)
        made = ks.SidewaysModel(stages, inputs=inputs, stash_depth=0, delay_lines=True, drain=False)
        made.compile(optimizer="sgd", loss=CLIP_LOSS)
        return made

    fits = model()
    assert len(fits.stages) > 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fits.compute_gradients(random_video(batch=2, time=4, size=16), np.array([0, 1]))
    with pytest.warns(UserWarning, match="Clips of 3 frames are too short for a 4-stage"):
        model().compute_gradients(random_video(batch=2, time=3, size=16), np.array([0, 1]))
