"""Run in a subprocess by test_cluster.py: the client of a 2-worker cluster on loopback.

    python cluster_probe.py first PORT0 PORT1 OUTDIR PID
    python cluster_probe.py resume PORT0 PORT1 OUTDIR

`first` places a 3-stage model's stages on the two workers and compares its
pseudo-gradients (and BP's gradients), a checkpoint and an export with the same model in
this process alone; it then trains the model alone with BackupAndRestore (the uninterrupted
weights, saved), and on the workers, killing the process PID (worker 1) with SIGKILL
mid-epoch, and records the error. `resume` runs the same training command again, which
resumes from the backup, and compares its weights with the uninterrupted ones. Each prints
one JSON line.
"""

import json
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from conftest import random_video, tiny_conv_stages  # noqa: E402

import keras_sideways as ks  # noqa: E402

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def make(placement, engine="pipeline", mode="sideways"):
    # One block size wherever the stages are (auto cuts by the devices or the cores).
    keras.utils.set_random_seed(0)
    model = ks.SidewaysModel(
        tiny_conv_stages(num_stages=3),
        mode=mode,
        engine=engine,
        placement=placement,
        pipeline_chunk=3,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=LOSS)
    return model


def rel_error(a, b):
    """The largest relative error of one list of arrays against another, per variable."""
    return max(float(np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-30)) for x, y in zip(a, b))


def identical(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def values(model):
    return [v.numpy() for v in model.trainable_variables]


def gradients(placement, outdir):
    video, labels = random_video(batch=2, time=6, seed=3), np.array([0, 2])
    report = {"placement": placement}
    for mode in ("sideways", "bp"):
        placed, local = make(placement, mode=mode), make(None, mode=mode)
        remote = [np.asarray(g) for g in placed.compute_gradients(video, labels)]
        alone = [np.asarray(g) for g in local.compute_gradients(video, labels)]
        report[mode] = {
            "rel_error": rel_error(remote, alone),
            "identical": identical(remote, alone),
            "size": max(float(np.abs(g).max()) for g in alone),
        }
    report["weight_devices"] = sorted({v.value.device for v in placed.trainable_variables})
    report["engine"] = make(placement, engine="auto").resolved_engine
    balanced = make("auto")  # costs measured here, stages balanced over the workers
    balanced.build(video.shape)
    report["auto"] = balanced.devices
    checkpoint = os.path.join(outdir, "placed.weights.h5")
    placed.save_weights(checkpoint)
    reloaded = make(placement, mode="bp")
    reloaded.build(video.shape)
    for variable in reloaded.trainable_variables:
        variable.assign(np.zeros(variable.shape))
    reloaded.load_weights(checkpoint)
    report["checkpoint_identical"] = identical(values(reloaded), values(placed))
    placed.export(os.path.join(outdir, "export"))
    np.save(os.path.join(outdir, "outputs.npy"), np.asarray(local(video)))
    np.save(os.path.join(outdir, "clips.npy"), video)
    return report


class Kill(keras.callbacks.Callback):
    """Kills a worker at (epoch, batch), as if its machine went down mid-epoch."""

    def __init__(self, epoch, batch, pid):
        super().__init__()
        self.at, self.pid = (epoch, batch), pid

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            os.kill(self.pid, signal.SIGKILL)


def train(model, workdir, backup, callbacks=()):
    """The training command's part: fit for 3 epochs with backups in workdir/backup."""
    video, labels = random_video(batch=8, time=6, seed=21), np.arange(8) % 3
    model.fit(
        video,
        labels,
        batch_size=2,
        epochs=3,
        shuffle=False,
        verbose=0,
        callbacks=[ks.callbacks.BackupAndRestore(os.path.join(workdir, backup)), *callbacks],
    )
    return values(model)


if __name__ == "__main__":
    task, ports, outdir = sys.argv[1], sys.argv[2:4], sys.argv[4]
    ks.cluster.connect({"worker": [f"127.0.0.1:{port}" for port in ports]})
    stages_on = ks.cluster.spread(ks.cluster.task_devices(), 3)  # stages 0, 1 | 2
    uninterrupted = os.path.join(outdir, "uninterrupted.npz")
    if task == "first":
        report = gradients(stages_on, outdir)
        np.savez(uninterrupted, *train(make(None), outdir, "alone"))
        try:
            train(make(stages_on), outdir, "backup", [Kill(1, 1, int(sys.argv[5]))])
            report["error"] = None
        except Exception as error:  # what the training command would end with
            report["error"] = f"{type(error).__name__}: {error}"
    else:
        resumed = train(make(stages_on), outdir, "backup")
        expected = list(np.load(uninterrupted).values())
        report = {
            "rel_error": rel_error(resumed, expected),
            "identical": identical(resumed, expected),
        }
    print(json.dumps(report))
