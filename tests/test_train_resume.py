"""The training command killed mid-epoch and run again ends where an uninterrupted run ends.

Each case runs `python -m train.train` three times on a tiny config of 3 epochs of 2 batches
(moving digits with BP, and streamed with Sideways, the config's mode): once straight
through; once stalled after the first batch of epoch 1 (tests/stall_probe.py) and killed
there with SIGKILL; and once more, the same command in the killed run's workdir, which
resumes from the backup of epoch 0. The final checkpoints (weights, pipeline buffers and
optimizer state) must be equal bit for bit, and the rerun must log to TensorBoard the
batch losses of the uninterrupted run, after the steps of the epochs it did not run. The
other data sources (arrow of time, a video folder, tensorflow-datasets) draw an epoch from
(seed, epoch) alone as these do, which tests/test_data_footage.py,
tests/test_data_video_files.py and tests/test_data_tfds_videos.py check in-process (epoch 1
without epoch 0). (A third case, a TFDS dataset prepared on disk, took 25 s of the suite's
10 minutes for the same command path.)
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import run_module

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "tests"
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
EPOCHS = 3
BATCHES = 2  # per epoch, in every case
KILL_AT = (1, 0)  # (epoch, batch): after epoch 0's backup, before epoch 1's last batch


def command(config: str, workdir: Path, overrides: list[str]) -> list[str]:
    return [
        f"--config={ROOT / 'train' / 'configs' / config}:tiny",
        f"--workdir={workdir}",
        f"--config.epochs={EPOCHS}",
        "--config.export_dir=",  # no SavedModel: the checkpoints are what is compared
        *overrides,
    ]


def run_to_the_end(flags: list[str]) -> None:
    run_module("train.train", *flags)


def kill_mid_epoch(flags: list[str], workdir: Path) -> None:
    """Runs the command until it stalls at KILL_AT, then kills it with SIGKILL."""
    marker = workdir.parent / f"{workdir.name}.stalled"
    probe = [sys.executable, str(HERE / "stall_probe.py"), *map(str, KILL_AT), str(marker)]
    victim = subprocess.Popen(
        [*probe, *flags], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV
    )
    try:
        deadline = time.time() + 240
        while not marker.exists():
            assert victim.poll() is None, victim.stderr.read().decode()[-3000:]
            assert time.time() < deadline, "the training run never reached the kill point"
            time.sleep(0.1)
        os.kill(victim.pid, signal.SIGKILL)
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert sorted(os.listdir(workdir / "backup")) == ["latest.weights.h5", "training_metadata.json"]


def checkpoint(path: Path) -> dict[str, np.ndarray]:
    """Every array in a Keras .weights.h5 file, by its path in the file."""
    arrays = {}

    def keep(name, item):
        if isinstance(item, h5py.Dataset):
            arrays[name] = item[()]

    with h5py.File(path, "r") as f:
        f.visititems(keep)
    return arrays


def batch_losses(workdir: Path, newest_only: bool = False) -> dict[int, float]:
    """The training batch_loss logged to TensorBoard by step: by every run in `workdir`, or
    by the last one only."""
    import tensorflow as tf

    files = sorted((workdir / "tensorboard" / "train").glob("events.out.*"), key=os.path.getmtime)
    losses = {}
    for path in files[-1:] if newest_only else files:
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == "batch_loss":
                    losses[event.step] = float(tf.make_ndarray(value.tensor))
    return losses


CASES = {
    "digits-bp": ("moving_digits.py", ["--config.mode=bp"]),
    "digits-streamed": ("moving_digits.py", ["--config.data.stream_chunks=2"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_killed_mid_epoch_and_rerun_ends_with_the_uninterrupted_weights(case, tmp_path):
    config, overrides = CASES[case]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_to_the_end(command(config, straight, overrides))
    kill_mid_epoch(command(config, resumed, overrides), resumed)
    run_to_the_end(command(config, resumed, overrides))  # the same command again: it resumes

    last = f"checkpoints/epoch_{EPOCHS:03d}.weights.h5"
    expected, actual = checkpoint(straight / last), checkpoint(resumed / last)
    assert sorted(actual) == sorted(expected)
    assert any(name.startswith("optimizer/") for name in expected)
    different = [name for name in expected if not np.array_equal(actual[name], expected[name])]
    assert not different, f"{len(different)} of {len(expected)} arrays differ: {different[:5]}"
    assert not (resumed / "backup").exists()  # the finished run removed its backup
    # Its summary says where it resumed; the history it lists starts there.
    summary = json.loads((resumed / "summary.json").read_text())
    assert summary["first_epoch"] == KILL_AT[0] + 1
    assert len(summary["history"]["loss"]) == EPOCHS - KILL_AT[0]
    assert json.loads((straight / "summary.json").read_text())["first_epoch"] == 1

    # TensorBoard's steps go on from the backup: the rerun logs the losses of the epochs it
    # ran after the steps of those before.
    logged = batch_losses(straight)
    steps = sorted(logged)
    assert len(steps) == EPOCHS * BATCHES
    rerun = batch_losses(resumed, newest_only=True)
    assert min(rerun) > steps[KILL_AT[0] * BATCHES - 1]
    assert [rerun[s] for s in sorted(rerun)] == [logged[s] for s in steps[KILL_AT[0] * BATCHES :]]
