"""The commands' flag parsing: a config override that names no field is one line of error,
whether ml_collections meets it when the config flag is defined (a default config file)
or when the flags are parsed (the file given)."""

import subprocess
import sys
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
    ids=["at-definition", "missing-parent", "benchmark", "at-parsing"],
)
def test_a_mistyped_config_override_is_one_line_of_error(args, line):
    status, stderr = command(*args)
    assert status == 1
    assert stderr[-2:] == [
        f"FATAL Flags parsing error: {line}",
        "Pass --helpshort or --helpfull to see help on flags.",
    ]
    assert not any("Traceback" in s for s in stderr)
