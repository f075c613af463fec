"""The commands leave TensorFlow's logging to the user, and the library leaves it alone.

That the commands print no start-up noise or warnings is tested where they run as a user
runs them: test_training's compare test and test_inference's predict test
(conftest.strays)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
