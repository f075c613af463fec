"""The Sideways-against-BP study: `make reproduce`, then docs/study.md is up to date.

    python -m train.reproduce              # the full study, about an hour on 2 cores
    python -m train.reproduce --quick      # CI-sized: one seed, small settings, minutes

Writes results/study.json and the plots in results/, then regenerates docs/study.md and
its plots in docs/study/ (see keras_sideways/study.py).
"""

import json
import os

from absl import app, flags, logging

from keras_sideways import study

_QUICK = flags.DEFINE_bool("quick", False, "Run the CI-sized version: one seed, small settings.")
_OUT = flags.DEFINE_string("out", "results", "Where study.json and the plots go.")
_DOCS = flags.DEFINE_string("docs", "docs/study.md", "The report to regenerate; '' for none.")
_REPORT_ONLY = flags.DEFINE_bool(
    "report_only", False, "Train nothing: redraw the plots and the report from --out's study.json."
)


def main(argv):
    del argv
    logging.set_verbosity(logging.ERROR)  # each run is a new model: retracing is expected
    if _REPORT_ONLY.value:
        with open(os.path.join(_OUT.value, "study.json")) as f:
            results = json.load(f)
        results = study.refresh(results, _OUT.value)
        print(f"report:  {study.write_report(results, _OUT.value, _DOCS.value)}")
        return
    settings = study.Settings.quick() if _QUICK.value else study.Settings()
    command = "python -m train.reproduce" + (" --quick" if _QUICK.value else "")
    if _OUT.value != _OUT.default:
        command += f" --out={_OUT.value}"
    if _DOCS.value != _DOCS.default:
        command += f" --docs={_DOCS.value}"
    results = study.run_study(
        settings, _OUT.value, log=lambda line: print(line, flush=True), command=command
    )
    print()
    print("\n".join(study.summary_lines(results)))
    print(f"results: {os.path.join(_OUT.value, 'study.json')} and the plots beside it")
    if _DOCS.value:
        print(f"report:  {study.write_report(results, _OUT.value, _DOCS.value)}")


if __name__ == "__main__":
    app.run(main)
