"""The race to a fixed accuracy, Sideways against BP: part of `make bench` (see train/bench/).

    python -m train.race                          # the reference race: hours on 2 cores
    python -m train.race --config.image_sizes='(64,)' --config.stages='(8,)'   # one point
    python -m train.race --report_only            # docs/race.md from docs/performance/race.json
    python -m train.race --config=train/bench/race_config.py:quick   # minutes
    python -m train.race --config=train/bench/race_config.py:tiny --out=/tmp/race \\
        --docs=/tmp/race.md                       # seconds: the CI smoke run

Every run is saved in --out as it ends (one JSON file each) and skipped when the command
is run again, so an interrupted race goes on where it stopped, and processes given other
points (`image_sizes`, `stages`, `seeds`) of the same workload can share one folder. Each
command then gathers the whole folder into --json and draws the chart beside it (race.png).
The reference workload, whatever its points, gathers into docs/performance/race.json and
writes docs/race.md (points not run yet are listed there); any other workload writes
<out>/race.json and a page only where --docs says. --report_only trains nothing: it writes
the same page and chart again from --json, byte for byte (for raw results other than the
committed ones, a page only where --docs says). Bad values and raw results that are not
the race's are one line of error (exit status 1).
"""

import os
import sys
from pathlib import Path

from absl import app, flags

from train import child_process, command_line, results
from train.bench import plots, race_config, race_report, race_runs, race_summary

REFERENCE_JSON = "docs/performance/race.json"
REFERENCE_DOCS = "docs/race.md"
REFERENCE_OUT = "results/race"
OTHER_OUT = "results/race_other"
RAW_KEYS = ("command", "machine", "workload", "points", "sweeps", "runs")  # the summary's

_CONFIG = command_line.define_config_file(
    "config", "train/bench/race_config.py", "The race.", lock_config=True
)
_OUT = flags.DEFINE_string(
    "out",
    "",
    f"The runs, a JSON file each. Default: {REFERENCE_OUT} (reference), else {OTHER_OUT}.",
)
_JSON = flags.DEFINE_string(
    "json", "", f"Raw results. Default: {REFERENCE_JSON} (reference), else <out>/race.json."
)
_DOCS = flags.DEFINE_string(
    "docs", "", f"The page. Default: {REFERENCE_DOCS} (reference workload), else none."
)
_REPORT_ONLY = flags.DEFINE_bool(
    "report_only", False, "Train nothing: the page and the chart again from --json."
)


def main(argv):
    del argv
    try:
        report_race()
    except ValueError as error:  # a bad value, or raw results (results.ResultsError)
        sys.exit(f"error: {error}")  # one line, exit status 1
    except child_process.ChildError as error:  # a run that failed or ran past run_timeout
        sys.exit(f"error: {error}; the finished runs in --out are kept.")


def report_race() -> None:
    """Runs the race's missing runs (unless --report_only), then prints and writes its
    report and chart."""
    reference_config = race_config.get_config()
    if _REPORT_ONLY.value:  # the committed page is the committed results' only
        reference = not _JSON.value or results.same_file(_JSON.value, REFERENCE_JSON)
    else:
        reference = race_config.workload(_CONFIG.value) == race_config.workload(reference_config)
    out = _OUT.value or (REFERENCE_OUT if reference else OTHER_OUT)
    json_path = _JSON.value or (REFERENCE_JSON if reference else os.path.join(out, "race.json"))
    docs_path = _DOCS.value or (REFERENCE_DOCS if reference else "")
    if not _REPORT_ONLY.value:
        config = _CONFIG.value
        race_config.check(config)
        race_runs.check_workload(config, Path(out))
        race_runs.run_race(config, out, log=lambda line: print(line, flush=True))
        # The reference's page lists every point of the reference, run or not yet.
        command = "python -m train.race" if reference else command_line.command_of("train.race")
        points = reference_config if reference else config
        results.write_json(race_runs.merge(out, points, command), json_path)
    raw = results.read_json(json_path, RAW_KEYS, "the race's")
    figures = race_summary.summarize(raw)
    print("\n" + race_report.text(figures))
    print(f"\nresults: {json_path}")
    chart = plots.target_race_chart(raw, Path(json_path).with_name(plots.TARGET_RACE_CHART))
    print(f"chart:   {chart}")
    if docs_path:
        print(f"report:  {race_report.write_page(figures, docs_path, chart)}")
    else:
        print(f"no page written: --docs names one ({REFERENCE_DOCS} is {REFERENCE_JSON}'s)")


if __name__ == "__main__":
    app.run(
        command_line.interruptible(main, "run the same command again: the runs in --out are kept."),
        flags_parser=command_line.parse,
    )
