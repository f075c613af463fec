"""train/bench (make bench): summary figures, renderers, config checks, report and smoke runs."""

import json
from pathlib import Path

import pytest
from conftest import run_module

from train import child_process, results
from train.bench import config as bench_config
from train.bench import report, runs, summary

ROOT = Path(__file__).resolve().parents[1]
COMMITTED_JSON = ROOT / "docs" / "performance" / "bench.json"
MiB = 2**20


def hand_made_raw(gpus=(), devices=(2, 4), blocks=True, mixed=False) -> dict:
    """Raw results as runs.run_benchmark writes them, with figures chosen to tell bugs apart.

    Without `blocks`, they are as written before the benchmark timed blocks of ticks; with
    `mixed`, BP and the pipeline were also measured under mixed_bfloat16.
    """
    raw = {
        "command": "make bench",
        "machine": dict(
            cpu="x86_64",
            cores=2,
            python="3.11.7",
            tensorflow="2.21.0",
            keras="3.15.1",
            gpus=list(gpus),
        ),
        "workload": bench_config.get_config().to_dict(),
        "thread_sweep": {
            # bp's best is 1,1 by median (200) though 0,0 has the highest round (500).
            "bp": {"0,0": [100.0, 500.0, 100.0], "1,1": [190.0, 200.0, 210.0]},
            "sideways_pipeline": {"0,0": [300.0, 310.0, 290.0], "1,1": [150.0, 150.0, 150.0]},
        },
        "throughput": [
            dict(
                threads="1,1",
                best_for="bp",
                # Ratios to BP per round 3.0, 0.5, 0.9: median 0.9, not 300 / 200 = 1.5.
                fps={
                    "bp": [100.0, 200.0, 400.0],
                    "sideways_batched": [300.0, 100.0, 360.0],
                    "sideways_pipeline": [100.0, 200.0, 400.0],
                },
            ),
            dict(
                threads="0,0",
                best_for="sideways_pipeline",
                fps={
                    "bp": [50.0, 50.0, 50.0],
                    "sideways_batched": [50.0, 50.0, 50.0],
                    "sideways_pipeline": [100.0, 125.0, 150.0],
                },
            ),
        ],
        "blocks": dict(
            threads="0,0",
            auto_chunk=8,
            # Ratios to BP per round: ticks 0.5, 0.5, 0.25 (median 0.5); 8 ticks 2, 1.5, 1.
            fps={
                "bp": [100.0, 200.0, 400.0],
                "sideways_pipeline_chunk1": [50.0, 100.0, 100.0],
                "sideways_pipeline_chunk8": [200.0, 300.0, 400.0],
                "sideways_pipeline": [210.0, 290.0, 380.0],
            },
        ),
        "memory": {
            name: [
                dict(frames=t, bytes=int(m * MiB), chunk=c, peak_reset=True)
                for t, m, c in zip((8, 32, 128), mib, chunks)
            ]
            for name, mib, chunks in (
                ("bp", (10.0, 40.0, 25.0), (8, 32, 128)),  # growth 2.5 (last, not largest)
                ("sideways_batched", (20.0, 30.0, 50.0), (8, 32, 128)),
                ("sideways_pipeline_stream", (16.0, 16.5, 17.0), (8, 8, 8)),
            )
        },
        "scaling": {
            "stage_costs_ms": [2.0, 1.0, 1.0, 2.0, 1.5, 0.5, 1.0, 3.0],
            "partitions": [
                dict(devices=d, assignment=a, predicted_speedup=s)
                for d, a, s in (
                    (2, [0, 0, 0, 0, 1, 1, 1, 1], 12.0 / 6.0),
                    (4, [0, 0, 1, 1, 2, 2, 3, 3], 12.0 / 3.5),
                )
                if d in devices
            ],
            "cores": 2,
            # Medians 100 and 120 (mean 110); 200 and 250 (mean 225): speed-up 225 / 110.
            "serial_fps": [[100.0, 110.0, 90.0], [120.0]],
            "concurrent_fps": [[200.0], [240.0, 260.0, 250.0]],
        },
    }
    if not blocks:
        del raw["blocks"]
    if mixed:
        first = raw["throughput"][0]["fps"]
        first["bp_mixed_bfloat16"] = [50.0, 300.0, 400.0]  # ratios 0.5, 1.5, 1.0: median 1
        first["sideways_pipeline_mixed_bfloat16"] = [150.0, 300.0, 800.0]  # median ratio 1.5
        raw["throughput"][1]["fps"]["bp_mixed_bfloat16"] = [75.0, 75.0, 75.0]  # not shown
        # At the pipeline's best threads: ratios 2, 2, 2 to its float32 self there.
        raw["throughput"][1]["fps"]["sideways_pipeline_mixed_bfloat16"] = [200.0, 250.0, 300.0]
        raw["memory"]["bp_mixed_bfloat16"] = [
            dict(frames=t, bytes=int(m * MiB), chunk=t, peak_reset=True)
            for t, m in zip((8, 32, 128), (6.0, 20.0, 10.0))  # 10 / 25 at the longest
        ]
    return raw


