"""The study's runs: every model trained in both modes, written raw to `study.json`.

`run_study(config, out_dir)` trains, for every seed, each classification set-up of the
config (moving digits, `vgg_classifier`), the reconstruction of real footage
(`encoder_decoder`) and the tasks that need motion (per-frame and temporal models), once
with BP and once with Sideways: the same initial weights, optimizer, data and frames.
The skip section trains the models with skip connections between stages
(`skip_classifier`, `unet`) the same way, with BP, the paper's Sideways and
SidewaysModel's defaults (`config.SKIP_RUNS`). The real-time section first times both
methods on the reconstruction model, each in fresh processes at its best thread pools
(`train.child_process`), then trains both on the same stream of footage, the slower one
on the clips it keeps up with (`stream_keep`). It rewrites `out_dir/study.json` after
every run ("complete": false until the end) and saves the reconstructions it shows as
`reconstructions.npz`.
Every training run goes through `train.recipe.run` (models and optimizers from
`train.builders.build_model`).
"""

from __future__ import annotations

import importlib
import os
import platform
import shutil
import subprocess
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import ml_collections
import numpy as np

from train import child_process
from train.results import ResultsError, read_json, replacing, write_json
from train.study.config import (
    MODE_LABELS,
    MODES,
    MOTION_DEFAULTS,
    MOTION_MODELS,
    MOTION_WAYS,
    SKIP_MODES,
    SKIP_RUNS,
    Point,
    Settings,
    changed_run_fields,
    check_config,
    classification_keys,
    clip_plan,
    control_points,
    fix_modes,
    fix_points,
    fix_runs_at,
    fixes,
    realtime_seeds,
    realtime_ways,
    skip_points,
    study_points,
)
from train.study.summary import stream_rates

RESULTS_FILE = "study.json"
SHOWN_FILE = "reconstructions.npz"

Log = Callable[[str], None]


def frames_seen(num_clips: int, clip_length: int, epochs: int) -> int:
    """Training frames one run goes through: the same for both modes."""
    return num_clips * clip_length * epochs


def psnr(mse: float | np.ndarray) -> np.ndarray:
    """Peak signal-to-noise ratio in dB of frames in [0, 1] with the given MSE."""
    return 10.0 * np.log10(1.0 / np.maximum(np.asarray(mse, np.float64), 1e-10))


def sideways_options(fix: dict | None) -> dict:
    """The Sideways fields of a run's config: `fix`'s, else the paper's Sideways (no stash,
    no drain; delay lines "auto", so none)."""
    fix = fix or {}
    return dict(
        stash_depth=fix.get("stash_depth", 0),
        drain=fix.get("drain", False),
        delay_lines=fix.get("delay_lines", "auto"),
        delay_warmup_steps=fix.get("delay_warmup_steps", 0),
    )


