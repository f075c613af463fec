"""The four commands that write a committed page from raw results (train.benchmark,
train.race, train.cluster_bench, train.reproduce), used the wrong way: another command's
raw results, a broken file, another workload's results without --docs, bad values. Each
must be one line of error, or leave the committed pages alone."""

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from train import results
from train.study import config as study_config
from train.study import runs

ROOT = Path(__file__).resolve().parents[1]
PERFORMANCE = ROOT / "docs" / "performance"
# Each command, its committed raw results and the pages (and charts) they make.
COMMANDS = {
    "train.benchmark": (PERFORMANCE / "bench.json", ["docs/performance.md"]),
    "train.race": (PERFORMANCE / "race.json", ["docs/race.md", "docs/performance/race.png"]),
    "train.cluster_bench": (PERFORMANCE / "cluster.json", ["docs/distributed.md"]),
}


def command(*args: str) -> tuple[int, str, str]:
    """Runs `python -m args` from the repository root, as the README says; returns its
    status, stdout and stderr."""
    done = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    return done.returncode, done.stdout, done.stderr


def one_error_line(status: int, stderr: str) -> str:
    """The command's one line of error, after checking it failed without a traceback."""
    assert status == 1 and "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def committed_pages() -> dict[str, bytes]:
    pages = [page for _, listed in COMMANDS.values() for page in listed]
    pages += ["docs/study.md", *(f"docs/study/{p.name}" for p in (ROOT / "docs/study").glob("*"))]
    return {page: (ROOT / page).read_bytes() for page in pages}


@pytest.mark.parametrize("module", list(COMMANDS))
def test_report_only_of_other_results_writes_no_committed_page(module, tmp_path):
    # A copy of the committed results is other results: its page goes where --docs says.
    committed, _ = COMMANDS[module]
    copy = tmp_path / committed.name
    shutil.copyfile(committed, copy)
    before = committed_pages()
    status, out, err = command(module, "--report_only", f"--json={copy}")
    assert status == 0, err[-3000:]
    assert "no page written: --docs names one" in out
    assert committed_pages() == before
    if module != "train.cluster_bench":  # (its section: tests/test_cluster_bench.py)
        # ... and with --docs, the page is the committed one, byte for byte.
        page = tmp_path / "page.md"
        status, _, err = command(module, "--report_only", f"--json={copy}", f"--docs={page}")
        assert status == 0, err[-3000:]
        expected = (ROOT / COMMANDS[module][1][0]).read_text()
        # The race's page links to the chart beside the results.
        assert page.read_text() == expected.replace("performance/race.png", "race.png")


def test_study_report_only_of_other_results_plots_beside_them_and_writes_no_page(tmp_path):
    for name in ("study.json", "reconstructions.npz"):
        shutil.copyfile(ROOT / "docs" / "study" / name, tmp_path / name)
    before = committed_pages()
    status, out, err = command("train.reproduce", "--report_only", f"--results={tmp_path}")
    assert status == 0, err[-3000:]
    assert "no page written: --docs names one" in out
    assert committed_pages() == before
    for plot in json.loads((ROOT / "docs/study/study.json").read_text())["plots"].values():
        assert (tmp_path / plot).read_bytes() == (ROOT / "docs/study" / plot).read_bytes()