# ------------------------------------------------------------------ pure summary figures
def test_best_setting_is_the_highest_median_and_the_first_of_ties():
    assert summary.best_setting({"0,0": [100, 500, 100], "1,1": [190, 200, 210]}) == "1,1"
    assert summary.best_setting({"2,1": [7, 7], "1,2": [7, 7]}) == "2,1"


def test_throughput_ratio_is_the_median_of_ratios_in_the_same_round():
    fps = hand_made_raw()["throughput"][0]["fps"]
    result = summary.throughput(fps)
    assert result["bp"] == dict(fps=200.0, ratio_to_bp=1.0)
    assert result["sideways_batched"]["fps"] == 300.0
    assert result["sideways_batched"]["ratio_to_bp"] == pytest.approx(0.9)


def test_fit_fps_counts_a_round_from_its_epoch_start_to_its_last_batch():
    """Rounds are timed by `TrainingClock`, not by the `fit` call: a stall after the last
    callback (here 5 s before `fit` returns) does not count."""
    import keras
    import numpy as np
    import tensorflow as tf

    ticks = iter(range(1000))
    timer = lambda: float(next(ticks))  # noqa: E731 - one second per reading

    class Stalling(keras.Sequential):
        def fit(self, *args, **kwargs):  # 5 s pass after the last callback
            history = super().fit(*args, **kwargs)
            for _ in range(5):
                timer()
            return history

    model = Stalling([keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    data = tf.data.Dataset.from_tensors((np.zeros((2, 3)), np.zeros((2, 1)))).repeat()
    fps = runs.fit_fps({"m": model}, data, frames_per_step=10, steps=4, rounds=2, timer=timer)
    assert fps == {"m": [40 / 4, 40 / 4]}  # 4 batch ends after the epoch's start: 4 s


def test_memory_growth_is_the_last_length_over_the_first():
    steps = hand_made_raw()["memory"]["bp"]
    assert summary.memory(steps) == dict(mib=[10.0, 40.0, 25.0], growth=2.5, chunk=128)
    empty_first = [dict(bytes=0, chunk=4), dict(bytes=3 * MiB, chunk=4)]
    assert summary.memory(empty_first)["growth"] == 3 * MiB  # no division by zero


def test_core_speedup_is_mean_over_processes_of_medians():
    scaling = hand_made_raw()["scaling"]
    speedup = summary.core_speedup(scaling["serial_fps"], scaling["concurrent_fps"])
    assert speedup == pytest.approx(225 / 110)


def test_summarize_figures_and_tables():
    result = summary.summarize(hand_made_raw())
    figures = result.figures
    assert (figures["bp_best"], figures["pipeline_best"]) == ("1,1", "0,0")
    assert figures["pipeline_best_over_bp_best"] == "1.50"  # 300 / 200
    assert figures["core_speedup"] == "2.05"
    assert figures["stream_chunk"] == "8"
    assert figures["four_devices_speedup"] == "3.43"
    assert figures["gpus"] == "none" and figures["stage_costs_ms"].startswith("2.00, 1.00,")
    assert result.conditions == dict(four_devices=True, no_gpu=True, blocks=True, mixed=False)
    throughput = result.tables["throughput"]
    assert throughput.header[:3] == ("contender", "frames/s", "÷ BP")
    assert throughput.rows[1] == ("sideways_batched", "300.0", "0.900", "1, 1 (BP's best)")
    assert throughput.rows[5] == (
        "sideways_pipeline",
        "125.0",
        "2.500",
        "0, 0 (the pipeline's best)",
    )
    assert result.tables["thread_sweep"].header == ("contender", "0,0", "1,1")
    assert result.tables["thread_sweep"].rows[0] == ("bp", "100.0", "200.0")
    memory = result.tables["memory"]
    assert memory.header == ("contender", "T=8 (MiB)", "T=32 (MiB)", "T=128 (MiB)", "last ÷ first")
    assert memory.rows[0] == ("bp", "10.0", "40.0", "25.0", "2.50")
    assert memory.rows[2][-1] == "1.06"  # 17 / 16
    assert result.tables["partitions"].rows[1] == ("4", "[0, 0, 1, 1, 2, 2, 3, 3]", "3.43")
    blocks = result.tables["blocks"]
    assert blocks.header == ("ticks per block", "frames/s", "÷ BP")
    assert blocks.rows == (
        ("BP", "200.0", "1.000"),
        ("1 (tick by tick)", "100.0", "0.500"),
        ("8", "300.0", "1.500"),
        ("auto", "290.0", "1.450"),
    )
    assert (figures["auto_chunk"], figures["pipeline_ticks_over_bp"]) == ("8", "0.50")


def test_results_from_before_blocks_of_ticks_leave_the_section_out():
    result = summary.summarize(hand_made_raw(blocks=False))
    assert not result.conditions["blocks"] and "blocks" not in result.tables
    page = report.page(result)
    assert "## Blocks of ticks" not in page and "${" not in page


def test_precision_table_compares_each_mixed_contender_with_its_float32_self():
    assert summary.contender_precision("bp_mixed_bfloat16") == ("bp", "mixed_bfloat16")
    assert summary.contender_precision("sideways_pipeline") == ("sideways_pipeline", "float32")
    result = summary.summarize(hand_made_raw(mixed=True))
    table = result.tables["precision"]
    assert table.header == (
        "contender",
        "precision",
        "frames/s",
        "÷ float32",
        "threads",
        "T=128 (MiB)",
        "÷ float32",
    )
    # Each at its float32 self's best threads: BP at 1,1, the pipeline at 0,0.
    assert table.rows == (
        ("bp", "mixed_bfloat16", "300.0", "1.000", "1, 1", "10.0", "0.40"),
        ("sideways_pipeline", "mixed_bfloat16", "250.0", "2.000", "0, 0", "–", "–"),
    )
    assert result.conditions["mixed"]
    page, text = report.page(result), report.text(result)
    assert "## Mixed precision" in page and "| bp | mixed_bfloat16 | 300.0 |" in page
    assert "Mixed precision, BP and the pipeline" in text and "${" not in page + text
    # The mixed contenders are rows of the throughput and memory tables too.
    assert ("bp_mixed_bfloat16", "300.0", "1.000", "1, 1 (BP's best)") in (
        result.tables["throughput"].rows
    )
    # Results from before the precisions were measured: no section, the page as it was.
    plain = summary.summarize(hand_made_raw())
    assert not plain.conditions["mixed"] and "precision" not in plain.tables
    assert "Mixed precision" not in report.page(plain) + report.text(plain)


def test_summarize_without_four_devices_or_with_a_gpu():
    result = summary.summarize(hand_made_raw(gpus=["/physical_device:GPU:0"], devices=(2,)))
    assert result.conditions == dict(four_devices=False, no_gpu=False, blocks=True, mixed=False)
    assert result.figures["gpus"] == "/physical_device:GPU:0"
    page = report.page(result)
    assert "over 4 devices" not in page and "No GPU" not in page
    assert page.endswith("grow with it.\n")


def test_time_to_target_first_epoch_interpolated_exact_and_never():
    seconds = [10.0, 20.0, 30.0]
    assert summary.time_to(seconds, [0.9, 0.95, 0.97], 0.8) == 10.0  # nothing before epoch 1
    assert summary.time_to(seconds, [0.5, 0.7, 0.9], 0.8) == pytest.approx(25.0)
    assert summary.time_to(seconds, [0.5, 0.8, 0.9], 0.8) == 20.0  # at, not above
    assert summary.time_to(seconds, [0.5, 0.9, 0.6], 0.85) == pytest.approx(18.75)  # first
    assert summary.time_to(seconds, [0.5, 0.7, 0.79], 0.8) is None


def test_markdown_and_text_tables():
    table = summary.Table(("contender", "frames/s", "threads"), (("bp", "99.5", "1, 1"),))
    assert report.markdown_table(table) == (
        "| contender | frames/s | threads |\n|---|---|---|\n| bp | 99.5 | 1, 1 |"
    )
    assert report.text_table(table) == (
        "  contender  frames/s  threads\n  bp             99.5  1, 1"
    )


def test_page_and_text_show_the_same_figures():
    result = summary.summarize(hand_made_raw())
    page, text = report.page(result), report.text(result)
    for table in result.tables.values():
        for row in table.rows:
            assert (
                report.markdown_table(summary.Table(table.header, (row,))).splitlines()[-1] in page
            )
            assert all(cell in text for cell in row)
    for name in ("pipeline_best_over_bp_best", "core_speedup", "stage_costs_ms", "stream_chunk"):
        assert result.figures[name] in page and result.figures[name] in text
    assert "**1.50×** BP's frames/s (pipeline (0,0), BP (1,1))" in page
    assert "pipeline (0,0) ÷ BP (1,1): 1.50" in text
    assert "over 4 devices predicts 3.43×." in page and "No GPU was available" in page
    assert "## Blocks of ticks" in page and "picks C = 8 for these 16-frame clips" in page
    assert "## Time to accuracy\n\nThe race users choose by is [docs/race.md](race.md)" in page
    assert "${" not in page + text and "<!--" not in page


def test_results_that_hold_the_former_fixed_epoch_race_read_without_it():
    with_race = dict(hand_made_raw(), race=dict(setup={}, sizes=[]))  # as older results hold
    result = summary.summarize(with_race)
    assert result == summary.summarize(hand_made_raw())
    assert not any(name.startswith("race") for name in [*result.figures, *result.tables])


def test_fill_keeps_or_drops_blocks_and_names_a_missing_figure():
    template = (
        "a ${x}\n<!-- if yes -->\nkept ${x}\n<!-- end if -->\n"
        "<!-- if no -->\ndropped\n<!-- end if -->\nb\n"
    )
    assert report.fill(template, dict(x="1"), dict(yes=True, no=False)) == "a 1\nkept 1\nb\n"
    with pytest.raises(KeyError, match="x"):
        report.fill(template, {}, dict(yes=True, no=False))


def test_page_is_the_same_from_written_raw_results(tmp_path):
    raw = hand_made_raw()
    results.write_json(raw, tmp_path / "sub" / "bench.json")
    again = results.read_json(tmp_path / "sub" / "bench.json")
    assert report.page(summary.summarize(again)) == report.page(summary.summarize(raw))
    assert not list((tmp_path / "sub").glob("*.tmp"))


# ------------------------------------------------------------------ config
def test_config_defaults_are_the_reference_workload():
    config = bench_config.get_config()
    assert config.to_dict() == dict(
        num_stages=5,
        image_size=64,
        channels=3,
        batch=8,
        frames=16,
        classes=10,
        width=16,
        steps=16,
        rounds=5,
        memory_lengths=(8, 32, 128),
        memory_process_per_step=True,
        stream_chunk=8,
        scaling_stages=8,
        scaling_devices=(2, 4, 8),
        scaling_repeats=2,
        thread_settings=((0, 0), (1, 2), (2, 1), (1, 1)),
        chunk_sizes=(1, 2, 4, 8, 16),
        precisions=("float32", "mixed_bfloat16"),
    )
    quick = bench_config.get_config("quick")
    assert (quick.num_stages, quick.image_size, quick.batch, quick.frames, quick.width) == (
        3,
        16,
        2,
        8,
        4,
    )
    assert quick.memory_lengths == (4, 8, 16) and quick.thread_settings == ((0, 0), (1, 1))
    for variant in bench_config.VARIANTS:
        bench_config.check(bench_config.get_config(variant))
    with pytest.raises(ValueError, match="Unknown benchmark variant 'huge'"):
        bench_config.get_config("huge")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("batch", 0, r"config.batch: expected an integer >= 1; got 0"),
        ("num_stages", 9, r"config.num_stages: expected an integer from 2 to 8 .*; got 9"),
        ("width", 1, r"config.width: expected an integer >= 2; got 1"),
        ("memory_lengths", (32, 8), r"config.memory_lengths: expected increasing .*\(32, 8\)"),
        ("memory_process_per_step", None, r"per_step: expected True or False; got None"),
        ("scaling_devices", (), r"config.scaling_devices: expected device counts >= 1; got \(\)"),
        ("thread_settings", ((1,),), r"config.thread_settings: expected \(inter-op, intra-op\)"),
        ("thread_settings", ((-1, 0),), r"\(0: TensorFlow's choice\); got \(\(-1, 0\),\)"),
        ("chunk_sizes", (4, 2), r"config.chunk_sizes: expected increasing ticks .*\(4, 2\)"),
        ("precisions", ("mixed_bfloat16",), r"config.precisions: expected 'float32' first, .*"),
        (
            "precisions",
            ("float32", "float16"),
            r"then any of mixed_bfloat16, mixed_float16, each once; got \('float32', 'float16'\)",
        ),
    ],
)
def test_config_check_names_field_expected_and_given(field, value, message):
    config = bench_config.get_config("tiny")
    config[field] = value
    with pytest.raises(ValueError, match=message):
        bench_config.check(config)


