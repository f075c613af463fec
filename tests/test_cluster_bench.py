"""train/cluster_bench.py: its figures and page section from raw results (the measuring
itself needs worker processes and minutes: `python -m train.cluster_bench`)."""

import pytest

from train import cluster_bench


def raw_results():
    """Raw results as `measure` writes them: 4 equal stages, 2 and 4 machines."""
    ms = 1e-3
    pipelines = dict(
        placement=[f"/job:worker/replica:0/task:{t}/device:CPU:0" for t in (0, 0, 1)],
        chunk=4,
        in_process_chunk=4,
        gradient_rel_error=0.0,
        gradients_identical=True,
        boundary_shape=[8, 4, 4, 16],
        tick_exchange_s=0.5 * ms,
        block_exchange_s=1.0 * ms,
        load_before=1.0,
        load_after=1.0,
        cross_process=[90.0, 80.0, 100.0],
        in_process=[100.0, 100.0, 100.0],
        cross_process_gradients_s=[0.2, 0.3, 0.1],
        in_process_gradients_s=[0.2, 0.2, 0.2],
        cross_process_step_s=[0.3, 0.3, 0.3],
        in_process_step_s=[0.25, 0.25, 0.25],
    )
    shape = [8, 4, 4, 16]  # 2048 floats: 8 KiB
    return dict(
        command="python -m train.cluster_bench",
        machine=dict(cores=2, tensorflow="2.21.0"),
        workload=dict(
            num_stages=3,
            image_size=16,
            channels=3,
            batch=8,
            frames=8,
            rounds=3,
            scaling_stages=4,
            scaling_devices=[2, 4],
        ),
        pinned=False,
        repeats=[dict(pipelines=pipelines, bp=dict(fps=[50.0, 50.0]))],
        scaling=dict(
            stage_costs_s=[1 * ms] * 4,
            output_shapes=[shape] * 4,
            tick_exchange_s=[0.5 * ms] * 4,
            blocks=[
                dict(devices=2, chunk=4, cuts=[1], exchange_s=[2 * ms]),
                dict(devices=4, chunk=2, cuts=[0, 1, 2], exchange_s=[1 * ms] * 3),
            ],
        ),
    )


def test_figures_follow_from_the_raw_results():
    figures = cluster_bench.summarize(raw_results())
    assert figures["ratio"] == pytest.approx(0.9)  # median of 0.9, 0.8, 1.0
    assert figures["over_bp"] == pytest.approx(90.0 / 50.0)
    assert figures["placement"] == ["0", "0", "1"]
    assert figures["parts_ms"]["cross_process_gradients"] == pytest.approx(200.0)
    assert figures["parts_ms"]["in_process_step"] == pytest.approx(250.0)
    two, four = figures["predictions"]
    assert two["no_transfers"] == pytest.approx(2.0) and four["no_transfers"] == pytest.approx(4)
    # 4 machines: a middle machine pays two boundaries, 0.5 ms each per tick: 1 / 2 ms.
    assert four["ticks"] == pytest.approx(4 / 2.0)
    assert four["blocks"] == pytest.approx(4 / 2.0)  # 1 ms a block of 2 ticks: 0.5 ms a tick
    assert two["blocks"] == pytest.approx(4 / (2 + 0.5))  # 2 ms a block of 4 ticks
    # A boundary carries 8 KiB up and 8 KiB down per pipelined tick of 1 ms (4 machines).
    assert four["link_mbytes_s"] == pytest.approx(2 * 4 * 2048 / 1e-3 / 1e6)


def test_the_section_is_written_between_its_markers(tmp_path):
    raw = raw_results()
    text = cluster_bench.section(raw, cluster_bench.summarize(raw))
    assert "**0.90**" in text and "bit-identical" in text and "$" not in text
    assert "Raw results:\n`docs/performance/cluster.json`." in text  # the committed ones'
    elsewhere = cluster_bench.section(raw, cluster_bench.summarize(raw), "/tmp/c.json")
    assert "Raw results:\n`/tmp/c.json`." in elsewhere
    page = tmp_path / "distributed.md"
    page.write_text(f"# Page\n\n{cluster_bench.BEGIN}\nold\n{cluster_bench.END}\n\nafter\n")
    cluster_bench.write_section(str(page), text)
    written = page.read_text()
    assert "old" not in written and text.strip() in written and written.endswith("after\n")
