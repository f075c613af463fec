"""Train the same config with BP and with Sideways, one after the other, and compare.

This is `make train`:

    python -m train.compare --config train/configs/moving_digits.py --workdir runs/moving_digits

writes runs/moving_digits_bp and runs/moving_digits_sideways (both curves on one chart:
`tensorboard --logdir runs`) and exports saved_models/moving_digits_{bp,sideways}. Each
run has a process of its own, at the thread pools `config.threads` gives its engine.
"""

import concurrent.futures
import contextlib
import multiprocessing
import os
import signal
import sys
from concurrent.futures.process import BrokenProcessPool

from absl import app, flags, logging

from train import command_line
from train.child_process import spawned_run

# The library and TensorFlow load once the flags parse (see train/train.py).

_CONFIG = command_line.define_config_file(
    "config", None, "Experiment config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Prefix of the two run folders (_bp, _sideways).")
flags.mark_flags_as_required(["config", "workdir"])


def compare_modes(config, workdir: str, log=lambda line: None) -> dict[str, dict]:
    """Runs `config` with BP, then with Sideways, in `<workdir>_bp` and `<workdir>_sideways`.

    Each run has a fresh process of its own (spawned), so each gets the thread pools its
    `config.threads` resolves to: TensorFlow sizes them once per process. Both configs are
    checked here first, so a bad value fails before either run starts. A run dies with this
    process (`die_with_parent`), and an interrupted one (Ctrl-C, a signal) is killed: none
    is left training on. Run again, the command keeps a run that finished (its config the
    same) and resumes the other from its backup. Errors of a run
    (ConfigError, RunError, ...) are raised here, and a run killed on its own (out of
    memory, say) is a RunError naming it. `log` is called with a line as each
    run starts (the script prints it); the runs' own output goes to this process's.
    """
    from train.builders import check_config, thread_pools
    from train.recipe import (
        RunError,
        check_workdir,
        finished_run,
        refuse_finished_run,
        train_and_evaluate,
    )

    check_workdir(workdir)  # empty: the runs would go to ./_bp and ./_sideways
    runs = {}
    for mode in ("bp", "sideways"):
        runs[mode] = run = config.copy_and_resolve_references()
        with run.unlocked():
            run.mode = mode
        check_config(run)
    for mode, run in runs.items():  # before any run starts: a finished run of another config
        if finished_run(run, f"{workdir}_{mode}") is None:
            refuse_finished_run(run, f"{workdir}_{mode}")
    spawn = multiprocessing.get_context("spawn")  # a fork would inherit a running TensorFlow
    summaries = {}
    for mode, run in runs.items():
        summaries[mode] = finished_run(run, f"{workdir}_{mode}")
        if summaries[mode] is not None:  # a rerun after the first run had finished
            log(f"=== {mode}: {workdir}_{mode} finished before: kept")
            continue
        log(f"=== {mode}: {workdir}_{mode} (threads: {thread_pools(run).describe()})")
        process = concurrent.futures.ProcessPoolExecutor(
            1, mp_context=spawn, initializer=spawned_run, initargs=(os.getpid(),)
        )
        worker = None
        try:
            worker = process.submit(os.getpid).result()  # to kill it if this process is stopped
            summaries[mode] = process.submit(train_and_evaluate, run, f"{workdir}_{mode}").result()
        except BrokenProcessPool:  # killed: the OOM killer, kill -9
            raise RunError(
                f"the {mode} run in {workdir}_{mode} was killed before it ended (out of "
                "memory, or a signal to it alone); run the same command again to resume it."
            ) from None
        except BaseException:  # Ctrl-C or a signal to this process alone: stop the run too
            if worker is not None:  # (shutdown would wait for the run to end)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker, signal.SIGKILL)
            raise
        finally:
            process.shutdown(cancel_futures=True)
    return summaries


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # TensorFlow's SavedModel chatter
    from train.builders import ConfigError
    from train.printing import comparison_table, summary_lines
    from train.recipe import RunError

    try:
        summaries = compare_modes(
            _CONFIG.value, _WORKDIR.value, log=lambda line: print(line, flush=True)
        )
    except (ConfigError, RunError) as error:
        sys.exit(f"error: {error}")  # one line, exit status 1: no traceback for bad input
    print()
    print(comparison_table(summaries))
    for summary in summaries.values():
        print("\n".join(summary_lines(summary)))
    print(f"Both runs on one chart: tensorboard --logdir {os.path.dirname(_WORKDIR.value) or '.'}")


if __name__ == "__main__":
    app.run(
        command_line.interruptible(
            main, "run the same command again: a finished run is kept, the other resumes."
        ),
        flags_parser=command_line.parse,
    )