def test_memory_steps_run_a_fresh_process_each_or_one_process_for_all(monkeypatch):
    calls = []

    def fake_child(task, args, threads="0,0", timeout=600):
        calls.append(task)
        step = lambda name, frames: dict(frames=frames, bytes=len(name) * frames, chunk=frames)
        if task == "memories":
            return [step(name, frames) for name, frames in args["steps"]]
        return step(args["name"], args["frames"])

    monkeypatch.setattr(runs, "run_child", fake_child)
    config = bench_config.get_config("tiny")
    config.memory_lengths = (4, 8)
    names = runs.with_precisions(tuple(runs.MEMORY_CONTENDERS), config)
    config.memory_process_per_step = True
    fresh = runs._memory(config, dict(config=config.to_dict()), lambda line: None)
    assert calls == ["memory"] * 2 * len(names)
    calls.clear()
    config.memory_process_per_step = False
    shared = runs._memory(config, dict(config=config.to_dict()), lambda line: None)
    assert calls == ["memories"] and shared == fresh
    assert list(shared) == names and [s["frames"] for s in shared["bp"]] == [4, 8]
    assert shared["bp"][1]["bytes"] == 2 * 8  # each step under its own name and length
    page = report.page(summary.summarize(dict(hand_made_raw(), workload=config.to_dict())))
    assert "minus that of the same process (one process for every step" in page
    assert "minus that of the same fresh process just before it." in report.page(
        summary.summarize(hand_made_raw())
    )


