"""tfds_video under `tfds.testing.mock_data`: presets, clip choice, padding, determinism, errors.

mock_data generates random examples from the real builders' features, offline: UCF-101
videos of 5 to 49 random 256x256 frames, Moving MNIST sequences of 20 64x64 frames.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_sideways.data import tfds_videos

EXAMPLES = 3


class TinyLabelledVideos(tfds.core.GeneratorBasedBuilder):
    """A video dataset that is no preset, with one ClassLabel: its label is the target."""

    VERSION = tfds.core.Version("1.0.0")
    LABELS = {"action": 3}  # ClassLabel features: their classes

    def _info(self):
        labels = {k: tfds.features.ClassLabel(num_classes=n) for k, n in self.LABELS.items()}
        clip = tfds.features.Video(shape=(None, 8, 8, 3))
        return tfds.core.DatasetInfo(
            builder=self, features=tfds.features.FeaturesDict({"clip": clip, **labels})
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(), "test": self._generate_examples()}

    def _generate_examples(self):
        for i in range(EXAMPLES):
            labels = {k: i % n for k, n in self.LABELS.items()}
            yield str(i), {"clip": np.zeros((4, 8, 8, 3), np.uint8), **labels}


class TwoLabelVideos(TinyLabelledVideos):
    """Two ClassLabels: which one is the target is the user's to say."""

    LABELS = {"action": 3, "scene": 2}


@pytest.fixture(autouse=True)
def mock_tfds():
    with tfds.testing.mock_data(num_examples=EXAMPLES):
        yield


def raw_videos(name, key):
    """The mocked videos, every frame decoded, uint8 [time, height, width, channels] each.

    Read encoded, as the builder reads them: mock_data encodes its random frames only
    when asked for undecoded features, and UCF-101's JPEG changes them.
    """
    dataset = tfds.builder(name).as_dataset(
        split="test", shuffle_files=False, decoders={key: tfds.decode.SkipDecoding()}
    )
    return [
        np.stack([tf.io.decode_image(frame).numpy() for frame in example[key]])
        for example in dataset
    ]


def clips_of(dataset):
    return np.concatenate([video.numpy() for video, _ in dataset])


@pytest.mark.parametrize(
    "name, split, channels, target_rank",
    [
        ("ucf101", "train", 3, 1),
        ("ucf101", "test", 3, 1),
        ("moving_mnist", "train", 1, 5),
        ("moving_mnist", "test", 1, 5),
    ],
)
def test_presets_shapes_dtypes_and_range(name, split, channels, target_rank):
    dataset = tfds_videos.tfds_video(
        name, split, clip_length=3, temporal_stride=2, image_size=(8, 12), batch_size=2
    )
    batches = list(dataset)
    assert [v.shape[0] for v, _ in batches] == [2, 1]
    video, target = batches[0]
    assert video.shape == (2, 3, 8, 12, channels) and video.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(video)) and float(tf.reduce_max(video)) <= 1.0
    assert target.shape.rank == target_rank
    if target_rank == 1:
        assert target.dtype == tf.int32
        assert all(0 <= y < 101 for y in target.numpy())
    else:
        np.testing.assert_array_equal(target, video)  # moving_mnist: predict the clip


def test_evaluation_takes_the_centre_clip():
    # 20 frames, span (4 - 1) * 3 + 1 = 10: the clip starts at frame 5.
    dataset = tfds_videos.tfds_video(
        "moving_mnist", "test", clip_length=4, temporal_stride=3, image_size=64
    )
    expected = [video[5:15:3] / 255.0 for video in raw_videos("moving_mnist", "image_sequence")]
    np.testing.assert_allclose(clips_of(dataset), np.stack(expected), atol=1e-6)


def test_training_clips_are_strided_runs_from_random_starts():
    dataset = tfds_videos.tfds_video(
        "moving_mnist", "train", clip_length=3, temporal_stride=2, image_size=64, shuffle=False
    )
    raw = raw_videos("moving_mnist", "image_sequence")
    starts = []
    for _ in range(2):  # two epochs
        for clip, video in zip(clips_of(dataset), raw, strict=True):
            matches = [s for s in range(20 - 4) if np.allclose(clip, video[s : s + 5 : 2] / 255.0)]
            assert matches, "the clip is not 3 frames, 2 apart, of its video"
            starts.append(matches[0])
    assert len(set(starts)) > 1


def test_training_is_deterministic_per_seed_and_epoch():
    def clips(seed, epoch=0):
        dataset = tfds_videos.tfds_video(
            "moving_mnist", "train", clip_length=2, image_size=16, seed=seed
        )
        dataset.epoch.assign(epoch)  # as callbacks.SetDataEpoch does
        return clips_of(dataset)

    np.testing.assert_array_equal(clips(3), clips(3))
    assert not np.array_equal(clips(3), clips(4))
    np.testing.assert_array_equal(clips(3, epoch=1), clips(3, epoch=1))
    assert not np.array_equal(clips(3), clips(3, epoch=1))


def test_short_videos_repeat_their_last_frame():
    # Mocked UCF-101 videos have at most 49 frames; this clip spans 61.
    dataset = tfds_videos.tfds_video(
        "ucf101", "test", clip_length=4, temporal_stride=20, image_size=256
    )
    for clip, video in zip(clips_of(dataset), raw_videos("ucf101", "video"), strict=True):
        assert len(video) < 61
        expected = video[np.minimum([0, 20, 40, 60], len(video) - 1)] / 255.0
        np.testing.assert_allclose(clip, expected, atol=1e-6)


