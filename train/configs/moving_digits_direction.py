"""Which way do the digits move? Moving digits labelled right, left, up or down.

The digits move on a torus from starts uniform over the canvas, so no single frame tells the
direction: a per-frame model is at chance (25%). The config's model sees motion: its stem is a
causal temporal convolution over 3 frames and its later stages shift channels in time
(`config.model.temporal_window`, `temporal_shift`; see README.md, "Temporal stages"). The
per-frame baseline is `--config.model.temporal_window=1 --config.model.temporal_shift=0`.

    python -m train.train --config train/configs/moving_digits_direction.py \
        --workdir runs/digits_direction
    python -m train.train --config train/configs/moving_digits_direction.py \
        --workdir runs/digits_direction_bp --config.mode=bp
    python -m train.compare --config train/configs/moving_digits_direction.py \
        --workdir runs/digits_direction                # BP, then Sideways
    python -m train.train --config train/configs/moving_digits_direction.py:tiny \
        --workdir /tmp/smoke
"""

import ml_collections

from train.configs import moving_digits


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """Moving digits classified by direction; variant "tiny" is a seconds-long smoke run."""
    config = moving_digits.get_config(variant)
    config.data.target = "direction"  # or "label": the digit
    # speed * temporal_stride must stay under half the canvas (16 pixels at 32x32).
    config.data.speed = 1.0
    config.model.name = "vgg_classifier"
    config.model.temporal_window = 3  # a video model: the stem sees 3 frames (1: per-frame,
    config.model.temporal_shift = 0.125  # the at-chance baseline, with temporal_shift=0)
    # The paper's Sideways (--config.stash_depth=0): the bottom stages start slow (README,
    # "Delay-aware learning rate"; without it, it learned the direction far less reliably
    # than BP). The defaults leave no frame gap (their temporal stages send whole errors:
    # BP's gradient), so it changes nothing for them.
    config.delay_warmup_steps = 200  # a third of the 640 steps
    return config