# ------------------------------------------------------------------ processes
def _script(*args: str, timeout: int = 300):
    return run_module("train.benchmark", *args, timeout=timeout)


def test_child_runs_from_any_directory_and_reports_its_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the child must find `train` without the caller's cwd
    with pytest.raises(child_process.ChildError, match="Unknown benchmark task 'sleep'") as error:
        runs.run_child("sleep", {})
    # One line, as the commands print it (it was the child's traceback); the rest kept.
    assert "\n" not in str(error.value) and "Traceback" in error.value.details
    # A child past its timeout: subprocess.TimeoutExpired's traceback ended the command.
    with pytest.raises(child_process.ChildError, match="time:sleep ran past its timeout of 1 s"):
        child_process.run("time:sleep", 60, timeout=1)


def test_report_only_rewrites_the_page_from_raw_results(tmp_path):
    results.write_json(hand_made_raw(), tmp_path / "bench.json")
    done = _script(
        "--report_only", f"--json={tmp_path / 'bench.json'}", f"--docs={tmp_path / 'p.md'}"
    )
    expected = summary.summarize(hand_made_raw())
    assert (tmp_path / "p.md").read_text() == report.page(expected)
    assert report.text(expected) in done.stdout


@pytest.mark.skipif(
    not COMMITTED_JSON.exists(),
    reason="docs/performance/bench.json is not committed yet: run `make bench` on an idle machine",
)
def test_committed_page_regenerates_byte_for_byte(tmp_path):
    raw = tmp_path / "performance" / "bench.json"
    raw.parent.mkdir()
    raw.write_bytes(COMMITTED_JSON.read_bytes())
    _script("--report_only", f"--json={raw}", f"--docs={tmp_path / 'performance.md'}")
    page = ROOT / "docs" / "performance.md"
    assert (tmp_path / "performance.md").read_bytes() == page.read_bytes()


