"""The benchmark's workload: the reference one of `make bench`, or a smaller variant.

    make bench                                                  # the reference workload
    python -m train.benchmark --quick                           # variant "quick"
    python -m train.benchmark --config=train/bench/config.py:tiny \
        --json=/tmp/bench.json --docs=/tmp/performance.md      # variant "tiny": CI smoke
    python -m train.benchmark --config.batch=4 --config.memory_lengths='(8, 16)'

The race to an accuracy is `python -m train.race` (its config: train/bench/race_config.py).
"""

import ml_collections

VARIANTS = ("", "quick", "tiny")
MAX_STAGES = 8  # models.vgg_classifier is cut into 2 to 8 stages
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")  # as config.precision of training


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The reference workload; "quick" is CI-sized (minutes), "tiny" a seconds-long smoke run."""
    config = ml_collections.ConfigDict()
    config.num_stages = 5
    config.image_size = 64
    config.channels = 3
    config.batch = 8
    config.frames = 16
    config.classes = 10
    config.width = 16
    config.steps = 16  # fit steps per timed round: long enough that fit's own overhead fades
    config.rounds = 5
    config.memory_lengths = (8, 32, 128)
    # Each step's memory in a fresh process (off: one process measures every step, a new
    # model each, its peak reset just before the step; the smoke run saves a dozen starts).
    config.memory_process_per_step = True
    config.stream_chunk = 8  # the streaming pipeline takes long clips in chunks of this many
    config.scaling_stages = 8
    config.scaling_devices = (2, 4, 8)
    config.scaling_repeats = 2  # serial, then concurrent stages, timed this many times each
    config.thread_settings = ((0, 0), (1, 2), (2, 1), (1, 1))  # (inter-op, intra-op)
    config.chunk_sizes = (1, 2, 4, 8, 16)  # the pipeline's ticks per block, timed in step 3
    # Keras dtype policies: beyond float32, BP and the pipeline are timed and measured again.
    config.precisions = ("float32", "mixed_bfloat16")

    if variant == "quick":
        config.num_stages = 3
        config.image_size = 16
        config.batch = 2
        config.frames = 8
        config.width = 4
        config.steps = 2
        config.rounds = 2
        config.memory_lengths = (4, 8, 16)
        config.stream_chunk = 4
        config.thread_settings = ((0, 0), (1, 1))
        config.chunk_sizes = (1, 4, 8)
    elif variant == "tiny":
        config.num_stages = 3
        config.image_size = 8
        config.batch = 2
        config.frames = 4
        config.width = 2
        config.steps = 1
        config.rounds = 2
        config.memory_lengths = (4,)
        config.memory_process_per_step = False
        config.stream_chunk = 2
        config.scaling_stages = 4
        config.scaling_devices = (2, 4)
        config.scaling_repeats = 1
        config.thread_settings = ((0, 0),)
        config.chunk_sizes = (2,)
    elif variant:
        raise ValueError(f"Unknown benchmark variant {variant!r}; expected one of {VARIANTS}.")
    return config


def _ints(values, low: int = 1) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) and v >= low for v in values)


def check(config: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming the first field the benchmark cannot run with."""
    for field in (
        "image_size",
        "channels",
        "batch",
        "frames",
        "classes",
        "steps",
        "rounds",
        "stream_chunk",
        "scaling_repeats",
    ):
        if not _ints([config[field]]):
            raise ValueError(f"config.{field}: expected an integer >= 1; got {config[field]!r}.")
    for field in ("num_stages", "scaling_stages"):
        if not _ints([config[field]]) or not 2 <= config[field] <= MAX_STAGES:
            raise ValueError(
                f"config.{field}: expected an integer from 2 to {MAX_STAGES} (the VGG "
                f"classifier's cuts); got {config[field]!r}."
            )
    if not _ints([config.width], low=2):
        raise ValueError(f"config.width: expected an integer >= 2; got {config.width!r}.")
    if not isinstance(config.memory_process_per_step, bool):
        raise ValueError(
            "config.memory_process_per_step: expected True or False; got "
            f"{config.memory_process_per_step!r}."
        )
    lengths = config.memory_lengths
    if not lengths or not _ints(lengths) or list(lengths) != sorted(set(lengths)):
        raise ValueError(
            f"config.memory_lengths: expected increasing clip lengths >= 1; got {lengths!r}."
        )
    if not config.scaling_devices or not _ints(config.scaling_devices):
        raise ValueError(
            f"config.scaling_devices: expected device counts >= 1; got {config.scaling_devices!r}."
        )
    settings = config.thread_settings
    pairs = all(
        isinstance(s, (tuple, list)) and len(s) == 2 and _ints(s, low=0) for s in settings or ()
    )
    if not settings or not pairs:
        raise ValueError(
            "config.thread_settings: expected (inter-op, intra-op) pairs of integers >= 0 "
            f"(0: TensorFlow's choice); got {settings!r}."
        )
    chunks = config.chunk_sizes
    if not chunks or not _ints(chunks) or list(chunks) != sorted(set(chunks)):
        raise ValueError(
            f"config.chunk_sizes: expected increasing ticks per block >= 1; got {chunks!r}."
        )
    precisions = config.precisions
    if (
        not precisions
        or precisions[0] != "float32"
        or len(set(precisions)) != len(precisions)
        or not set(precisions) <= set(PRECISIONS)
    ):
        raise ValueError(
            "config.precisions: expected 'float32' first, then any of "
            f"{', '.join(PRECISIONS[1:])}, each once; got {precisions!r}."
        )
