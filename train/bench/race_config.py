"""The race to a fixed accuracy (`python -m train.race`): the reference workload or a variant.

    python -m train.race                                       # every point: hours
    python -m train.race --config.image_sizes='(64,)' --config.stages='(8,)'   # one point
    python -m train.race --config=train/bench/race_config.py:quick   # minutes
    python -m train.race --config=train/bench/race_config.py:tiny \
        --out=/tmp/race --docs=/tmp/race.md                     # seconds: the CI smoke run

A point is an image size (`image_sizes`) and a depth (`stages`: the VGG classifier of
train/configs/moving_digits.py cut into that many stages); at each point and seed
(`seeds`) every contender trains once per epoch budget (`budgets`, each with its own
cosine decay), on `train_clips` clips, validated on `val_clips` other clips of the same
generator after every epoch and tested on `test_clips` test clips at its end. Its time
to `target` validation accuracy is its best over its budgets. Each run has its own
process (`process_per_run`), at the contender's best of `thread_settings` for the point
(frames/s over `sweep_rounds` rounds of `sweep_steps` steps, a fresh process each; one
setting: no sweep).

The points (`image_sizes`, `stages`, `seeds`) may be narrowed to split the race across
processes or days: the rest of the config is the workload, which every run in one
results folder shares.
"""

import ml_collections

from train.configs import moving_digits

VARIANTS = ("", "quick", "tiny")
MAX_STAGES = 8  # models.vgg_classifier is cut into 2 to 8 stages
POINT_FIELDS = ("image_sizes", "stages", "seeds")  # narrowing them keeps the workload
NOT_WORKLOAD = (*POINT_FIELDS, "run_timeout")  # what runs may differ in


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The reference race; "quick" takes minutes, "tiny" seconds (the end-to-end test)."""
    config = ml_collections.ConfigDict()
    config.image_sizes = (32, 64)
    config.stages = (5, 8)
    config.seeds = (0, 1, 2)
    config.budgets = (4, 8, 12)  # epochs: each contender's grid, its best one counts
    config.target = 0.85  # validation clip accuracy to reach
    config.train_clips = 512  # as `make train`
    config.val_clips = 256  # the next clips of the training generator: never trained on
    config.test_clips = 256
    config.digits_variant = ""  # of train/configs/moving_digits.py: "" or "tiny"
    config.thread_settings = ((0, 0), (1, 2), (2, 1), (1, 1))  # (inter-op, intra-op)
    config.sweep_steps = 4  # fit steps per timed round of the thread sweep
    config.sweep_rounds = 3
    config.run_timeout = 7200  # seconds for one training run
    # Each run in a fresh process: every run pays the same start-up (off: a contender's
    # budgets at one seed share one process, a new model each; the smoke run saves seconds).
    config.process_per_run = True

    if variant == "quick":
        config.image_sizes = (32,)
        config.stages = (5,)
        config.seeds = (0,)
        config.budgets = (2, 4)
        config.target = 0.3
        config.train_clips = 256
        config.val_clips = 64
        config.test_clips = 64
        config.thread_settings = ((0, 0), (2, 1))
        config.sweep_steps = 2
        config.sweep_rounds = 2
    elif variant == "tiny":
        config.image_sizes = (16,)
        config.stages = (3,)
        config.seeds = (0,)
        config.budgets = (1, 2)
        config.target = 0.0  # reached at the first epoch: the test knows every figure's source
        config.train_clips = 8
        config.val_clips = 4
        config.test_clips = 4
        config.digits_variant = "tiny"
        config.thread_settings = ((0, 0),)  # one setting: no sweep
        config.run_timeout = 600
        config.process_per_run = False
    elif variant:
        raise ValueError(f"Unknown race variant {variant!r}; expected one of {VARIANTS}.")
    return config


def workload(config: ml_collections.ConfigDict) -> dict:
    """The config without its points and time-out: what every run of one results folder
    shares."""
    return {k: v for k, v in config.to_dict().items() if k not in NOT_WORKLOAD}


def _ints(values, low: int = 1) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) and v >= low for v in values)


def _increasing(values, low: int = 1) -> bool:
    return bool(values) and _ints(values, low) and list(values) == sorted(set(values))


def check(config: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming the first field the race cannot run with."""
    for field in ("train_clips", "val_clips", "test_clips", "sweep_steps", "sweep_rounds"):
        if not _ints([config[field]]):
            raise ValueError(f"config.{field}: expected an integer >= 1; got {config[field]!r}.")
    if not isinstance(config.process_per_run, bool):
        raise ValueError(
            f"config.process_per_run: expected True or False; got {config.process_per_run!r}."
        )
    if not _ints([config.run_timeout]):
        raise ValueError(
            f"config.run_timeout: expected seconds, an integer >= 1; got {config.run_timeout!r}."
        )
    if not _increasing(config.image_sizes):
        raise ValueError(
            f"config.image_sizes: expected increasing image sides >= 1; got {config.image_sizes!r}."
        )
    if not _increasing(config.stages, low=2) or max(config.stages) > MAX_STAGES:
        raise ValueError(
            f"config.stages: expected increasing stage counts from 2 to {MAX_STAGES} (the VGG "
            f"classifier's cuts); got {config.stages!r}."
        )
    if not _increasing(config.seeds, low=0):
        raise ValueError(f"config.seeds: expected increasing seeds >= 0; got {config.seeds!r}.")
    if not _increasing(config.budgets):
        raise ValueError(
            f"config.budgets: expected increasing epoch counts >= 1; got {config.budgets!r}."
        )
    target = config.target
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 <= target <= 1:
        raise ValueError(
            f"config.target: expected a validation accuracy from 0 to 1; got {target!r}."
        )
    settings = config.thread_settings
    pairs = all(
        isinstance(s, (tuple, list)) and len(s) == 2 and _ints(s, low=0) for s in settings or ()
    )
    if not settings or not pairs or len({tuple(s) for s in settings}) != len(settings):
        raise ValueError(
            "config.thread_settings: expected distinct (inter-op, intra-op) pairs of integers "
            f">= 0 (0: TensorFlow's choice); got {settings!r}."
        )
    try:
        moving_digits.get_config(config.digits_variant)
    except ValueError:
        raise ValueError(
            "config.digits_variant: expected a variant of train/configs/moving_digits.py "
            f"('' or 'tiny'); got {config.digits_variant!r}."
        ) from None
