"""Tests of keras_sideways.threads: reading a setting, "auto" per engine, applying it."""

import os
import subprocess
import sys

import pytest
import tensorflow as tf

from keras_sideways import threads
from keras_sideways.threads import Threads


@pytest.mark.parametrize(
    "setting, expected",
    [("auto", None), (" auto ", None), ("2,1", Threads(2, 1)), (" 0, 0 ", Threads(0, 0))],
)
def test_a_setting_is_auto_or_two_pool_sizes(setting, expected):
    assert threads.parse(setting) == expected


@pytest.mark.parametrize("bad", ["abc", "-1,2", "2", "1,2,3", "1.5,1", ",1", "", "²,1", 2, None])
def test_a_bad_setting_names_what_was_expected_and_given(bad):
    with pytest.raises(ValueError, match=r"expected 'auto' or 'inter,intra'.*; got ") as error:
        threads.parse(bad)
    assert str(error.value).endswith(f"got {bad!r}.")


def test_auto_gives_the_pipeline_a_thread_per_core_and_others_tensorflows_defaults(
    monkeypatch,
):
    assert threads.resolve("auto", "pipeline", cores=4) == Threads(4, 1)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert threads.resolve("auto", "pipeline") == Threads(3, 1)
    assert threads.resolve("auto", "batched") == Threads(0, 0)
    assert threads.resolve("auto", "bp") == Threads(0, 0)
    assert threads.resolve("1,2", "pipeline") == Threads(1, 2)  # explicit: the same anywhere
    with pytest.raises(ValueError, match="Unknown engine 'auto'; expected one of bp, batched"):
        threads.resolve("auto", "auto")


def test_threads_read_back_and_describe_themselves():
    assert str(Threads(2, 1)) == "2,1"
    assert Threads(2, 1).describe() == "inter-op 2, intra-op 1"
    assert Threads(0, 3).describe() == "inter-op default, intra-op 3"


def test_once_tensorflow_runs_only_its_own_pools_can_be_applied():
    tf.constant(1.0) + 1.0  # TensorFlow has started in this process, if it had not yet
    running = threads.in_use()
    assert threads.apply(running) == running
    other = Threads(running.inter + 1, running.intra + 1)
    message = (
        f"Cannot size TensorFlow's thread pools to {other.describe()}: TensorFlow has already "
        f"started in this process with {running.describe()}."
    )
    with pytest.raises(RuntimeError, match=message):
        threads.apply(other)
    assert threads.in_use() == running


@pytest.mark.slow
def test_applied_before_tensorflow_starts_the_pools_are_what_it_runs_with():
    code = (
        "import tensorflow as tf; from keras_sideways import threads; "
        "print(threads.apply(threads.Threads(1, 2))); tf.constant(1.0) + 1.0; "
        "print(threads.in_use())"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["1,2", "1,2"]