@pytest.mark.slow
def test_tiny_benchmark_end_to_end(tmp_path):
    raw_path, page_path = tmp_path / "bench.json", tmp_path / "performance.md"
    done = _script(  # a dozen TensorFlow processes
        "--config=train/bench/config.py:tiny",
        f"--json={raw_path}",
        f"--docs={page_path}",
        timeout=900,
    )
    tiny = bench_config.get_config("tiny")
    raw = json.loads(raw_path.read_text())
    assert raw["command"] == "python -m train.benchmark --config=train/bench/config.py:tiny"
    assert raw["workload"] == json.loads(json.dumps(tiny.to_dict()))
    assert [len(fps) for fps in raw["thread_sweep"]["bp"].values()] == [tiny.rounds]
    assert [t["threads"] for t in raw["throughput"]] == ["0,0"]  # one setting: both bests
    mixed = ["bp_mixed_bfloat16", "sideways_pipeline_mixed_bfloat16"]  # tiny.precisions
    assert {name: len(r) for name, r in raw["throughput"][0]["fps"].items()} == {
        name: tiny.rounds for name in [*runs.CONTENDERS, *mixed]
    }
    steps = {name: [(m["frames"], m["chunk"]) for m in s] for name, s in raw["memory"].items()}
    assert steps == dict(
        bp=[(4, 4)],
        sideways_batched=[(4, 4)],
        sideways_pipeline=[(4, 4)],
        exact_pipeline=[(4, 4)],  # the defaults, in blocks and tick by tick
        exact_pipeline_ticks=[(4, 4)],
        sideways_pipeline_stream=[(4, 2)],
        sideways_pipeline_stream_full_stash=[(4, 2)],  # streamed as well, with its rings
        bp_mixed_bfloat16=[(4, 4)],
        sideways_pipeline_mixed_bfloat16=[(4, 4)],
        sideways_pipeline_stream_mixed_bfloat16=[(4, 2)],
    )
    blocks = raw["blocks"]
    assert set(blocks["fps"]) == {"bp", "sideways_pipeline_chunk2", "sideways_pipeline"}
    assert blocks["auto_chunk"] == 2 and blocks["threads"] == "0,0"
    scaling = raw["scaling"]
    assert len(scaling["stage_costs_ms"]) == tiny.scaling_stages
    partitions = {p["devices"]: p["assignment"] for p in scaling["partitions"]}
    assert partitions[4] == [0, 1, 2, 3] and sorted(partitions[2]) == partitions[2]
    assert set(partitions[2]) == {0, 1}
    assert len(scaling["serial_fps"]) == len(scaling["concurrent_fps"]) == tiny.scaling_repeats
    assert "race" not in raw  # the race to an accuracy is train.race's
    # The page and the printed summary are those of the raw results, as --report_only makes them.
    result = summary.summarize(raw)
    assert result.conditions["mixed"] and len(result.tables["precision"].rows) == 3
    assert page_path.read_text() == report.page(result)
    assert report.text(result) in done.stdout and f"results: {raw_path}" in done.stdout
