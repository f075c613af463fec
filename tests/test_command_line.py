"""The commands' flag parsing: a config override that names no field is one line of error,
whether ml_collections meets it when the config flag is defined (a default config file)
or when the flags are parsed (the file given)."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def command(*args):
    """Runs `python -m args` from the repository root; returns (status, stderr lines)."""
    done = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    return done.returncode, done.stderr.splitlines()


@pytest.mark.parametrize(
    "args, line",
    [  # the race and the benchmark parse their flags before they load TensorFlow
        (
            ["train.race", "--config.budgetz=3"],  # checked against the default config
            "--config.budgetz: the config has no field 'budgetz'; did you mean 'budgets'?",
        ),
        (  # ml_collections' difflib ranks 'target' first (a tie, then the alphabet)
            ["train.race", "--config.staget=3"],
            "--config.staget: the config has no field 'staget'; did you mean 'stages'?",
        ),
        (
            ["train.race", "--config=train/bench/race_config.py:tiny", "--config.data.x=1"],
            "--config.data.x: the config has no field 'data'.",  # a missing parent
        ),
        (
            ["train.benchmark", "--config=train/bench/config.py:tiny", "--config.stepz=1"],
            "--config.stepz: the config has no field 'stepz'; did you mean 'steps'?",
        ),
        (
            [
                "train.train",
                "--config=train/configs/moving_digits.py:tiny",  # no default: met at parsing
                "--workdir=/nonexistent/never_made",
                "--config.data.batchsize=2",
            ],
            "--config.data.batchsize: the config has no field 'batchsize'; did you mean "
            "'batch_size'?",
        ),
    ],
    ids=["at-definition", "fewest-edits", "missing-parent", "benchmark", "at-parsing"],
)
def test_a_mistyped_config_override_is_one_line_of_error(args, line):
    status, stderr = command(*args)
    assert status == 1
    assert stderr[-2:] == [
        f"FATAL Flags parsing error: {line}",
        "Pass --helpshort or --helpfull to see help on flags.",
    ]
    assert not any("Traceback" in s for s in stderr)


@pytest.mark.parametrize(
    "flags, line",
    [
        (
            ["--stages_on=7,7,7"],  # ignored: trained on one device, status 0
            "flags stages_on=7,7,7, cluster=None: --stages_on places the stages on the workers "
            "of --cluster: give --cluster too (it was ignored).",
        ),
        (
            ["--logical_cpus=2", '--cluster={"worker": ["127.0.0.1:2222"]}'],  # a traceback
            'flags logical_cpus=2, cluster={"worker": ["127.0.0.1:2222"]}: --logical_cpus '
            "splits this process' CPU for --strategy=mirrored; with --cluster the stages run "
            "on the workers' devices: give one of them.",
        ),
    ],
    ids=["stages_on-alone", "logical_cpus-with-cluster"],
)
def test_distribution_flags_that_do_not_combine_are_refused_as_they_parse(flags, line):
    config = ["--config=train/configs/moving_digits.py:tiny", "--workdir=/nonexistent/x"]
    status, stderr = command("train.train", *config, *flags)
    assert (status, stderr[0]) == (1, f"FATAL Flags parsing error: {line}")


NO_FILE = "/nonexistent/config.py"


@pytest.mark.parametrize(
    "args, line",
    [
        (
            ["train.train", f"--config={NO_FILE}", "--workdir=/nonexistent/never_made"],
            f"flag --config={NO_FILE}: no such file: {NO_FILE}.",
        ),
        (
            ["train.compare", f"--config={NO_FILE}:tiny", "--workdir=/nonexistent/never_made"],
            f"flag --config={NO_FILE}:tiny: no such file: {NO_FILE}.",
        ),
        (  # an override of a config that did not load was a second traceback
            ["train.train", f"--config={NO_FILE}", "--workdir=/x", "--config.mode=bp"],
            f"flag --config={NO_FILE}: no such file: {NO_FILE}.",
        ),
        (
            ["train.race", "--config=train/bench/race_confg.py"],  # a typo: the file meant
            "flag --config=train/bench/race_confg.py: no such file: train/bench/race_confg.py "
            f"(relative to {ROOT}); did you mean 'train/bench/race_config.py'?",
        ),
        (
            ["train.race", "--config=train/bench"],
            "flag --config=train/bench: train/bench is a folder; expected a config file (a .py "
            "file with get_config()).",
        ),
        (
            ["train.race", "--config=train/bench/race_config.py:tinyy"],  # get_config refuses
            "flag --config=train/bench/race_config.py:tinyy: cannot load the config: "
            "ValueError: Unknown race variant 'tinyy'; expected one of ('', 'quick', 'tiny').",
        ),
    ],
    ids=["train", "compare", "with-override", "typo", "folder", "unknown-variant"],
)
def test_a_config_file_that_does_not_load_is_one_line_of_error(args, line):
    status, stderr = command(*args)
    assert status == 1
    assert stderr == [
        f"FATAL Flags parsing error: {line}",
        "Pass --helpshort or --helpfull to see help on flags.",
    ]


@pytest.mark.parametrize(
    "source, reason",
    [
        ("def get_config(:\n", "SyntaxError: invalid syntax (broken.py, line 1)"),
        ("import no_such_module\n", "ModuleNotFoundError: No module named 'no_such_module'"),
        ("CONFIG = {}\n", "it has no get_config()"),
        ("def get_config():\n    raise RuntimeError('boom')\n", "RuntimeError: boom"),
        ("def get_config():\n    open('/nonexistent/data.txt')\n", "FileNotFoundError: "),
    ],
    ids=["syntax", "import", "no-get-config", "raises", "raises-oserror"],
)
def test_a_config_file_that_fails_names_the_file_and_its_error(tmp_path, source, reason):
    config = tmp_path / "broken.py"
    config.write_text(source)
    status, stderr = command("train.race", f"--config={config}")
    assert status == 1
    assert len(stderr) == 2 and not any("Traceback" in s for s in stderr)
    assert stderr[0].startswith(f"FATAL Flags parsing error: flag --config={config}: ")
    assert reason in stderr[0]


@pytest.mark.parametrize(
    "args",
    [
        [
            "train.train",
            "--config=train/configs/moving_digits.py:tiny",
            "--workdir=/x",
            "--config.lr=1",
        ],
        ["train.compare", "--config=train/configs/moving_digits.py:tiny", "--workdir=/x", "--bad"],
        ["train.predict", "--model=/x", "--video=/y", "--top=many"],
        ["train.train", "--helpshort"],
        # The study's report and the worker's cluster loaded TensorFlow as they were imported.
        ["train.reproduce", "--config.seedz=1"],
        ["train.worker", "--index=x"],
        ["train.race", "--config.seedz=1"],
        ["train.benchmark", "--quick", "--config.roundz=1"],
        ["train.cluster_bench", "--bad"],
    ],
    ids=["train", "compare", "predict", "help", "reproduce", "worker", "race", "bench", "cluster"],
)
def test_flag_errors_and_help_answer_before_tensorflow_loads(args):
    # They waited for TensorFlow's start-up (about 5 s) before saying a flag was wrong.
    code = (
        "import runpy, sys\n"
        f"sys.argv = {args!r}\n"
        "try:\n"
        f"    runpy.run_module({args[0]!r}, run_name='__main__')\n"
        "except SystemExit as done:\n"
        "    print('exit', done.code, 'tensorflow' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.stdout.split()[-1] == "False", done.stderr[-3000:]
    assert done.stdout.split()[-2] in ("0", "1")


@pytest.mark.parametrize(
    "signals, status",
    [((signal.SIGINT,), 130), ((signal.SIGTERM,), 143), ((signal.SIGINT, signal.SIGINT), 130)],
    ids=["int", "term", "twice"],
)
def test_a_command_blocked_in_c_still_stops_on_ctrl_c_or_sigterm(signals, status):
    # A command waiting in C++ (a TensorFlow call that does not return) ignored both:
    # Python runs a signal's handler only between bytecodes.
    # The probe gives a stop 0.5 s to end (STOP_GRACE_S, 30 s in the commands) unless a
    # second one comes; "twice" gives it 60 s, ended by the second Ctrl-C.
    grace = "60" if len(signals) > 1 else "0.5"
    probe = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "blocked_probe.py"), grace],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert probe.stdout.readline() == "blocked\n"
        time.sleep(0.2)  # into pthread_join
        start = time.monotonic()
        for signum in signals:
            probe.send_signal(signum)
            time.sleep(0.2)
        _, err = probe.communicate(timeout=60)
        assert time.monotonic() - start < 30
    finally:
        probe.kill()
    assert probe.returncode == status
    assert err.strip() == "interrupted: run it again."
