"""Clip classification on moving digits (embedded, no download): the default experiment.

    python -m train.train --config train/configs/moving_digits.py --workdir runs/moving_digits
    python -m train.train --config train/configs/moving_digits.py --workdir runs/digits_bp \
        --config.mode=bp --config.data.temporal_stride=2
    python -m train.train --config train/configs/moving_digits.py --workdir runs/digits_stream \
        --config.data.stream_chunks=4   # streamed, with a stash (no drain: a stream has no end)
    python -m train.train --config train/configs/moving_digits.py --workdir runs/digits_paper \
        --config.stash_depth=0   # the paper's Sideways
    python -m train.train --config train/configs/moving_digits.py --workdir runs/digits_bf16 \
        --config.precision=mixed_bfloat16   # bfloat16 compute, float32 weights (README)
    python -m train.train --config train/configs/moving_digits.py:tiny --workdir /tmp/smoke

Sideways runs the depth-parallel pipeline engine, in blocks of ticks ("auto": as many
blocks of a clip as cores, at least 2), with one inter-op thread per core ("auto"
threads): its stages work side by side, where BP runs one op at a time. On this 2-core
machine that trains faster than BP and than the batched engine (docs/performance.md).
`--config.engine=batched` runs BP's cost; `--config.pipeline_chunk=1` runs tick by tick.
"""

import ml_collections

from train.configs import add_test_fields


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The default config; variant "tiny" is a seconds-long smoke run."""
    config = ml_collections.ConfigDict()
    config.task = "classification"
    config.mode = "sideways"  # or "bp"
    config.engine = "pipeline"  # Sideways' depth-parallel engine: faster here (docstring)
    config.pipeline_chunk = "auto"  # its ticks per block: "auto", or 1 (tick by tick), 2, ...
    # Sideways' settings (README, "Choosing the settings"): the defaults, a full stash and the
    # drain, train with BP's gradient, pipelined; stash_depth "0" with drain "auto" is the
    # paper's Sideways.
    config.stash_depth = "full"  # "full", or a depth: "0" (the paper's), "2", ...
    config.drain = "auto"  # fill and drain every clip: "auto" (where no frame gap is left),
    # "true" or "false"
    config.delay_lines = "auto"  # with model.skips: hold skips in relays ("auto": with a
    # full stash), "true" or "false" (undelayed: the skips' fresher errors)
    config.delay_warmup_steps = 0  # Sideways' delay-aware learning rate: steps (0: off; README)
    config.precision = "float32"  # or "mixed_bfloat16", "mixed_float16" (README)
    config.threads = "auto"  # TensorFlow's "inter,intra" op threads, e.g. "2,1"; "0,0": defaults
    config.seed = 0
    config.epochs = 10
    config.learning_rate = 1e-3
    config.lr_schedule = "cosine"  # decays to 0 over the run; or "constant"
    config.log_every_steps = 10
    config.verbose = 2
    config.export_dir = "saved_models"  # the SavedModel's folder; "": no SavedModel

    config.data = ml_collections.ConfigDict()
    config.data.name = "moving_digits"
    config.data.clip_length = 16  # >= 3x the stages: the pipeline's fill is a fraction of a clip
    config.data.temporal_stride = 1
    config.data.image_size = 32
    config.data.channels = 1
    config.data.batch_size = 8  # 128 frames a step, as 16 clips of 8 were
    config.data.speed = 1.0  # pixels per frame: the smoothness knob
    config.data.num_digits = 1
    config.data.num_train_clips = 512
    config.data.num_test_clips = 256
    config.data.stream_chunks = 0  # >= 2: train on videos this many clips long, streamed
    add_test_fields(config.data)  # data.test_clip_length, test_batch_size, test_seed

    config.model = ml_collections.ConfigDict()
    config.model.name = "vgg_classifier"
    config.model.num_stages = 5
    config.model.width = 16
    config.model.temporal_window = 1  # > 1: the stem sees that many frames (sees motion)
    config.model.temporal_shift = 0.0  # > 0: stages above the first shift channels in time
    config.model.skips = False  # True: skip connections between stages (skip_classifier, unet)

    if variant == "tiny":
        config.epochs = 1
        config.verbose = 0
        config.log_every_steps = 1
        config.data.clip_length = 5
        config.data.image_size = 16
        config.data.batch_size = 4
        config.data.num_train_clips = 8
        config.data.num_test_clips = 4
        config.model.width = 2
    elif variant:
        raise ValueError(f"Unknown variant {variant!r}; expected '' or 'tiny'.")
    return config
