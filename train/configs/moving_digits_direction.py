"""Which way do the digits move? Moving digits labelled right, left, up or down.

The digits move on a torus from starts uniform over the canvas, so no single frame tells the
direction: a per-frame model such as `vgg_classifier` is at chance (25%). It is the baseline
for models that see motion (see `keras_sideways.data.digits` and README.md).

    python -m train.train --config train/configs/moving_digits_direction.py \
        --workdir runs/digits_direction
    python -m train.train --config train/configs/moving_digits_direction.py \
        --workdir runs/digits_direction_bp --config.mode=bp
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
    config.model.name = "vgg_classifier"  # per-frame: the at-chance baseline
    return config
