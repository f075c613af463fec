"""The package's face: what `import keras_sideways as ks` offers."""

import subprocess
import sys

import keras_sideways as ks


def test_data_builders_are_reachable_from_the_package():
    clips = ks.data.moving_digits("test", clip_length=3, image_size=16, num_clips=2, batch_size=2)
    video, label = next(iter(clips))
    assert video.shape == (2, 3, 16, 16, 1) and label.shape == (2,)
    assert ks.data.tfds_video is not None and ks.data.video_folder is not None


def test_import_does_not_load_tensorflow_datasets_until_data_is_used():
    code = (
        "import sys, keras_sideways as ks\n"
        "assert 'tensorflow_datasets' not in sys.modules\n"
        "ks.data.moving_digits\n"
        "assert 'tensorflow_datasets' in sys.modules\n"
        "ks.inference.classify_video_file  # as README names it: loaded on first use\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_every_public_name_resolves():
    for name in ks.__all__:
        assert getattr(ks, name) is not None, name
