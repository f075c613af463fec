"""The stage graph: a chain's clock equals the formulas of docs/algorithm.md, and any
other graph is refused by name."""

import numpy as np
import pytest
import tensorflow as tf

from keras_sideways.graph import VIDEO, StageGraph


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
        (((VIDEO,), (VIDEO, 0), (1,)), "Stage 1 reads the video, stage 0; only a chain"),
        (((VIDEO,), (0,), (0, 1)), "Stage 2 reads stage 0, stage 1; only a chain.*stage 1 alone"),
        (((VIDEO,), (VIDEO,), (1,)), "Stage 1 reads the video; only a chain"),
        (((0,), (VIDEO,)), "Stage 0 reads stage 0; only a chain.*the video alone"),
    ],
)
def test_a_graph_that_is_not_a_chain_is_refused_by_name(inputs, message):
    count = len(inputs)
    with pytest.raises(ValueError, match=message):
        StageGraph(inputs, (None,) * count, (1,) * count, (0,) * count)


def test_a_graph_needs_one_device_window_and_stash_per_stage():
    with pytest.raises(ValueError, match="one entry of devices per stage \\(3\\); got 2"):
        StageGraph(((VIDEO,), (0,), (1,)), (None, None), (1,) * 3, (0,) * 3)
    with pytest.raises(ValueError, match="one depth per stage \\(3\\); got 2"):
        StageGraph.chain(3, stash_depth=[1, 2])
