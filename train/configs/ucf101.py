"""UCF101 action recognition through tensorflow-datasets (downloads about 6.5 GB).

python -m train.train --config train/configs/ucf101.py --workdir runs/ucf101
"""

import ml_collections

from train.configs import add_test_fields, moving_digits


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """UCF101 clips of 16 frames at 64x64, 101 classes, a temporal VGG cut into 5 stages."""
    config = moving_digits.get_config(variant)
    config.epochs = 30 if not variant else config.epochs
    config.learning_rate = 1e-3
    data = ml_collections.ConfigDict()
    data.name = "tfds"
    data.dataset = "ucf101"
    data.train_split = "train"
    data.val_split = "test"
    data.data_dir = ""  # tfds default when empty
    data.num_classes = 101
    data.clip_length = 16 if not variant else 5
    data.temporal_stride = 1
    data.image_size = 64 if not variant else 16
    data.channels = 3
    data.batch_size = 8 if not variant else 2
    data.stream_chunks = 0  # c >= 2: c clips long videos, streamed in chunks (README)
    add_test_fields(data)  # data.test_clip_length, test_batch_size, test_seed
    config.data = data
    config.model.width = 16 if not variant else 2
    config.model.temporal_window = 3  # actions are motion: the stem sees 3 frames,
    config.model.temporal_shift = 0.125  # and every later stage shifts 1/8 of its channels
    return config
