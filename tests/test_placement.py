"""Stage placement: the balanced partition, placement checks, and ops on their devices."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import random_video, tiny_conv_stages

import keras_sideways as ks
from keras_sideways import placement


@pytest.mark.parametrize(
    "costs, devices, expected",
    [
        ([1, 1, 1, 1], 2, [0, 0, 1, 1]),
        ([4, 1, 1, 1, 1], 2, [0, 1, 1, 1, 1]),
        ([1, 2, 3, 4, 5, 6, 7, 8], 4, [0, 0, 0, 0, 1, 1, 2, 3]),
        ([1, 1, 1], 8, [0, 1, 2]),
    ],
)
def test_balanced_partition_minimises_the_slowest_device(costs, devices, expected):
    assert placement.balanced_partition(costs, devices) == expected


def test_balanced_partition_matches_brute_force():
    import itertools

    costs = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]
    best = min(
        max(sum(costs[a:b]) for a, b in zip((0,) + cuts, cuts + (len(costs),)))
        for cuts in itertools.combinations(range(1, len(costs)), 3)
    )
    assignment = placement.balanced_partition(costs, 4)
    assert assignment == sorted(assignment)  # consecutive blocks
    loads = [sum(c for c, d in zip(costs, assignment) if d == i) for i in range(4)]
    assert max(loads) == best
    assert placement.predicted_speedup(costs, assignment) == pytest.approx(sum(costs) / best)


def test_placement_needs_one_visible_device_per_stage():
    with pytest.raises(ValueError, match="one device per stage \\(4\\); got 2"):
        ks.SidewaysModel(tiny_conv_stages(num_stages=4), placement=["/CPU:0", "/CPU:0"])
    with pytest.raises(ValueError, match="Unknown device '/GPU:7'.*visible devices"):
        ks.SidewaysModel(tiny_conv_stages(num_stages=3), placement=["/CPU:0", "/CPU:0", "/GPU:7"])
    with pytest.raises(ValueError, match="list of device names.*or 'auto'"):
        ks.SidewaysModel(tiny_conv_stages(num_stages=3), placement="gpu")


@pytest.mark.slow
def test_stages_run_on_their_devices_with_unchanged_results(tmp_path):
    # Logical devices must be set before TensorFlow starts, hence a fresh process.
    probe = os.path.join(os.path.dirname(__file__), "placement_probe.py")
    saved = str(tmp_path / "placed.keras")
    result = subprocess.run(
        [sys.executable, probe, saved], capture_output=True, text=True, timeout=300, check=True
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["engine"] == "pipeline"  # several devices: auto picks the pipeline
    assert report["ops"] == [
        ["/device:CPU:0"],
        ["/device:CPU:0"],
        ["/device:CPU:1"],
        ["/device:CPU:1"],
    ]
    assert [d.rsplit(":", 2)[-2:] for d in report["weight_devices"]] == (
        [["CPU", "0"]] * 4 + [["CPU", "1"]] * 4
    )
    assert report["max_difference"] < 1e-6
    auto = [int(d.rsplit(":", 1)[1]) for d in report["auto"]]
    assert len(auto) == 4 and auto == sorted(auto) and set(auto) <= {0, 1, 2, 3}
    assert report["auto_engine"] == "pipeline"

    # Saved on 4 devices, the model loads in this process, which sees one: unplaced.
    assert [d.name for d in tf.config.list_logical_devices("CPU")] == ["/device:CPU:0"]
    with pytest.warns(UserWarning, match=r"devices this process does not see \(/CPU:1\)"):
        loaded = keras.models.load_model(saved)
    assert loaded.placement is None
    video = random_video(batch=2, time=6, seed=3)
    np.testing.assert_array_equal(loaded.predict(video, verbose=0), np.load(saved + ".npy"))


def test_placement_over_devices_is_refused_under_several_replicas():
    class TwoReplicas:
        num_replicas_in_sync = 2

    with pytest.raises(ValueError, match=r"several devices \(/CPU:0, /CPU:1\).*2-replica"):
        placement.check_fits_strategy(["/CPU:0", "/CPU:1"], TwoReplicas())
    placement.check_fits_strategy(["/CPU:0", "/CPU:0"], TwoReplicas())  # one device: fine


def test_a_placement_per_replica_needs_as_many_replicas():
    class TwoReplicas:
        num_replicas_in_sync = 2

    replicas = [["/CPU:0", "/CPU:0"], ["/CPU:0", "/CPU:0"], ["/CPU:0", "/CPU:0"]]
    with pytest.raises(ValueError, match=r"3 replicas.*strategy has 2"):
        placement.check_fits_strategy(replicas[0], TwoReplicas(), replicas)
    placement.check_fits_strategy(replicas[0], TwoReplicas(), replicas[:2])
    stages = tiny_conv_stages(num_stages=3)
    model = ks.SidewaysModel(stages, placement=[["/CPU:0"] * 3] * 2)
    assert model.replica_devices == [["/CPU:0"] * 3] * 2 and model.devices == ["/CPU:0"] * 3
    with pytest.raises(ValueError, match=r"2 replicas.*strategy has 1"):
        model.build((2, 4, 8, 8, 1))  # no strategy: one replica
    with pytest.raises(ValueError, match="cannot stream"):
        ks.SidewaysModel(stages, placement=[["/CPU:0"] * 3] * 2, stateful=True)
    with pytest.raises(ValueError, match=r"one device per stage \(3\); got 2"):
        ks.SidewaysModel(stages, placement=[["/CPU:0"] * 3, ["/CPU:0"] * 2])


def test_replica_placements_split_the_devices_into_one_group_per_replica():
    devices = [f"/CPU:{i}" for i in range(4)]
    assert placement.replica_placements(devices, 2, 5) == [
        ["/CPU:0", "/CPU:0", "/CPU:0", "/CPU:1", "/CPU:1"],
        ["/CPU:2", "/CPU:2", "/CPU:2", "/CPU:3", "/CPU:3"],
    ]
    assert placement.replica_placements(devices, 4, 2) == [[d, d] for d in devices]
    with pytest.raises(ValueError, match="4 devices .* do not split into 3 equal groups"):
        placement.replica_placements(devices, 3, 2)
