"""Speed and memory of Sideways against BP: `make bench` (see train/bench/); the race to an
accuracy, the last step of `make bench`, is `python -m train.race`.

    make bench                                  # the reference workload, then the page
    python -m train.benchmark --report_only     # the page again, from the committed results
    python -m train.benchmark --quick           # CI-sized: bench/results.json, no page
    python -m train.benchmark --quick --config.batch=4
    python -m train.benchmark --config=train/bench/config.py:tiny \
        --json=/tmp/bench.json --docs=/tmp/performance.md

The reference workload writes its raw results to docs/performance/bench.json and the page
to docs/performance.md. Any other workload (a variant, an override) writes
bench/results.json and no page unless --json and --docs say otherwise, so that only the
reference run replaces the committed figures; --report_only of other raw results (--json)
writes a page only where --docs says. Bad values and raw results that are not the
benchmark's are one line of error (exit status 1).
"""

import sys

import ml_collections
from absl import app, flags
from ml_collections import config_flags

from train import child_process, command_line, results
from train.bench import config as bench_config
from train.bench import report, runs, summary

REFERENCE_JSON = "docs/performance/bench.json"
REFERENCE_DOCS = "docs/performance.md"
OTHER_JSON = "bench/results.json"
# What the summary reads: raw results of the race or the study lack some of them.
RAW_KEYS = ("command", "machine", "workload", "thread_sweep", "throughput", "memory", "scaling")

_CONFIG = command_line.define_config_file(
    "config", "train/bench/config.py", "The workload.", lock_config=True
)
_QUICK = flags.DEFINE_bool("quick", False, "Shorthand for --config=train/bench/config.py:quick.")
_JSON = flags.DEFINE_string(
    "json", "", f"Raw results. Default: {REFERENCE_JSON} (reference workload), else {OTHER_JSON}."
)
_DOCS = flags.DEFINE_string(
    "docs", "", f"The page to write. Default: {REFERENCE_DOCS} (reference workload), else none."
)
_REPORT_ONLY = flags.DEFINE_bool(
    "report_only", False, "Measure nothing: rewrite the page from the raw results of --json."
)


def _workload() -> ml_collections.ConfigDict:
    """The config of --config, or of --quick with any --config.<field> overrides."""
    if not _QUICK.value:
        return _CONFIG.value
    if flags.FLAGS["config"].present:
        raise app.UsageError("--quick means --config=train/bench/config.py:quick: give one.")
    config = bench_config.get_config("quick")
    config.update_from_flattened_dict(config_flags.get_override_values(flags.FLAGS["config"]))
    return config


def main(argv):
    del argv
    try:
        report_benchmark()
    except (ValueError, child_process.ChildError) as error:  # a bad value, raw results
        sys.exit(f"error: {error}")  # (results.ResultsError), a failed measurement: one line


def report_benchmark() -> None:
    """Measures the workload (unless --report_only), then prints and writes its report."""
    if _REPORT_ONLY.value:
        config = None  # the committed page is the committed results' only
        reference = not _JSON.value or results.same_file(_JSON.value, REFERENCE_JSON)
    else:
        config = _workload()
        bench_config.check(config)
        reference = config.to_dict() == bench_config.get_config().to_dict()
    json_path = _JSON.value or (REFERENCE_JSON if reference else OTHER_JSON)
    docs_path = _DOCS.value or (REFERENCE_DOCS if reference else "")
    if config is not None:
        command = (
            "make bench"
            if reference
            else command_line.command_of("train.benchmark", *["--quick"] * _QUICK.value)
        )
        raw = runs.run_benchmark(config, command, log=lambda line: print(line, flush=True))
        summary.summarize(raw)  # figures that cannot be made fail before anything is written
        results.write_json(raw, json_path)
    raw = results.read_json(json_path, RAW_KEYS, "the benchmark's")
    figures = summary.summarize(raw)
    print("\n" + report.text(figures))
    print(f"\nresults: {json_path}")
    if docs_path:
        print(f"report:  {report.write_page(figures, docs_path)}")
    else:
        print(f"no page written: --docs names one ({REFERENCE_DOCS} is {REFERENCE_JSON}'s)")


if __name__ == "__main__":
    app.run(
        command_line.interruptible(main, "nothing was written; measure again on an idle machine."),
        flags_parser=command_line.parse,
    )
