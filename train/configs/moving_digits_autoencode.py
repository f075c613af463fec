"""Per-frame reconstruction of moving digits with an encoder-decoder cut into stages.

    python -m train.train --config train/configs/moving_digits_autoencode.py \
        --workdir runs/digits_autoencode
"""

import ml_collections

from train.configs import moving_digits


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """Moving digits, reconstruction: frames as targets, MSE, encoder-decoder stages."""
    config = moving_digits.get_config(variant)
    config.task = "reconstruction"
    config.model.name = "encoder_decoder"
    config.model.num_stages = 4
    return config
