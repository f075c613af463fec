"""Experiment configs: one get_config() per file (ml_collections)."""

from ml_collections import config_dict


def add_test_fields(data: config_dict.ConfigDict) -> config_dict.ConfigDict:
    """Gives `data` the validation split's own clip length, batch size and seed, unset
    (None: training's), so `--config.data.test_seed=5` can set them. A run recorded before
    these fields existed reads as the same config: an absent field and None are equal."""
    data.test_clip_length = config_dict.placeholder(int)  # None: data.clip_length
    data.test_batch_size = config_dict.placeholder(int)  # None: data.batch_size
    data.test_seed = config_dict.placeholder(int)  # None: config.seed (0 is a seed)
    return data