def test_a_study_page_is_of_the_seeds_it_names_with_its_results_beside_it(tmp_path):
    # A rerun for other seeds keeps the old seeds' runs in study.json; the page said "over
    # 4 seeds" and averaged 5. A page made from --results of another study linked the
    # study.json beside it, which it did not replace.
    held = json.loads((ROOT / "docs" / "study" / "study.json").read_text())
    held["settings"]["seeds"] = [1, 2, 3, 4]  # seed 0's runs stay in the file
    results.write_json(held, tmp_path / "study.json")
    shutil.copyfile(
        ROOT / "docs" / "study" / "reconstructions.npz", tmp_path / "reconstructions.npz"
    )
    docs = tmp_path / "page" / "study.md"
    status, out, err = command(
        "train.reproduce", "--report_only", f"--results={tmp_path}", f"--docs={docs}"
    )
    assert status == 0, err[-3000:]
    s = held["settings"]
    bp = [
        100 * r["accuracy"]
        for r in held["runs"]
        if (r["experiment"], r["mode"], r.get("stride"), r.get("num_stages"))
        == ("classification", "bp", 1, s["num_stages"])
        and (r.get("clip_length"), r.get("speed"), r.get("epochs"))
        == (s["clip_length"], s["speed"], s["epochs"])
    ]
    assert len(bp) == 5  # seeds 0 to 4: the page takes 1 to 4
    four, five = (f"{statistics.mean(v):.1f} ± {statistics.stdev(v):.1f}%" for v in (bp[1:], bp))
    assert four != five
    assert f"test accuracy BP {four}, Sideways" in out
    assert "Seeds: 1, 2, 3, 4." in docs.read_text()
    assert (docs.parent / "study" / "study.json").read_bytes() == (
        tmp_path / "study.json"
    ).read_bytes()


# Raw results of another command, by what the reader finds missing.
OTHER_RESULTS = [
    ("train.benchmark", PERFORMANCE / "race.json", "the benchmark's", "'thread_sweep'"),
    ("train.race", PERFORMANCE / "bench.json", "the race's", "'points'"),
    ("train.cluster_bench", PERFORMANCE / "bench.json", "the cluster benchmark's", "'repeats'"),
    ("train.reproduce", PERFORMANCE / "bench.json", "the study's", "'settings'"),
]


@pytest.mark.parametrize("module, other, whose, missing", OTHER_RESULTS)
def test_another_commands_results_are_one_line_naming_what_is_missing(
    module, other, whose, missing, tmp_path
):
    if module == "train.reproduce":
        shutil.copyfile(other, tmp_path / "study.json")
        args = [f"--results={tmp_path}"]
    else:
        args = [f"--json={other}"]
    before = committed_pages()
    line = one_error_line(*command(module, "--report_only", *args)[::2])
    assert f"is not {whose} raw results: it has no {missing}" in line
    assert committed_pages() == before


@pytest.mark.parametrize("module, whose", [row[::2] for row in OTHER_RESULTS[:3]])
def test_broken_or_missing_raw_results_are_one_line_naming_the_file(module, whose, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"command": "make bench", "mach')  # cut short by a full disk
    line = one_error_line(*command(module, "--report_only", f"--json={broken}")[::2])
    assert line.startswith(f"error: {broken} is not JSON (")
    missing = tmp_path / "none.json"
    line = one_error_line(*command(module, "--report_only", f"--json={missing}")[::2])
    assert line == f"error: {missing} does not exist; expected {whose} raw results (a JSON file)."
    assert not missing.exists()


def test_study_results_without_their_clips_are_one_line_naming_the_file(tmp_path):
    shutil.copyfile(ROOT / "docs" / "study" / "study.json", tmp_path / "study.json")
    with pytest.raises(results.ResultsError, match="cannot read .*reconstructions.npz"):
        runs.load_shown(tmp_path)
    (tmp_path / "reconstructions.npz").write_bytes(b"PK\x03\x04 cut short")
    docs = tmp_path / "study.md"
    args = ("train.reproduce", "--report_only", f"--results={tmp_path}", f"--docs={docs}")
    line = one_error_line(*command(*args)[::2])
    assert f"cannot read {tmp_path / 'reconstructions.npz'} (BadZipFile" in line
    assert not docs.exists()


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["train.cluster_bench", "--config=train/bench/config.py:tiny", "--repeats=0"],
            "error: --repeats: expected a whole number >= 1; got 0.",
        ),
        (
            ["train.cluster_bench", "--config=train/bench/config.py:tiny", "--config.batch=-2"],
            "error: config.batch: expected an integer >= 1; got -2.",
        ),
        (
            ["train.benchmark", "--config=train/bench/config.py:tiny", "--config.rounds=0"],
            "error: config.rounds: expected an integer >= 1; got 0.",
        ),
        (
            ["train.race", "--config=train/bench/race_config.py:tiny", "--config.seeds=(-1,)"],
            "error: config.seeds: expected increasing seeds >= 0; got (-1,).",
        ),
    ],
    ids=["cluster-repeats", "cluster-config", "benchmark-config", "race-config"],
)
def test_bad_values_are_one_line_before_anything_is_measured_or_written(args, expected, tmp_path):
    before = committed_pages()
    out = tmp_path / "out"
    extra = ["--json", str(out / "r.json")] if args[0] != "train.race" else ["--out", str(out)]
    assert one_error_line(*command(*args, *extra)[::2]) == expected
    assert committed_pages() == before and not out.exists()


