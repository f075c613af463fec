"""Action recognition on your own videos: one subfolder per class under data.root.

    python -m train.train --config train/configs/video_folder.py --workdir runs/my_videos \
        --config.data.root=/path/to/videos [--config.data.val_root=/path/to/val_videos]
"""

import ml_collections

from train.configs import add_test_fields, moving_digits


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """Clips of 16 frames at 64x64 from data.root (mp4, avi, mkv, webm)."""
    config = moving_digits.get_config(variant)
    data = ml_collections.ConfigDict()
    data.name = "video_folder"
    data.root = ""  # required
    data.val_root = ""  # defaults to root, scored on centre clips
    data.clip_length = 16 if not variant else 4
    data.temporal_stride = 1
    data.image_size = 64 if not variant else 16
    data.channels = 3  # 1: grey (the BT.601 luma)
    data.batch_size = 8 if not variant else 2
    data.stream_chunks = 0  # c >= 2: c clips long videos, streamed in chunks (README)
    add_test_fields(data)  # data.test_clip_length, test_batch_size, test_seed
    config.data = data
    config.model.width = 16 if not variant else 2
    return config
