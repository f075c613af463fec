"""Skip connections between stages, run exactly as the study runs the chain (issue 21).

`models.skip_classifier` on the study's moving-digits classification at a stride and a
number of stages, and `models.unet` on its real-footage reconstruction, each in BP and
Sideways mode, with the study's settings (`train/study/config.py`; "tiny" for a smoke run):

    python -m train.study.skips --experiment=classification --stride=1 --stages=8
    python -m train.study.skips --experiment=classification --stride=2 --stages=5
    python -m train.study.skips --experiment=reconstruction

Each run prints one JSON line (experiment, mode, seed, test accuracy or MSE, seconds) and
appends it to `--out`. Not yet a section of `make reproduce` (docs/study.md).
"""

from __future__ import annotations

import json
import time

from absl import app, flags

from train.study import config as study_config
from train.study import runs

_EXPERIMENT = flags.DEFINE_enum(
    "experiment", "classification", ["classification", "reconstruction"], "What to run."
)
_STRIDE = flags.DEFINE_integer("stride", 1, "Temporal stride (classification).")
_STAGES = flags.DEFINE_integer("stages", 8, "Stages of the skip classifier.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2", "3", "4"], "Seeds to run.")
_MODES = flags.DEFINE_list("modes", ["bp", "sideways"], "Modes to run.")
_VARIANT = flags.DEFINE_string("variant", "", "The study's settings variant ('tiny', ...).")
_OUT = flags.DEFINE_string("out", "", "A file to append each run's JSON line to.")


def classification_run(settings, stride: int, stages: int, seed: int, mode: str) -> dict:
    """The study's classification run of `models.skip_classifier` (config.model.skips)."""
    from train import builders, recipe

    point = study_config.Point(
        stride, stages, settings["clip_length"], settings["speed"], settings["epochs"]
    )
    config = runs.classification_config(settings, mode, seed, point)
    config.model.skips = True
    start = time.perf_counter()
    done = recipe.run(config, callbacks=lambda train, model: builders.data_callbacks(train))
    return dict(
        experiment="classification",
        model="skip_classifier",
        stride=stride,
        num_stages=stages,
        mode=mode,
        seed=seed,
        accuracy=float(done.history.history["val_accuracy"][-1]),
        seconds=time.perf_counter() - start,
    )


def reconstruction_run(settings, seed: int, mode: str, clips: dict) -> dict:
    """The study's reconstruction run of `models.unet` (config.model.skips), on `clips`
    (`runs.footage_clips`)."""
    chain_config = runs.reconstruction_config

    def with_skips(*args, **kwargs):
        config = chain_config(*args, **kwargs)
        config.model.skips = True
        return config

    runs.reconstruction_config = with_skips  # reconstruction_run builds its config there
    try:
        record, _ = runs.reconstruction_run(settings, mode, seed, clips, show=[0])
    finally:
        runs.reconstruction_config = chain_config
    return dict(
        experiment="reconstruction",
        model="unet",
        num_stages=settings["recon_stages"],
        mode=mode,
        seed=seed,
        mse=record["mse"],
        psnr=record["psnr"],
        seconds=record["seconds"],
    )


def main(argv):
    del argv
    settings = study_config.get_config(_VARIANT.value)
    clips = runs.footage_clips(settings) if _EXPERIMENT.value == "reconstruction" else None
    for seed in (int(s) for s in _SEEDS.value):
        for mode in _MODES.value:
            if clips is None:
                record = classification_run(settings, _STRIDE.value, _STAGES.value, seed, mode)
            else:
                record = reconstruction_run(settings, seed, mode, clips)
            line = json.dumps(record)
            print(line, flush=True)
            if _OUT.value:
                with open(_OUT.value, "a") as f:
                    f.write(line + "\n")


if __name__ == "__main__":
    app.run(main)