def test_study_values_keras_would_refuse_are_one_line_before_the_folder_is_made(tmp_path):
    out = tmp_path / "results"
    args = ("train.reproduce", "--config=train/study/config.py:tiny", f"--out={out}")
    line = one_error_line(*command(*args, "--config.seeds=-1")[::2])
    assert line == "error: config.seeds: expected seeds from 0 to 2**32 - 1; got (-1,)."
    assert not out.exists()


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("epochs", -1, "whole numbers >= 1"),
        ("video_size", (8, 0), "whole numbers >= 1"),
        ("few_seeds", (0, 2**32), "seeds from 0 to 2**32 - 1"),
        ("learning_rate", float("nan"), "a finite rate > 0"),
        ("recon_learning_rate", 0.0, "a finite rate > 0"),
        ("long_epochs", -1, "a whole number >= 0 (0: not run)"),
        ("speed", float("inf"), "pixels per source frame, finite and > 0"),
    ],
)
def test_study_config_refuses_values_keras_would_fail_on(field, value, expected):
    config = study_config.get_config("tiny")
    config[field] = value
    with pytest.raises(ValueError, match=re.escape(f"config.{field}: expected {expected}; got")):
        study_config.check_config(config)


def test_study_results_made_with_other_settings_are_not_resumed(tmp_path):
    # A study.json of the tiny study at width 3 and 24 pixels: a rerun at the tiny
    # settings would keep its runs as its own, under a page describing 16 pixels.
    settings = study_config.get_config("tiny")
    with settings.unlocked():
        settings.width, settings.image_size = 3, 24
    old = dict(command="", settings=settings.to_dict(), complete=False, runs=[])
    results.write_json(old, tmp_path / "study.json")
    args = ("train.reproduce", "--config=train/study/config.py:tiny", f"--out={tmp_path}")
    line = one_error_line(*command(*args)[::2])
    assert line == (
        f"error: {tmp_path / 'study.json'} holds runs made with other settings: width 3 "
        "(now 2), image_size 24 (now 16); give another --out, or set them back."
    )
    assert json.loads((tmp_path / "study.json").read_text()) == json.loads(json.dumps(old))


def test_changed_run_fields_reads_tuples_and_json_lists_alike():
    now = study_config.get_config("tiny")
    before = json.loads(json.dumps(now.to_dict()))  # as study.json holds it: lists
    assert study_config.changed_run_fields(before, now) == {}
    before["video_size"] = [8, 16]
    before["seeds"] = [0, 1]  # picks runs: not a run's setting
    assert study_config.changed_run_fields(before, now) == {"video_size": ([8, 16], (8, 12))}
    # clip_length sets every run's clip count, batch and test clips: runs of another were
    # kept as this one's.
    before = dict(json.loads(json.dumps(now.to_dict())), clip_length=8)
    assert study_config.changed_run_fields(before, now) == {"clip_length": (8, 4)}


def test_pages_and_charts_are_replaced_whole_or_not_at_all(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("the last page")
    with pytest.raises(RuntimeError), results.replacing(page) as tmp:
        tmp.write_text("half a pa")
        raise RuntimeError("killed while writing")
    assert page.read_text() == "the last page" and list(tmp_path.iterdir()) == [page]
    results.write_text(page, "the new page")
    assert page.read_text() == "the new page" and list(tmp_path.iterdir()) == [page]
