"""The Sideways-against-BP study: `make reproduce`, then docs/study.md is up to date.

    python -m train.reproduce                     # the full study: hours on 2 cores
    python -m train.reproduce --config.sections=fixes   # one section (each under an hour)
    python -m train.reproduce --config.sections=realtime   # section 9, on an idle machine
    python -m train.reproduce --config.sections=skips   # section 10, skip connections
    python -m train.reproduce --quick             # CI-sized (config variant "quick"): minutes
    python -m train.reproduce --report_only       # docs/study.md from docs/study/study.json
    python -m train.reproduce --config.seeds=0,1 --config.strides=1,4   # any field overridden
    python -m train.reproduce --config=train/study/config.py:tiny --out=/tmp/study/results \
        --docs=/tmp/study/study.md                # the seconds-long smoke run

A run writes --out/study.json as it goes ("complete": false until the end) and
reconstructions.npz; then the summary, the plots and the report are made from them, and
both files are copied beside the plots (docs/study/), where they are committed. Only the
full study replaces docs/study.md and docs/study/ by default: a variant (--quick) or an
override writes results/ and its plots there, and a page only where --docs says.
--report_only trains nothing: it reads those copies (or --results) and writes the same
page again, byte for byte; of results other than the committed ones, it writes their plots
beside them and a page only where --docs says (with those results copied beside it). A
study.json keeps runs its settings do not plan (another seed's); the page leaves them out.
Bad values, and results that are missing, unfinished or not the study's, are one line of
error (exit status 1). The study itself is the package train/study/.
"""

import shlex
import sys
from pathlib import Path

import ml_collections
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from train import child_process, command_line
from train.results import same_file
from train.study import config as study_config
from train.study import plots, runs, summary

_CONFIG = command_line.define_config_file(
    "config", "train/study/config.py", "The study's settings.", lock_config=True
)
_QUICK = flags.DEFINE_bool("quick", False, "Shorthand for --config=train/study/config.py:quick.")
_OUT = flags.DEFINE_string("out", "results", "Where a run writes study.json as it goes.")
REFERENCE_DOCS = "docs/study.md"
_DOCS = flags.DEFINE_string(
    "docs",
    "",
    "The report; its plots and raw results go to <its stem>/ beside it. Default: "
    f"{REFERENCE_DOCS} for the full study and --report_only, none for a variant or override.",
)
_RESULTS = flags.DEFINE_string(
    "results", "", "Where --report_only reads study.json; default: beside --docs' plots."
)
_REPORT_ONLY = flags.DEFINE_bool(
    "report_only", False, "Train nothing: the plots and the report from existing results."
)


def settings() -> ml_collections.ConfigDict:
    """The config of --config, or of its quick variant with the same overrides (--quick)."""
    config = _CONFIG.value
    if not _QUICK.value:
        return config
    if config.name != "full":
        raise app.UsageError(
            f"--quick means --config=train/study/config.py:quick; got the {config.name!r} "
            "variant too: give one."
        )
    quick = study_config.get_config("quick")
    for field, value in config_flags.get_override_values(flags.FLAGS["config"]).items():
        quick[field] = value
    return quick


def headlines(results: dict) -> list[str]:
    """The headline figures of a finished study, for the end of the output."""
    from train.study import report  # loads TensorFlow (its clock): after the flags parse

    s, figures = results["settings"], results["summary"]
    point, recon = figures["stride"][str(s["strides"][0])], figures["reconstruction"]
    realtime = figures.get("realtime") or {}
    lines = []
    if realtime and not np.isnan(realtime["ratio"]):
        lines.append(
            f"real time: training frames/s BP {realtime['fps']['bp']:.1f}, Sideways "
            f"{realtime['fps']['sideways']:.1f} ({realtime['engine']}); at equal wall-clock test "
            f"MSE BP {report.number(realtime['bp']['mse'], 5)}, Sideways "
            f"{report.number(realtime['sideways']['mse'], 5)} (Sideways ÷ BP "
            f"{realtime['ratio']:.3f})"
        )
    return [
        f"study ({s['name']} settings, {len(s['seeds'])} seed(s)): "
        f"{results['seconds'] / 60:.1f} min",
        f"moving digits, stride {s['strides'][0]}: test accuracy BP "
        f"{report.percent(point['bp']['accuracy'])}%, Sideways "
        f"{report.percent(point['sideways']['accuracy'])}% "
        f"({summary.accuracy_gap(point):+.1f} points)",
        f"real footage: test MSE BP {report.number(recon['bp']['mse'], 5)}, Sideways "
        f"{report.number(recon['sideways']['mse'], 5)} ({100 * summary.mse_change(recon):+.1f}%)",
        *lines,
    ]


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.ERROR)  # each run is a new model: retracing is expected
    try:
        reproduce()
    except (ValueError, OSError, child_process.ChildError) as error:  # a bad value, raw
        # results missing or unreadable, a real-time measurement that failed
        sys.exit(f"error: {error}")  # one line, exit status 1


def reproduce() -> None:
    """Runs the study's missing runs (unless --report_only), then writes its plots and
    report and prints its headlines."""
    from train.study import report  # loads TensorFlow (its clock): after the flags parse

    if _REPORT_ONLY.value:  # the committed page is the committed results' only
        config = None
        reference = not _RESULTS.value or same_file(_RESULTS.value, results_of(REFERENCE_DOCS))
    else:
        config = settings()
        reference = config.to_dict() == study_config.get_config().to_dict()
    docs_value = _DOCS.value or (REFERENCE_DOCS if reference else "")
    docs = Path(docs_value) if docs_value else None  # a variant never replaces the page
    if _REPORT_ONLY.value:
        source = Path(_RESULTS.value) if _RESULTS.value else results_of(docs)
        figures = results_of(docs) if docs else source  # docs/study/
    else:
        source = figures = Path(_OUT.value)
        if docs:
            figures = results_of(docs)
        command = shlex.join(["python", "-m", "train.reproduce", *sys.argv[1:]])
        done = runs.run_study(
            config, source, log=lambda line: print(line, flush=True), command=command
        )
        if not done["complete"]:
            print(
                f"{done['missing']} runs of sections not asked for are still missing from "
                f"{source}/study.json: run the others (--config.sections=...) to finish it."
            )
            return
    results = runs.load_results(source)  # every run it holds: other seeds' too
    page = dict(results, runs=runs.planned_runs(results))  # those of the settings it states
    page["summary"] = summary.summarize(page)
    page["plots"] = plots.write_plots(page, figures, runs.load_shown(source))
    if not _REPORT_ONLY.value:
        saved = runs.save_results(
            dict(results, summary=page["summary"], plots=page["plots"]), source
        )
        print(f"results: {saved}")
    # The page links the raw results beside it: those it was made from (a page made from
    # --results of another study linked the study.json it replaced).
    runs.copy_results(source, figures)
    print("\n".join(headlines(page)))
    if docs:
        print(f"report:  {report.write_report(page, docs)}, plots and results in {figures}/")
    else:
        committed = results_of(REFERENCE_DOCS)
        print(f"no page written: --docs names one ({REFERENCE_DOCS} is {committed}/'s)")


def results_of(docs: str | Path) -> Path:
    """The folder of a page's plots and raw results: docs/study/ for docs/study.md."""
    return Path(docs).with_suffix("")


if __name__ == "__main__":
    app.run(
        command_line.interruptible(main, "run the same command again: the runs in --out are kept."),
        flags_parser=command_line.parse,
    )
