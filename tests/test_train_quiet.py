"""The commands leave TensorFlow's logging to the user, and the library leaves it alone.

That the commands print no start-up noise or warnings is tested where they run as a user
runs them: test_training's compare test and test_inference's predict test
(conftest.strays)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, **env) -> subprocess.CompletedProcess:
    """A fresh Python running `code`, TF_CPP_MIN_LOG_LEVEL unset unless `env` sets it."""
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(environment, PYTHONPATH=str(ROOT), **env),
        check=True,
    )


def _environment_after(code: str, **env) -> str:
    """TF_CPP_MIN_LOG_LEVEL as a fresh Python sees it after `code`, with `env` set."""
    done = _python(f"{code}; import os; print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))", **env)
    return done.stdout.split()[-1]


def test_commands_keep_the_users_log_level_and_the_library_sets_none():
    assert _environment_after("import train", TF_CPP_MIN_LOG_LEVEL="1") == "1"
    assert _environment_after("import keras_sideways") == "None"  # users' scripts: untouched


def test_the_commands_load_tensorflow_only_when_needed_and_then_quietly():
    # Keras loads TensorFlow here, as the commands' imports do; left alone, TensorFlow
    # writes its start-up lines (absl's, oneDNN's, "Could not find cuda drivers") then.
    loaded = "print('tensorflow' in sys.modules)"
    done = _python(f"import sys, train; {loaded}; import keras; {loaded}")
    assert done.stdout.split() == ["False", "True"]
    assert done.stderr == ""
