"""train/race.py (the race to a fixed accuracy): budget choice, figures, config, smoke run."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_module

from train import results
from train.bench import plots, race_config, race_report, race_runs, race_summary

ROOT = Path(__file__).resolve().parents[1]
COMMITTED_JSON = ROOT / "docs" / "performance" / "race.json"


def run(name, budget, seconds, accuracy, seed=0, size=32, stages=5, test=0.5, frames=100):
    """A run as race_runs saves it: cumulative training seconds and validation accuracy."""
    return dict(
        image_size=size,
        num_stages=stages,
        seed=seed,
        contender=name,
        budget=budget,
        threads="2,1",
        seconds=list(seconds),
        val_accuracy=list(accuracy),
        test_accuracy=test,
        test_loss=1.0,
        frames_per_epoch=frames,
        sideways=None,
    )


# ------------------------------------------------------------------ time to target
def test_time_to_target_interpolates_between_epochs():
    # 0.80 at 10 s, 0.90 at 20 s: 0.85 is halfway, at 15 s.
    chosen = race_summary.choose_budget([run("bp", 2, [10, 20], [0.8, 0.9])], 0.85)
    assert chosen["time_to_target"] == pytest.approx(15.0, rel=1e-12)
    # Reached at the first epoch: its time (nothing is measured before it).
    first = race_summary.choose_budget([run("bp", 2, [10, 20], [0.9, 0.95])], 0.85)
    assert first["time_to_target"] == 10


def test_the_budget_that_reaches_the_target_soonest_counts():
    short = run("sideways", 2, [10, 20], [0.5, 0.86])  # 0.85 at 10 + 10 * 0.35/0.36 s
    long = run("sideways", 4, [10, 20, 30, 40], [0.6, 0.9, 0.95, 0.96])  # at 10 + 10 * 0.25/0.3
    chosen = race_summary.choose_budget([short, long], 0.85)
    assert chosen["run"] is long
    assert chosen["time_to_target"] == pytest.approx(10 + 10 * 0.25 / 0.3, rel=1e-12)
    assert chosen["by_budget"] == {
        2: pytest.approx(10 + 10 * 0.35 / 0.36, rel=1e-12),
        4: chosen["time_to_target"],
    }


def test_a_tie_goes_to_the_smaller_budget():
    runs = [run("bp", 4, [10, 20], [0.9, 0.9]), run("bp", 2, [10, 20], [0.9, 0.9])]
    assert race_summary.choose_budget(runs, 0.85)["run"]["budget"] == 2


def test_a_contender_that_never_reaches_the_target_shows_its_best_final_accuracy():
    runs = [
        run("sideways_paper", 2, [10, 20], [0.5, 0.7]),
        run("sideways_paper", 4, [10, 20, 30, 40], [0.5, 0.6, 0.8, 0.75]),
    ]
    chosen = race_summary.choose_budget(runs, 0.85)
    assert chosen["time_to_target"] is None and chosen["by_budget"] == {2: None, 4: None}
    assert chosen["run"]["budget"] == 4  # 0.75 at its end beats 0.7
    with pytest.raises(ValueError, match="at least one run; got none"):
        race_summary.choose_budget([], 0.85)


def test_seed_race_ratios_to_bp_and_never():
    runs = [
        run("bp", 2, [10, 20], [0.8, 0.9], frames=100),  # 15 s; 200 frames in 20 s
        run("sideways", 2, [5, 10], [0.8, 0.9], frames=100),  # 7.5 s; 200 frames in 10 s
        run("sideways_paper", 2, [4, 8], [0.5, 0.6], frames=100),  # never; 25 frames/s
    ]
    figures = race_summary.seed_race(runs, 0.85)
    assert figures["bp"]["time_ratio"] == 1 and figures["bp"]["fps"] == pytest.approx(10.0)
    assert figures["sideways"]["time_ratio"] == pytest.approx(0.5, rel=1e-12)
    assert figures["sideways"]["fps_ratio"] == pytest.approx(2.0, rel=1e-12)
    assert figures["sideways_paper"]["time_ratio"] is None
    assert figures["sideways_paper"]["fps_ratio"] == pytest.approx(2.5, rel=1e-12)


def hand_made_raw() -> dict:
    """A race of two seeds at one point, with budgets (2, 4), and one point not run yet.

    Seed 0: BP reaches 0.85 at 15 s (budget 2), Sideways at 7.5 s (budget 4), the paper's
    never. Seed 1: BP at 20 s (budget 4), Sideways at 30 s (budget 2), the paper's at 40 s.
    """
    runs = []
    for seed, (bp, sideways, paper) in enumerate(
        [
            ((15, 30), (20, 7.5), (None, None)),
            ((30, 20), (30, 50), (40, 60)),
        ]
    ):
        for name, times in (("bp", bp), ("sideways", sideways), ("sideways_paper", paper)):
            for budget, time in zip((2, 4), times):
                if time is None:
                    runs.append(run(name, budget, [10] * budget, [0.5] * budget, seed=seed))
                else:  # 0.8 at `time` - 5 s, 0.9 at `time` + 5 s: 0.85 at `time`
                    runs.append(run(name, budget, [time - 5, time + 5], [0.8, 0.9], seed=seed))
    for r in runs:
        if r["contender"] != "bp":
            r["sideways"] = dict(stash=[8, 6, 4, 2, 0], drain=True, exact=True, tail_ticks=8)
            if r["contender"] == "sideways_paper":
                r["sideways"] = dict(stash=[0] * 5, drain=False, exact=False, tail_ticks=0)
    workload = race_config.workload(race_config.get_config())
    workload.update(budgets=[2, 4], target=0.85)
    return dict(
        command="python -m train.race",
        machine=dict(
            cpu="x86_64", cores=2, python="3.11", tensorflow="2.21", keras="3.15", gpus=[]
        ),
        workload=json.loads(json.dumps(workload)),
        points=dict(image_sizes=[32], stages=[5, 8], seeds=[0, 1]),
        sweeps=[],
        runs=runs,
    )


def test_point_race_over_seeds_and_the_missing_point():
    point, missing = race_summary.race(hand_made_raw())
    assert (point["image_size"], point["num_stages"], point["missing"]) == (32, 5, [])
    over = point["over_seeds"]
    # Sideways: 7.5 / 15 and 30 / 20; the paper's: only seed 1 (40 / 20), seed 0 never.
    assert over["sideways"]["time_ratio"] == pytest.approx(np.mean([0.5, 1.5]), rel=1e-12)
    assert over["sideways"]["time_ratio_std"] == pytest.approx(np.std([0.5, 1.5], ddof=1))
    assert over["sideways_paper"]["time_ratio"] == pytest.approx(2.0, rel=1e-12)
    assert over["sideways_paper"]["compared"] == 1
    assert over["sideways_paper"]["reached"] == 1 and over["bp"]["reached"] == 2
    assert (missing["num_stages"], missing["seeds"], len(missing["missing"])) == (8, {}, 12)


def test_summarize_tables_and_the_points_not_run_yet():
    result = race_summary.summarize(hand_made_raw())
    headline = {row[2]: row[3:] for row in result.tables["headline"].rows}
    # Frames/s are 200 frames over the counted run's last time: BP 200/20 and 200/25,
    # Sideways 200/12.5 and 200/35, the paper's 200/10 (never: the tie's smaller budget)
    # and 200/45.
    fps = {"sideways": [16 / 10, (200 / 35) / 8], "sideways_paper": [20 / 10, (200 / 45) / 8]}
    spread = {name: f"{np.mean(r):.2f} ± {np.std(r, ddof=1):.2f}" for name, r in fps.items()}
    assert headline == {
        "BP": ("1.00 ± 0.00", "2 of 2", "1.00 ± 0.00", "0.500 ± 0.000"),
        "Sideways (defaults)": ("1.00 ± 0.71", "2 of 2", spread["sideways"], "0.500 ± 0.000"),
        "Sideways (paper)": (
            "2.00 (1 of 2 seeds)",
            "1 of 2",
            spread["sideways_paper"],
            "0.500 ± 0.000",
        ),
    }
    rows = result.tables["runs"].rows
    assert [r[2:4] + r[5:8] + r[11:12] for r in rows[:3]] == [
        ("0", "BP", "2: 15.0, 4: 30.0", "2", "15.0", "1.00"),
        ("0", "Sideways (defaults)", "2: 20.0, 4: 7.5", "4", "7.5", "0.50"),
        ("0", "Sideways (paper)", "2: never, 4: never", "2", "never", "never"),
    ]
    assert result.figures["missing"] == "32 px, 8 stages: seeds 0, 1"
    assert result.conditions == dict(missing=True, sweep=True, no_sweep=False)
    assert result.figures["sideways_settings"] == (
        "at 5 stages, stash [8, 6, 4, 2, 0], filled and drained: BP's gradient"
    )
    page = race_report.page(result, "race.png")
    assert "Not run yet: 32 px, 8 stages: seeds 0, 1." in page and "${" not in page
    assert "(race.png)" in page and "reaches **0.85**" in page


def test_bp_that_never_reaches_leaves_the_ratio_undefined():
    raw = hand_made_raw()
    for r in raw["runs"]:
        if r["contender"] == "bp" and r["seed"] == 1:
            r["val_accuracy"] = [0.5, 0.6]
    rows = race_summary.summarize(raw).tables["runs"].rows
    seed_1 = {row[3]: row[11] for row in rows if row[2] == "1"}
    assert seed_1 == {
        "BP": "never",
        "Sideways (defaults)": "BP never",
        "Sideways (paper)": "BP never",
    }


def test_race_chart_is_a_png(tmp_path):
    path = plots.target_race_chart(hand_made_raw(), tmp_path / "sub" / "race.png")
    assert path.read_bytes().startswith(b"\x89PNG")


# ------------------------------------------------------------------ config and runs
def test_contenders_are_bp_the_library_defaults_and_the_papers_sideways():
    import inspect

    from keras_sideways import SidewaysModel

    defaults = inspect.signature(SidewaysModel.__init__).parameters
    config = race_config.get_config()
    bp, sideways, paper = (
        race_runs.run_config(config, name, 64, 8, seed=2, budget=12).to_dict()
        for name in race_runs.CONTENDERS
    )
    assert sideways["stash_depth"] == str(defaults["stash_depth"].default)
    assert sideways["drain"] == str(defaults["drain"].default)
    assert (sideways["mode"], sideways["engine"], paper["stash_depth"]) == (
        "sideways",
        "pipeline",
        "0",
    )
    assert {k for k in sideways if sideways[k] != paper[k]} == {"stash_depth"}
    assert {k for k in sideways if sideways[k] != bp[k]} == {"mode"}
    assert (bp["seed"], bp["epochs"], bp["lr_schedule"]) == (2, 12, "cosine")
    assert (bp["data"]["image_size"], bp["model"]["num_stages"]) == (64, 8)
    assert (bp["data"]["num_train_clips"], bp["data"]["num_test_clips"]) == (512, 256)


def test_validation_clips_are_the_training_generators_next_clips():
    from keras_sideways.data.digits import moving_digit_clips

    config = race_runs.run_config(race_config.get_config("tiny"), "bp", 8, 3, seed=1)
    with config.unlocked():
        config.data.clip_length, config.data.num_train_clips = 2, 3
    video, labels = map(np.concatenate, zip(*race_runs.validation_split(config, 2)))
    more, more_labels = moving_digit_clips(
        "train", clip_length=2, image_size=8, num_clips=5, seed=1
    )
    np.testing.assert_array_equal(video, more[3:])  # exactly: the same generator's clips
    np.testing.assert_array_equal(labels, more_labels[3:])
    assert not any(np.array_equal(v, t) for v in video for t in more[:3])


@pytest.mark.parametrize(
    "field, value, message",
    [
        (
            "stages",
            (5, 9),
            r"config.stages: expected increasing stage counts from 2 to 8 .*\(5, 9\)",
        ),
        ("budgets", (8, 4), r"config.budgets: expected increasing epoch counts .*\(8, 4\)"),
        ("target", 1.5, r"config.target: expected a validation accuracy from 0 to 1; got 1.5"),
        ("seeds", (), r"config.seeds: expected increasing seeds >= 0; got \(\)"),
        ("thread_settings", ((1, 1), (1, 1)), r"config.thread_settings: expected distinct"),
        ("digits_variant", "huge", r"config.digits_variant: .*got 'huge'"),
    ],
)
def test_config_check_names_field_expected_and_given(field, value, message):
    config = race_config.get_config("tiny")
    config[field] = value
    with pytest.raises(ValueError, match=message):
        race_config.check(config)


def test_a_results_folder_holds_one_workload(tmp_path):
    config = race_config.get_config("tiny")
    race_runs.check_workload(config, tmp_path)
    config.image_sizes, config.seeds = (32,), (4,)  # other points: the same workload
    race_runs.check_workload(config, tmp_path)
    config.target = 0.5
    with pytest.raises(ValueError, match="holds the runs of another race workload"):
        race_runs.check_workload(config, tmp_path)


# ------------------------------------------------------------------ the command
def _race(*args: str, timeout: int = 600):
    return run_module("train.race", *args, timeout=timeout)


@pytest.mark.slow
def test_tiny_race_end_to_end_resumes_and_regenerates_its_page(tmp_path):
    out, page = tmp_path / "runs", tmp_path / "docs" / "race.md"
    done = _race("--config=train/bench/race_config.py:tiny", f"--out={out}", f"--docs={page}")
    tiny = race_config.get_config("tiny")
    raw = results.read_json(out / "race.json")
    assert raw["command"] == "python -m train.race --config=train/bench/race_config.py:tiny"
    assert raw["workload"] == json.loads(json.dumps(race_config.workload(tiny)))
    trained = {(r["contender"], r["budget"]): r for r in raw["runs"]}
    assert set(trained) == {(n, b) for n in race_runs.CONTENDERS for b in tiny.budgets}
    assert raw["sweeps"] == []  # one thread setting: nothing to sweep
    for r in raw["runs"]:
        assert len(r["seconds"]) == len(r["val_accuracy"]) == r["budget"]
        assert r["threads"] == "0,0" and r["frames_per_epoch"] == tiny.train_clips * 5
    assert trained["sideways", 1]["sideways"]["exact"]  # the defaults: BP's gradient
    assert trained["sideways_paper", 1]["sideways"]["stash"] == [0, 0, 0]
    # Target 0: every run reaches it at its first epoch; the soonest budget counts.
    figures = race_summary.race(raw)[0]["seeds"][0]
    for name, c in figures.items():
        first = min(trained[name, b]["seconds"][0] for b in tiny.budgets)
        assert c["time_to_target"] == first
    summary = race_summary.summarize(raw)
    assert page.read_text() == race_report.page(summary, "../runs/race.png")
    assert (out / "race.png").read_bytes().startswith(b"\x89PNG")
    assert race_report.text(summary) in done.stdout

    # Run again without one run's file (as if stopped before it ended): that run alone
    # trains; the others' files are read, not written.
    lost = race_runs.run_path(out, 16, 3, 0, "sideways_paper", 2)
    lost.unlink()
    kept = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    resumed = _race("--config=train/bench/race_config.py:tiny", f"--out={out}", f"--docs={page}")
    lines = [line for line in resumed.stdout.splitlines() if "epochs:" in line]
    assert len(lines) == 1 and "sideways_paper, 2 epochs:" in lines[0]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept and lost.exists()
    raw = results.read_json(out / "race.json")
    assert len(raw["runs"]) == len(race_runs.CONTENDERS) * len(tiny.budgets)
    page_text = race_report.page(race_summary.summarize(raw), "../runs/race.png")
    assert page.read_text() == page_text

    # --report_only writes the same page and chart from the raw results, byte for byte.
    copy = tmp_path / "copy"
    shutil.copytree(out, copy / "runs")
    _race(
        "--report_only",
        f"--json={copy / 'runs' / 'race.json'}",
        f"--docs={copy / 'docs' / 'race.md'}",
    )
    assert (copy / "docs" / "race.md").read_bytes() == page.read_bytes()
    assert (copy / "runs" / "race.png").read_bytes() == (out / "race.png").read_bytes()


@pytest.mark.skipif(
    not COMMITTED_JSON.exists(),
    reason="docs/performance/race.json is not committed yet: run `python -m train.race`",
)
def test_committed_race_page_regenerates_byte_for_byte(tmp_path):
    raw = tmp_path / "performance" / "race.json"
    raw.parent.mkdir()
    raw.write_bytes(COMMITTED_JSON.read_bytes())
    _race("--report_only", f"--json={raw}", f"--docs={tmp_path / 'race.md'}")
    assert (tmp_path / "race.md").read_bytes() == (ROOT / "docs" / "race.md").read_bytes()
    chart = COMMITTED_JSON.with_name(plots.TARGET_RACE_CHART)
    assert (raw.parent / plots.TARGET_RACE_CHART).read_bytes() == chart.read_bytes()


def test_a_child_that_fails_or_runs_too_long_ends_the_race_in_one_line(tmp_path):
    # A run past config.run_timeout ended the race with subprocess.TimeoutExpired's
    # 34-line traceback. The child is faked: it fails at once.
    code = (
        "import runpy, sys\n"
        "from train import child_process\n"
        "def late(function, args, threads='0,0', timeout=600):\n"
        "    raise child_process.ChildError(\n"
        "        f'child process {function} ran past its timeout of {timeout} s and was stopped')\n"
        "child_process.run = late\n"
        f"sys.argv = ['race', '--config=train/bench/race_config.py:tiny', '--out={tmp_path}']\n"
        "runpy.run_module('train.race', run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert re.fullmatch(
        r"error: child process train\.bench\.race_runs:train_budgets ran past its timeout of "
        r"\d+ s and was stopped; the finished runs in --out are kept\.",
        done.stderr.strip(),
    ), done.stderr


def test_each_contender_runs_at_its_best_threads_timed_once(tmp_path, monkeypatch):
    config = race_config.get_config("quick")
    config.thread_settings = ((0, 0), (2, 1), (1, 2))
    fastest = {"bp": "1,2", "sideways": "2,1", "sideways_paper": "2,1"}
    timed = []

    def fake_run(function, args, threads, timeout=600):  # a child process, faked
        assert function == "train.bench.race_runs:sweep_fps"
        timed.append((args["name"], threads))
        return [3.0, 1.0, 2.0] if fastest[args["name"]] == threads else [1.0, 1.0, 1.0]

    monkeypatch.setattr(race_runs.child_process, "run", fake_run)
    assert race_runs.threads_of(config, tmp_path, 32, 5, print) == fastest
    assert len(timed) == 9 and len(list((tmp_path / "sweeps").glob("*.json"))) == 9
    assert race_runs.threads_of(config, tmp_path, 32, 5, print) == fastest  # from the files
    assert len(timed) == 9


def test_a_contender_that_never_reaches_at_any_seed_reads_never():
    raw = hand_made_raw()
    for r in raw["runs"]:
        if r["contender"] == "sideways_paper":
            r["val_accuracy"] = [0.5] * len(r["val_accuracy"])
    rows = race_summary.summarize(raw).tables["headline"].rows
    assert {row[2]: row[3:5] for row in rows}["Sideways (paper)"] == ("never", "0 of 2")
