"""The benchmark's pieces on a tiny workload, and a smoke run of `train.benchmark --quick`."""

import json
import os
import subprocess
import sys

import pytest

from keras_sideways import benchmark

TINY = benchmark.Workload(
    num_stages=3,
    image_size=8,
    batch=2,
    frames=4,
    width=2,
    steps=1,
    rounds=2,
    memory_lengths=(4, 8),
    stream_chunk=4,
    scaling_stages=4,
    scaling_devices=(2,),
)


def test_throughput_times_every_contender_each_round():
    fps = benchmark.throughput(TINY)
    assert set(fps) == set(benchmark.CONTENDERS)
    assert all(len(v) == TINY.rounds and min(v) > 0 for v in fps.values())


def test_step_memory_streams_long_clips_in_chunks():
    result = benchmark.step_memory("sideways_pipeline", 8, TINY)
    assert result["chunk"] == 4 and result["bytes"] >= 0


def test_stage_scaling_predicts_from_measured_costs():
    result = benchmark.stage_scaling(TINY)
    assert len(result["stage_costs_ms"]) == 4 and min(result["stage_costs_ms"]) > 0
    partition = result["partitions"][2]
    assert sorted(partition["assignment"]) == partition["assignment"]
    assert 1.0 <= partition["predicted_speedup"] <= 2.0


@pytest.mark.slow
def test_benchmark_script_quick_prints_the_table_and_writes_json(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "results.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "train.benchmark",
            "--quick",
            f"--json={out}",
            f"--docs={tmp_path / 'performance.md'}",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sideways_pipeline" in done.stdout and "predicted speed-up" in done.stdout
    results = json.loads(out.read_text())
    assert set(results["throughput"]) == set(benchmark.CONTENDERS)
    assert all(r["ratio_to_bp"] > 0 for r in results["throughput"].values())
    assert set(results["memory"]["bp"]["mib"]) == {"4", "8", "16"}
    assert results["scaling"]["measured_on_cores"]["speedup"] > 0
    report = (tmp_path / "performance.md").read_text()
    assert "python -m train.benchmark --quick" in report
    assert f"{results['best_threads']['pipeline_best_over_bp_best']:.2f}×" in report