def classification_config(
    settings: Settings,
    mode: str,
    seed: int,
    point: Point,
    fix: dict | None = None,
    skips: bool = False,
) -> ml_collections.ConfigDict:
    """The `builders.build_datasets`/`build_model` config of one classification run (with
    `skips`, of `models.skip_classifier`: config.model.skips).

    Training clips have the point's clip length, with as many clips and clips per batch as
    keep the frames per epoch and per step of the settings; the test clips are always the
    same: the settings' clip length and batch, seed 0.
    """
    num_clips, batch_size = clip_plan(settings, point.clip_length)
    return ml_collections.ConfigDict(
        dict(
            task="classification",
            mode=mode,
            engine="auto",
            seed=seed,
            epochs=point.epochs,
            learning_rate=settings["learning_rate"],
            lr_decay_steps=0
            if (fix or {}).get("constant_rate")
            else point.epochs * -(-num_clips // batch_size),
            data=dict(
                name="moving_digits",
                clip_length=point.clip_length,
                temporal_stride=point.stride,
                image_size=settings["image_size"],
                channels=1,
                batch_size=batch_size,
                speed=point.speed,
                num_digits=1,
                num_train_clips=num_clips,
                num_test_clips=settings["num_test_clips"],
                test_clip_length=settings["clip_length"],
                test_batch_size=settings["batch_size"],
                test_seed=0,
                stream_chunks=(fix or {}).get("stream_chunks", 0),
            ),
            model=dict(
                name="skip_classifier" if skips else "vgg",
                num_stages=point.num_stages,
                width=settings["width"],
                skips=skips,
            ),
            **sideways_options(fix),
        )
    )


def classification_run(
    settings: Settings,
    mode: str,
    seed: int,
    point: Point,
    fix: tuple[str, dict] | None = None,
    skips: bool = False,
) -> dict:
    """Trains vgg_classifier on moving digits at `point` in `mode`; returns its record.

    With `fix` (a name and its training-config fields, `config.fixes`), Sideways runs
    with that fix: a record of experiment "fix", without gradient fidelity. With `skips`,
    the model is `skip_classifier`: a record of experiment "skips", without fidelity.
    """
    import keras

    from keras_sideways import data
    from keras_sideways.callbacks import GradientFidelity
    from train import builders, recipe

    start = time.perf_counter()
    config = classification_config(settings, mode, seed, point, fix[1] if fix else None, skips)
    fidelity = mode == "sideways" and not fix and not skips

    def callbacks(train, model) -> list:
        made = builders.data_callbacks(train)
        if not fidelity:
            return made
        d = config.data
        held = data.moving_digits(
            "test",
            clip_length=point.clip_length,
            temporal_stride=point.stride,
            image_size=d.image_size,
            speed=point.speed,
            num_clips=d.num_test_clips,
            batch_size=settings["fidelity_clips"],
            seed=0,
        )
        every = settings["fidelity_every"]
        return [*made, GradientFidelity(held.take(1), every_n_steps=every, log_dir=None)]

    done = recipe.run(config, callbacks=callbacks)  # the same weights, data and order
    history = done.history
    record = dict(
        experiment="skips" if skips else "fix" if fix else "classification",
        mode=mode,
        seed=seed,
        **(dict(fix=fix[0]) if fix else {}),
        **(dict(model="skip_classifier") if skips else {}),
        **point._asdict(),
        batch_size=config.data.batch_size,
        accuracy=float(history.history["val_accuracy"][-1]),
        loss=float(history.history["val_loss"][-1]),
        history=_history(history.history),
        frames_seen=frames_seen(config.data.num_train_clips, point.clip_length, point.epochs),
        fidelity=done.callbacks[-1].history if fidelity else None,
        seconds=time.perf_counter() - start,
    )
    keras.backend.clear_session()
    return record


def _history(history: dict) -> dict:
    keep = ("loss", "accuracy", "val_loss", "val_accuracy")
    return {k: [float(x) for x in v] for k, v in history.items() if k in keep}


def footage_clips(settings: Settings) -> dict[str, np.ndarray]:
    """Train and test clips of real footage, float32 [clips, time, height, width, 3] in [0, 1].

    Each video is cut in time: clips from its first `video_train_fraction` of frames
    train, clips from the rest test, so no test frame is ever trained on. Also returns,
    under "test_video", the index of the video each test clip comes from.
    """
    from keras_sideways.data import footage

    splits = {"train": [], "test": [], "test_video": []}
    length, hop = settings["video_clip_length"], settings["video_clip_hop"]
    for v, name in enumerate(settings["videos"]):
        path = footage.sample_video_path(name)
        size, max_frames = tuple(settings["video_size"]), settings["video_max_frames"] or None
        frames = footage.decoded_frames(path, size, max_frames).astype(np.float32) / 255.0
        count = len(frames)
        cut = int(round(settings["video_train_fraction"] * count))
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


def reconstruction_config(
    settings: Settings,
    mode: str,
    seed: int,
    num_train_clips: int,
    fix: dict | None = None,
    engine: str = "auto",
    skips: bool = False,
) -> ml_collections.ConfigDict:
    """The `builders.build_model` config of one reconstruction run (with `fix`'s fields;
    with `skips`, of `models.unet`: config.model.skips)."""
    batch_size = settings["recon_batch_size"]
    return ml_collections.ConfigDict(
        dict(
            task="reconstruction",
            mode=mode,
            engine=engine,
            seed=seed,
            epochs=settings["recon_epochs"],
            learning_rate=settings["recon_learning_rate"],
            lr_decay_steps=settings["recon_epochs"] * -(-num_train_clips // batch_size),
            data=dict(channels=3, batch_size=batch_size),
            model=dict(
                name="unet" if skips else "encoder_decoder",
                num_stages=settings["recon_stages"],
                width=settings["recon_width"],
                skips=skips,
            ),
            **sideways_options(fix),
        )
    )


def reconstruction_run(
    settings: Settings,
    mode: str,
    seed: int,
    clips: dict[str, np.ndarray],
    show: Sequence[int],
    fix: tuple[str, dict] | None = None,
    keep: float | None = None,
    skips: bool = False,
) -> tuple[dict, np.ndarray]:
    """Trains encoder_decoder on `clips` in `mode`; returns its record and the clips `show`n.

    With `fix` (a name and its training-config fields, `config.fixes`), Sideways runs
    with that fix: experiment "reconstruction_fix". With `skips`, the model is `unet`:
    experiment "skips_reconstruction". With `keep` (a fraction), the run is
    one of the real-time setting, experiment "realtime": each epoch's shuffled training
    clips are the stream, and it trains on the clips `stream_keep` picks, its learning
    rate decaying over its own steps.
    """
    import keras
    import tensorflow as tf

    from train import builders, recipe

    start = time.perf_counter()
    train_clips, test_clips = clips["train"], clips["test"]
    taken = stream_keep(len(train_clips), 1.0 if keep is None else keep)
    config = reconstruction_config(
        settings, mode, seed, int(taken.sum()), fix and fix[1], skips=skips
    )
    batch_size = config.data.batch_size

    def datasets(config):
        train = tf.data.Dataset.from_tensor_slices(train_clips)
        train = train.shuffle(len(train_clips), seed=config.seed)
        if keep is not None:  # the stream: each epoch's order, the same in both modes
            taken_tensor = tf.constant(taken)
            train = (
                train.enumerate()
                .filter(lambda i, clip: taken_tensor[i])
                .map(lambda i, clip: clip)
                .apply(tf.data.experimental.assert_cardinality(int(taken.sum())))
            )
        train = train.map(lambda clip: (clip, clip)).batch(batch_size)
        test = tf.data.Dataset.from_tensor_slices((test_clips, test_clips)).batch(batch_size)
        return train, test, builders.DataInfo("reconstruction")

    done = recipe.run(config, datasets=datasets, callbacks=lambda train, model: [])
    history = done.history
    outputs = done.model.predict(test_clips, batch_size=batch_size, verbose=0)
    frame_mse = np.mean((outputs - test_clips) ** 2, axis=(2, 3, 4))  # [clips, time]
    experiment = "realtime" if keep is not None else "reconstruction"
    if skips:
        experiment = f"skips_{experiment}"
    elif fix:
        experiment = "reconstruction_fix"
    stream = {}
    if keep is not None:
        stream = dict(keep=keep, stream_clips=len(train_clips), clips_taken=int(taken.sum()))
    record = dict(
        experiment=experiment,
        mode=mode,
        seed=seed,
        **(dict(fix=fix[0]) if fix else {}),
        **(dict(model="unet") if skips else {}),
        **stream,
        mse=float(np.mean(frame_mse)),
        psnr=float(np.mean(psnr(frame_mse))),
        history=_history(history.history),
        frames_seen=frames_seen(int(taken.sum()), settings["video_clip_length"], config.epochs),
        seconds=time.perf_counter() - start,
    )
    keras.backend.clear_session()
    return record, outputs[list(show)]


def stream_keep(num_clips: int, keep: float) -> np.ndarray:
    """The clips of a stream that a method keeping up with a fraction `keep` trains on.

    The clips arrive one after another; the method takes the first, and while it trains
    on a clip the next ones go by, so it takes clip i when floor(i·keep) > floor((i-1)·keep):
    about keep·num_clips clips, evenly spread (all of them at keep = 1).

    Returns:
        bool [num_clips]: True for each clip trained on.
    """
    if not 0 < keep <= 1:
        raise ValueError(f"keep: expected a fraction in (0, 1]; got {keep!r}.")
    i = np.arange(num_clips)
    return np.floor(i * keep) > np.floor((i - 1) * keep)


def realtime_fps(args: dict) -> list[float]:
    """The work of one child process: training frames/s of the reconstruction model (with
    `args["skips"]`, the U-Net) in `args["mode"]` with `args["fix"]` (Sideways on the
    settings' `realtime_engine`), in each timed round of `bench.runs.fit_fps` on a fixed
    random batch of the footage's clip shape."""
    import tensorflow as tf

    from train import builders
    from train.bench.runs import fit_fps

    settings, mode = args["settings"], args["mode"]
    config = realtime_config(settings, mode, args.get("fix"), args.get("skips", False))
    clip = realtime_clip(settings)
    video = np.random.default_rng(0).random(clip, dtype=np.float32)
    data = tf.data.Dataset.from_tensors((video, video)).repeat()
    model = builders.build_model(config, builders.DataInfo("reconstruction"))
    steps, rounds = settings["realtime_fps_steps"], settings["realtime_fps_rounds"]
    return fit_fps({mode: model}, data, clip[0] * clip[1], steps, rounds)[mode]


def realtime_config(
    settings: Settings, mode: str, fix: dict | None = None, skips: bool = False
) -> ml_collections.ConfigDict:
    """The reconstruction model's config (the U-Net's with `skips`) as the real-time
    settings time it in `mode`, with `fix`'s fields."""
    engine = settings["realtime_engine"] if mode == "sideways" else "auto"
    config = reconstruction_config(
        settings, mode, 0, settings["recon_batch_size"], fix, engine=engine, skips=skips
    )
    config.threads = settings["realtime_threads"]
    return config


def realtime_clip(settings: Settings) -> tuple[int, ...]:
    """The shape of one training batch of footage: [batch, time, height, width, 3]."""
    height, width = settings["video_size"]
    return (settings["recon_batch_size"], settings["video_clip_length"], height, width, 3)


def measure_realtime_fps(settings: Settings, log: Log = print, skips: bool = False) -> dict:
    """Times each of `realtime_ways(skips)` on the reconstruction model (the U-Net with
    `skips`), each at its thread pools, in `realtime_fps_processes` fresh processes per
    method, in turn; returns the record ("realtime_fps", or "skips_realtime_fps")."""
    from train import builders

    start = time.perf_counter()
    ways = realtime_ways(skips)
    configs = {
        name: realtime_config(settings, mode, fix and fix[1], skips)
        for name, (mode, fix) in ways.items()
    }
    threads = {name: str(builders.thread_pools(config)) for name, config in configs.items()}
    fps = {name: [] for name in ways}
    for _ in range(settings["realtime_fps_processes"]):
        for name, (mode, fix) in ways.items():
            args = dict(settings=dict(settings), mode=mode, fix=fix and fix[1], skips=skips)
            fps[name].append(
                child_process.run("train.study.runs:realtime_fps", args, threads[name])
            )
            best = np.max(fps[name][-1])
            log(f"    {_way_label(name)} at threads {threads[name]}: {best:.1f} frames/s")
    return dict(
        experiment="skips_realtime_fps" if skips else "realtime_fps",
        mode=None,  # every way: the record of the section's frame rates
        seed=None,
        engine=builders.run_engine(configs["sideways"]),
        threads=threads,
        clip=list(realtime_clip(settings)),
        fps=fps,
        seconds=time.perf_counter() - start,
    )


def _way_label(name: str) -> str:
    return "Sideways (defaults, exact)" if name == "exact" else MODE_LABELS[name]


def motion_config(
    settings: Settings, task: str, model: str, mode: str, seed: int, fix: str | None = None
) -> ml_collections.ConfigDict:
    """The training config of one motion run: `train/configs/<task>.py` (its tiny variant in
    the tiny study), in `mode` and `seed`, its model per-frame or temporal (`model`); in
    Sideways mode the paper's, or with `fix` MOTION_DEFAULTS, SidewaysModel's defaults."""
    module = importlib.import_module(f"train.configs.{task}")
    config = module.get_config("tiny" if settings["name"] == "tiny" else "")
    config.mode, config.seed, config.verbose = mode, seed, 0
    config.stash_depth, config.drain = "0", "false"  # the paper's Sideways, as in every section
    if fix == MOTION_DEFAULTS:  # a full stash and the drain: whole errors, BP's gradient
        config.stash_depth, config.drain = "full", "auto"
    if settings["motion_epochs"]:
        config.epochs = settings["motion_epochs"]
    if model == "per-frame":  # the same model without its temporal layers
        config.model.temporal_window, config.model.temporal_shift = 1, 0.0
    return config


def motion_run(
    settings: Settings, task: str, model: str, mode: str, seed: int, fix: str | None = None
) -> dict:
    """Trains `task`'s config with the per-frame or temporal model in `mode` (with `fix`
    MOTION_DEFAULTS, Sideways at SidewaysModel's defaults); its record."""
    import keras

    from train import recipe

    start = time.perf_counter()
    done = recipe.run(motion_config(settings, task, model, mode, seed, fix))
    config, history = done.config, done.history
    record = dict(
        experiment="motion",
        task=task,
        model=model,
        mode=mode,
        seed=seed,
        **(dict(fix=fix) if fix else {}),
        epochs=config.epochs,
        accuracy=float(history.history["val_accuracy"][-1]),
        loss=float(history.history["val_loss"][-1]),
        history=_history(history.history),
        seconds=time.perf_counter() - start,
    )
    keras.backend.clear_session()
    return record


def run_study(
    config: ml_collections.ConfigDict,
    out_dir: str | os.PathLike,
    log: Log = print,
    command: str = "python -m train.reproduce",
) -> dict:
    """Runs every experiment in both modes; writes `study.json` and `reconstructions.npz`.

    Args:
        config: the settings (`train/study/config.py`).
        out_dir: the results folder; `study.json` is rewritten after every run, with
            "complete": false until the end.
        log: called with one line of progress per run.
        command: the command line recorded as the one that produced the results.

    Returns:
        The raw results written to `study.json`: settings, environment, every run, timings.
    """
    check_config(config)
    settings = config.to_dict()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    previous = _previous(out_dir)
    changed = changed_run_fields(previous["settings"], settings) if previous else {}
    if changed:
        given = ", ".join(f"{field} {old!r} (now {new!r})" for field, (old, new) in changed.items())
        raise ValueError(
            f"{out_dir / RESULTS_FILE} holds runs made with other settings: {given}; give "
            "another --out, or set them back."
        )
    # Every command that wrote to these results, in order (a rerun of the last, resuming
    # it, adds none); None for results written before they were listed: only the last known.
    commands = previous.get("commands", None if previous.get("runs") else [])
    if commands is not None and command not in commands[-1:]:
        commands = [*commands, command]
    results = dict(
        command=command,
        commands=commands,
        settings=settings,
        environment=previous.get("environment") or _environment(),
        started=previous.get("started") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        complete=False,
        runs=[],
    )
    if "footage" in previous:  # kept in every save, so that an interrupted run keeps it
        results["footage"] = previous["footage"]
    kept_seconds = previous.get("seconds", 0.0)
    plan = _plan(settings, results["runs"])
    missing = []

    def record(run: dict, kept: bool = False) -> None:
        results["runs"].append(run)
        results["seconds"] = kept_seconds + time.perf_counter() - started
        save_results(results, out_dir)
        how = "kept from the last run" if kept else f"{run['seconds']:.0f} s"
        log(
            f"[{len(results['runs'])}/{len(plan)}] {_describe(run)} ({how}; "
            f"{results['seconds'] / 60:.1f} min so far)"
        )

    old_runs = {_key(run): run for run in previous.get("runs", [])}
    code = code_version()
    clips = shown = None
    for section, key, make in plan:
        if key in old_runs:
            record(old_runs[key], kept=True)
        elif section in settings["sections"]:
            if make.__name__ in ("reconstruction", "realtime") and clips is None:
                clips = footage_clips(settings)
                show = _clips_to_show(clips["test_video"], len(settings["videos"]))
                # The clips of runs kept from an interrupted study, with the input again.
                shown = {**_shown_before(out_dir), "input": clips["test"][show]}
                results["footage"] = dict(
                    train_clips=len(clips["train"]),
                    test_clips=len(clips["test"]),
                    shown_clips=show,
                )
            record(dict(make(clips, shown), code=code))
            if make.__name__ == "reconstruction":  # saved as each run ends, as study.json
                with replacing(out_dir / SHOWN_FILE) as tmp:
                    np.savez_compressed(tmp, **shown)  # to redraw the figure
        else:
            missing.append(key)
    # Runs of the file that this plan does not hold (other seeds, say) stay in it.
    planned = {key for _, key, _ in plan}
    results["runs"] += [run for key, run in old_runs.items() if key not in planned]
    if "footage" not in results and "footage" in previous:
        results["footage"] = previous["footage"]
    results["complete"] = not missing
    results["missing"] = len(missing)
    save_results(results, out_dir)
    return results


def _plan(settings: Settings, done: list[dict] | None = None) -> list[tuple[str, tuple, Callable]]:
    """Every run of the study in order: (section, identity, a function that runs it).

    `done` is the list of records the study fills as it goes: the real-time runs read the
    frame rates measured before them there.
    """
    done = [] if done is None else done
    plan = []
    controls = control_points(settings)  # their own section: each section under an hour
    for seed, point in classification_keys(settings):
        section = "controls" if point in controls else "classification"
        for mode in MODES:
            run = lambda clips, shown, m=mode, s=seed, p=point: classification_run(  # noqa: E731
                settings, m, s, p
            )
            plan.append((section, _key(_identity("classification", mode, seed, point)), run))
    for seed in settings["seeds"]:
        for mode in MODES:

            def reconstruction(clips, shown, mode=mode, seed=seed):
                run, outputs = reconstruction_run(settings, mode, seed, clips, shown_clips(clips))
                if seed == settings["seeds"][0]:
                    shown[mode] = outputs
                return run

            plan.append(
                ("reconstruction", _key(_identity("reconstruction", mode, seed)), reconstruction)
            )
    for seed in settings["seeds"]:
        for point in fix_points(settings):
            for fix in fixes(settings):
                if not fix_runs_at(settings, fix[1], point):
                    continue
                for mode in fix_modes(fix[1]):
                    run = lambda clips, shown, m=mode, s=seed, p=point, f=fix: (  # noqa: E731
                        classification_run(settings, m, s, p, f)
                    )
                    key = _key(_identity("fix", mode, seed, point, fix[0]))
                    if (
                        fix[0] in settings.get("few_seed_fixes", ())
                        and seed not in (settings["few_seeds"])
                    ):
                        continue
                    section = "streaming" if "stream_chunks" in fix[1] else "fixes"
                    plan.append((section, key, run))
        for fix in fixes(settings):
            if fix[0] not in settings["fix_recon"]:
                continue

            def reconstruction(clips, shown, seed=seed, fix=fix):
                return reconstruction_run(settings, "sideways", seed, clips, [0], fix)[0]

            key = _key(_identity("reconstruction_fix", "sideways", seed, None, fix[0]))
            plan.append(("fixes", key, reconstruction))
    for seed in settings["motion_seeds"]:
        for task in settings["motion_tasks"]:
            for model in MOTION_MODELS:
                for mode, fix in MOTION_WAYS:
                    run = lambda clips, shown, t=task, m=model, o=mode, s=seed, f=fix: (  # noqa: E731
                        motion_run(settings, t, m, o, s, f)
                    )
                    identity = _identity("motion", mode, seed, None, fix)
                    plan.append(("motion", _key(dict(identity, task=task, model=model)), run))
    plan += _skip_plan(settings)
    for skips in (False, True) if settings.get("realtime_unet") else (False,):
        plan += _realtime_plan(settings, done, skips)
    return plan


def _realtime_plan(
    settings: Settings, done: list[dict], skips: bool
) -> list[tuple[str, tuple, Callable]]:
    """The real-time section's runs for the footage model (the U-Net with `skips`): the
    frame rates of `realtime_ways(skips)`, then per seed each way on the stream, keeping
    up with the clips its rate allows (read from the rates measured before it in `done`)."""
    prefix = "skips_" if skips else ""
    measure = lambda clips, shown: measure_realtime_fps(settings, skips=skips)  # noqa: E731
    plan = [("realtime", _key(dict(experiment=f"{prefix}realtime_fps")), measure)]
    for seed in realtime_seeds(settings):
        for name, (mode, fix) in realtime_ways(skips).items():

            def realtime(clips, shown, name=name, mode=mode, seed=seed, fix=fix):
                measured = [r for r in done if r["experiment"] == f"{prefix}realtime_fps"]
                keep = stream_rates(measured[-1])["keep"][name]
                return reconstruction_run(
                    settings, mode, seed, clips, [0], fix, keep=keep, skips=skips
                )[0]

            key = _key(_identity(f"{prefix}realtime", mode, seed, None, fix and fix[0]))
            plan.append(("realtime", key, realtime))
    return plan


def _skip_plan(settings: Settings) -> list[tuple[str, tuple, Callable]]:
    """The skip section's runs: per seed, at each skip point the skip classifier in every
    skip mode (and the chain's BP and Sideways where no other section runs them), and the
    U-Net in every skip mode (the chain's are section 3's)."""
    plan = []
    chain_points = set(study_points(settings))
    for seed in settings["seeds"]:
        for point in skip_points(settings):
            if point not in chain_points:  # the chain beside it: the same key as section 1's
                for mode in MODES:
                    run = lambda clips, shown, m=mode, s=seed, p=point: (  # noqa: E731
                        classification_run(settings, m, s, p)
                    )
                    key = _key(_identity("classification", mode, seed, point))
                    plan.append(("skips", key, run))
            for name in SKIP_MODES:
                mode, fix = SKIP_RUNS[name]
                run = lambda clips, shown, m=mode, s=seed, p=point, f=fix: (  # noqa: E731
                    classification_run(settings, m, s, p, f, skips=True)
                )
                key = _key(_identity("skips", mode, seed, point, fix and fix[0]))
                plan.append(("skips", key, run))
        if not settings.get("skip_recon"):
            continue
        for name in SKIP_MODES:
            mode, fix = SKIP_RUNS[name]

            def reconstruction(clips, shown, mode=mode, seed=seed, fix=fix):
                return reconstruction_run(settings, mode, seed, clips, [0], fix, skips=True)[0]

            key = _key(_identity("skips_reconstruction", mode, seed, None, fix and fix[0]))
            plan.append(("skips", key, reconstruction))
    return plan


def shown_clips(clips: dict) -> list[int]:
    """The test clips the reconstruction figure shows: one from the middle of each video."""
    return _clips_to_show(clips["test_video"], int(clips["test_video"].max()) + 1)


def _identity(experiment: str, mode: str, seed: int, point: Point | None = None, fix=None):
    run = dict(experiment=experiment, mode=mode, seed=seed)
    if point is not None:
        run.update(point._asdict())
    if fix is not None:
        run["fix"] = fix
    return run


_KEY_FIELDS = ("experiment", "mode", "seed", "fix", *Point._fields)
_MOTION_KEY_FIELDS = ("experiment", "mode", "seed", "fix", "task", "model")


def _key(run: dict) -> tuple:
    """What makes a run the same run: its experiment, mode, seed, set-up and fix (a motion
    run: its task and model; its epochs are its config's)."""
    if run["experiment"] == "motion":
        return tuple((field, run.get(field)) for field in _MOTION_KEY_FIELDS)
    return tuple((field, run.get(field)) for field in _KEY_FIELDS)


def _shown_before(out_dir: Path) -> dict[str, np.ndarray]:
    """The reconstructions an earlier, interrupted run of the study saved, or {}."""
    try:
        return load_shown(out_dir)
    except ResultsError:  # none yet (or unreadable: the runs that remake it will)
        return {}


def _previous(out_dir: Path) -> dict:
    """The results a former run left in `out_dir` (finished or not), or {}."""
    path = out_dir / RESULTS_FILE
    return read_json(path, ("settings", "runs"), "the study's") if path.exists() else {}


def _describe(run: dict) -> str:
    """One progress line's worth of a run: what it trained and its test figure."""
    if run["experiment"] == "motion":
        what = f"motion, {run['task']}, {run['model']} model, {run['epochs']} epochs"
        who = MODE_LABELS[run["mode"]] + (f" ({run['fix']})" if run.get("fix") else "")
        return f"{what}, seed {run['seed']}, {who}: test accuracy {run['accuracy']:.4f}"
    if run["experiment"] in ("realtime_fps", "skips_realtime_fps"):
        figures = ", ".join(
            f"{_way_label(name)} {np.max(fps):.1f} (threads {run['threads'][name]})"
            for name, fps in run["fps"].items()
        )
        model = "U-Net" if run["experiment"].startswith("skips") else "footage model"
        return f"real time: training frames/s of the {model}, {figures}"
    if run["experiment"] in ("realtime", "skips_realtime"):
        what = f"real-time reconstruction, {100 * run['keep']:.0f}% of the stream's clips"
        if run["experiment"] == "skips_realtime":
            what = f"U-Net {what}"
        score = f"test MSE {run['mse']:.5f}"
        who = MODE_LABELS[run["mode"]] + (f" ({run['fix']})" if run.get("fix") else "")
        return f"{what}, seed {run['seed']}, {who}: {score}"
    if run["experiment"] in ("classification", "fix", "skips"):
        what = (
            ("skip_classifier, " if run["experiment"] == "skips" else "")
            + f"stride {run['stride']}, {run['num_stages']} stages, clips of "
            f"{run['clip_length']}, speed {run['speed']:g}, {run['epochs']} epochs"
        )
        score = f"test accuracy {run['accuracy']:.4f}"
    else:
        what = "real-footage reconstruction" + (", U-Net" if run.get("model") == "unet" else "")
        score = f"test MSE {run['mse']:.5f}, PSNR {run['psnr']:.2f} dB"
    who = MODE_LABELS[run["mode"]] + (f" ({run['fix']})" if run.get("fix") else "")
    return f"{what}, seed {run['seed']}, {who}: {score}"


def _clips_to_show(test_video: np.ndarray, num_videos: int) -> list[int]:
    """One test clip per video, from the middle of its test part."""
    show = []
    for v in range(num_videos):
        indices = np.flatnonzero(test_video == v)
        show.append(int(indices[len(indices) // 2]))
    return show


def code_version() -> str | None:
    """The commit of the code that runs, as `git describe --always --dirty` gives it ("-dirty"
    when tracked files differ from it), or None outside a git checkout. Every run records
    it: runs of two versions of the code may not be comparable (data, seeds or numerics
    may have changed between them), and a resumed study keeps runs of earlier versions."""
    root = Path(__file__).resolve().parents[2]
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


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


def save_results(results: dict, folder: str | os.PathLike) -> Path:
    """Writes `results` to `folder/study.json` atomically (`train.results`); returns the path."""
    return write_json(results, Path(folder) / RESULTS_FILE, indent=1)


def load_results(folder: str | os.PathLike) -> dict:
    """The results of a finished study in `folder/study.json`.

    Raises:
        ResultsError (a ValueError): they are missing, unreadable, not the study's, or
            unfinished; one line naming the file.
    """
    path = Path(folder) / RESULTS_FILE
    if not path.exists():
        raise ResultsError(
            f"No study results at {path}: run `python -m train.reproduce` first, or point "
            "--results at a folder holding study.json and reconstructions.npz."
        )
    results = read_json(path, ("settings", "runs", "complete"), "the study's")
    if not results["complete"]:
        raise ResultsError(
            f'The study results at {path} are incomplete ("complete": false, '
            f"{len(results['runs'])} runs): the run that writes them has not finished."
        )
    return results


def load_shown(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """The clips the reconstruction figure shows, from `folder/reconstructions.npz`;
    ResultsError (one line) if the file is missing or unreadable."""
    path = Path(folder) / SHOWN_FILE
    try:
        with np.load(path) as shown:
            return dict(shown)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise ResultsError(
            f"cannot read {path} ({type(error).__name__}: {error}); the study writes it "
            "beside study.json."
        ) from None


def copy_results(source: str | os.PathLike, destination: str | os.PathLike) -> None:
    """Copies `study.json` and `reconstructions.npz` from `source` to `destination`, each
    whole or not at all (`train.results.replacing`)."""
    source, destination = Path(source), Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    for name in (RESULTS_FILE, SHOWN_FILE):
        if (destination / name).resolve() != (source / name).resolve():
            with replacing(destination / name) as staging:
                shutil.copyfile(source / name, staging)


def planned_runs(results: dict) -> list[dict]:
    """The runs of `results` that its settings plan, in the file's order. A study.json
    keeps the runs a rerun did not plan (other seeds, say) for a later one; its summary
    and page are of the settings they state."""
    planned = {key for _, key, _ in _plan(results["settings"])}
    return [run for run in results["runs"] if _key(run) in planned]