def test_evaluation_clips_are_cached_and_stable():
    dataset = tfds_videos.tfds_video("ucf101", "test", clip_length=2, image_size=8)
    np.testing.assert_array_equal(clips_of(dataset), clips_of(dataset))


def test_other_dataset_finds_its_video_feature():
    dataset = tfds_videos.tfds_video(
        "starcraft_video/brawl_64", "test", clip_length=2, image_size=8, batch_size=3
    )
    video, target = next(iter(dataset))
    assert video.shape == (3, 2, 8, 8, 3)
    np.testing.assert_array_equal(target, video)


@pytest.mark.parametrize("split", ["train", "test"])
def test_other_dataset_with_one_class_label_yields_its_labels(split):
    dataset = tfds_videos.tfds_video(
        "tiny_labelled_videos", split, clip_length=2, image_size=8, batch_size=3
    )
    assert dataset.element_spec[1] == tf.TensorSpec((None,), tf.int32)
    video, label = next(iter(dataset))
    assert video.shape == (3, 2, 8, 8, 3)
    assert all(0 <= y < 3 for y in label.numpy())


def test_other_dataset_with_two_class_labels_needs_label_key_or_frames():
    kwargs = dict(clip_length=2, image_size=8, batch_size=3)
    with pytest.raises(ValueError, match=r"label_key to name one of .*\(action, scene\)"):
        tfds_videos.tfds_video("two_label_videos", "test", **kwargs)
    _, label = next(
        iter(tfds_videos.tfds_video("two_label_videos", "test", label_key="scene", **kwargs))
    )
    assert label.dtype == tf.int32 and all(0 <= y < 2 for y in label.numpy())
    video, target = next(
        iter(tfds_videos.tfds_video("two_label_videos", "test", target="frames", **kwargs))
    )
    np.testing.assert_array_equal(target, video)


@pytest.mark.parametrize(
    "split", ["train[:10%]", "train+validation", "validation[:2]", "test[:50%]", "test[:]"]
)
def test_moving_mnist_refuses_slices_of_its_aliased_splits(split):
    # Its "train" and "test" are parts of TFDS's "test": a slice of either, passed on to
    # TFDS, failed there or overlapped the preset's "train" (mock_data ignores slices).
    with pytest.raises(ValueError, match=r"one of 'train' \(test\[:90%\]\), 'validation'"):
        tfds_videos.tfds_video("moving_mnist", split, clip_length=2, image_size=8)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("moving_mnist", {"shuffle": "no"}),
        ("moving_mnist", {"training": "no"}),
        ("ucf101", {"cache": "no"}),
        ("ucf101", {"training": 0}),
    ],
)
def test_flags_must_be_bools(name, kwargs):
    ((flag, value),) = kwargs.items()
    with pytest.raises(ValueError, match=f"Expected {flag} to be True or False.*got {value!r}"):
        tfds_videos.tfds_video(name, "test", clip_length=2, image_size=8, **kwargs)


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        (
            "ucf101",
            {"split": "validation"},
            "Unknown split 'validation' for ucf101: expected one of test, train",
        ),
        ("moving_mnist", {"split": "dev[:5]"}, "split for moving_mnist to be one of.*got 'dev"),
        ("ucf101", {"target": "mask"}, "target to be one of 'label', 'frames'; got 'mask'"),
        ("ucf101", {"clip_length": 0}, "clip_length to be a positive integer; got 0"),
        ("ucf101", {"temporal_stride": 0}, "temporal_stride to be a positive integer; got 0"),
        ("ucf101", {"batch_size": -1}, "batch_size to be a positive integer; got -1"),
        ("ucf101", {"image_size": (0, 8)}, r"image_size to be .* got \(0, 8\)"),
        (
            "ucf101",
            {"video_key": "label"},
            r"video_key to name a Video feature of ucf101 \(video\); got 'label'",
        ),
        (
            "no_such_videos",
            {},
            r"Unknown dataset 'no_such_videos': expected a preset \(ucf101, moving_mnist\)",
        ),
        (
            "abstract_reasoning",
            {},
            "video_key to name a Video feature .*context, answers.*none given",
        ),
        ("starcraft_video", {"target": "label"}, "label_key to name a ClassLabel feature"),
    ],
)
def test_bad_arguments(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tfds_videos.tfds_video(name, **kwargs)


def test_split_names():
    assert tfds_videos.split_names("train[:10%]+test") == ["train", "test"]
    assert tfds_videos.split_names("test") == ["test"]


@pytest.mark.parametrize("name", list(tfds_videos.PRESETS))
def test_a_presets_real_builder_reads_its_download_list_offline(name, tmp_path):
    # Outside mock_data a builder finds its checksums through importlib_resources, which
    # TFDS imports but does not declare (tensorflow/datasets#11212): setup.cfg does, or the
    # real UCF-101 fails with ModuleNotFoundError before it downloads anything.
    builder = tfds.builder(name, data_dir=str(tmp_path))  # a preset is its TFDS name
    assert all(url.startswith(("http://", "https://")) for url in builder.url_infos)
