"""Moving digits: against a plain step-by-step reference, determinism, stride, splits, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_conv_stages

import keras_sideways as ks
from keras_sideways.data import digits

SMALL = {"clip_length": 3, "image_size": 16, "num_clips": 5}


def splat(image, position, canvas):
    """The 8x8 digit added onto a canvas at a sub-pixel (y, x), split over four pixels."""
    frame = np.zeros((canvas + 1, canvas + 1))
    (y, x), size = position, image.shape[0]
    iy, ix = int(np.floor(y)), int(np.floor(x))
    for dy, wy in ((0, 1 - (y - iy)), (1, y - iy)):
        for dx, wx in ((0, 1 - (x - ix)), (1, x - ix)):
            frame[iy + dy : iy + dy + size, ix + dx : ix + dx + size] += wy * wx * image
    return frame[:canvas, :canvas]


def reference_clip(split, seed, index, clip_length, temporal_stride, speed, canvas=16):
    """Clip `index` rendered plainly: the digit steps frame by frame, flipping at the walls.

    On a 16-pixel canvas the digits keep their native 8x8 size, so no resizing is involved.
    """
    with np.load(digits.DIGITS_FILE) as data:
        images, labels = data["images"], data["labels"]
    pool = digits.digit_split_indices(split)
    rng = np.random.default_rng([seed, 0 if split == "train" else 1, index])
    digit = pool[rng.integers(0, len(pool), size=1)[0]]
    limit = canvas - 8
    position = rng.random((1, 2))[0] * limit
    angle = rng.random(1)[0] * 2 * np.pi
    velocity = speed * np.array([np.sin(angle), np.cos(angle)])
    frames = []
    for t in range((clip_length - 1) * temporal_stride + 1):
        if t % temporal_stride == 0:
            frames.append(splat(images[digit] / 16.0, position, canvas))
        position = position + velocity
        for axis in range(2):
            if position[axis] > limit:
                position[axis], velocity[axis] = 2 * limit - position[axis], -velocity[axis]
            if position[axis] < 0:
                position[axis], velocity[axis] = -position[axis], -velocity[axis]
    return np.stack(frames), labels[digit]


@pytest.mark.parametrize("split, seed, speed, stride", [("train", 0, 1.0, 1), ("test", 3, 2.5, 2)])
def test_matches_plain_reference(split, seed, speed, stride):
    video, labels = digits.moving_digit_clips(
        split,
        clip_length=6,
        temporal_stride=stride,
        image_size=16,
        num_clips=3,
        seed=seed,
        speed=speed,
    )
    for i in range(3):
        frames, label = reference_clip(split, seed, i, 6, stride, speed)
        np.testing.assert_allclose(video[i, ..., 0], frames, atol=1e-6)
        assert labels[i] == label


def test_dataset_shapes_dtypes_and_range():
    dataset = digits.moving_digits(
        "test", clip_length=4, image_size=(12, 20), canvas_size=24, batch_size=2, num_clips=5
    )
    batches = list(dataset)
    assert [v.shape[0] for v, _ in batches] == [2, 2, 1]
    video, label = batches[0]
    assert video.shape == (2, 4, 12, 20, 1) and video.dtype == tf.float32
    assert label.shape == (2,) and label.dtype == tf.int32
    assert 0.0 <= float(tf.reduce_min(video)) and float(tf.reduce_max(video)) <= 1.0
    assert float(tf.reduce_max(video)) > 0.5  # a digit is drawn, not an empty canvas
    assert set(np.concatenate([y.numpy() for _, y in batches])) <= set(range(digits.NUM_CLASSES))


def test_frames_target_is_the_clip_and_channels_repeat():
    dataset = digits.moving_digits(
        "train", target="frames", channels=3, batch_size=5, shuffle=False, **SMALL
    )
    video, target = next(iter(dataset))
    assert video.shape == (5, 3, 16, 16, 3) and target.dtype == tf.float32
    np.testing.assert_array_equal(video, target)
    np.testing.assert_array_equal(video[..., 0], video[..., 2])


def test_unshuffled_dataset_is_the_numpy_clips():
    video, labels = digits.moving_digit_clips("test", seed=4, **SMALL)
    batches = list(digits.moving_digits("test", seed=4, batch_size=2, **SMALL))
    np.testing.assert_array_equal(np.concatenate([v for v, _ in batches]), video)
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), labels)


def test_same_seed_same_bits_other_seed_other_clips():
    first = digits.moving_digit_clips("train", seed=7, num_digits=2, **SMALL)
    again = digits.moving_digit_clips("train", seed=7, num_digits=2, **SMALL)
    other = digits.moving_digit_clips("train", seed=8, num_digits=2, **SMALL)
    assert first[0].tobytes() == again[0].tobytes()
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


def test_shuffled_order_follows_seed_and_epoch_and_changes_each_epoch():
    def epochs(dataset):
        return [np.concatenate([y.numpy() for _, y in dataset]) for _ in range(2)]

    kwargs = {"clip_length": 2, "image_size": 16, "num_clips": 32, "seed": 1}
    first = epochs(digits.moving_digits("train", batch_size=32, **kwargs))
    again = epochs(digits.moving_digits("train", batch_size=32, **kwargs))
    unshuffled = digits.moving_digit_clips("train", **kwargs)[1]
    np.testing.assert_array_equal(first, again)
    resumed = digits.moving_digits("train", batch_size=32, **kwargs)
    resumed.epoch.assign(1)  # as callbacks.SetDataEpoch does: epoch 1 without epoch 0
    np.testing.assert_array_equal(epochs(resumed)[0], first[1])
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first[0], unshuffled)
    np.testing.assert_array_equal(np.sort(first[0]), np.sort(unshuffled))


def test_stride_takes_every_nth_frame_of_the_same_trajectory():
    kwargs = {"image_size": 16, "num_clips": 5, "batch_size": 5, "shuffle": False, "speed": 1.5}
    strided = digits.moving_digits("train", clip_length=3, temporal_stride=2, **kwargs)
    dense = digits.moving_digits("train", clip_length=5, temporal_stride=1, **kwargs)
    strided_video, dense_video = next(iter(strided))[0], next(iter(dense))[0]
    np.testing.assert_array_equal(strided_video, dense_video[:, ::2])
    assert not np.array_equal(dense_video[:, 0], dense_video[:, 1])  # the digits do move


@pytest.mark.parametrize("speed, stride", [(0.75, 1), (0.75, 2), (0.0, 1)])
def test_digits_move_speed_times_stride_pixels_per_frame(speed, stride):
    video, _ = digits.moving_digit_clips(
        clip_length=12, temporal_stride=stride, image_size=32, num_clips=4, speed=speed
    )
    frames = video[..., 0]
    grid = np.arange(32)
    mass = frames.sum(axis=(2, 3))
    centre = np.stack(
        [(frames.sum(axis=3) * grid).sum(-1) / mass, (frames.sum(axis=2) * grid).sum(-1) / mass],
        axis=-1,
    )
    step = np.linalg.norm(np.diff(centre, axis=1), axis=-1)
    # The digit never leaves the canvas, so its centroid moves exactly as it does: by
    # speed * stride, or less in a frame where it bounces off a wall.
    assert step.max() <= speed * stride + 1e-4
    np.testing.assert_allclose(np.median(step), speed * stride, atol=1e-4)


def test_resize_matrix_keeps_constants_and_averages_when_shrinking():
    np.testing.assert_array_equal(digits.resize_matrix(8, 8), np.eye(8))
    for size_in, size_out in [(8, 24), (32, 12), (5, 3)]:
        np.testing.assert_allclose(digits.resize_matrix(size_in, size_out).sum(axis=1), 1.0)
    stripes = np.arange(16) % 2  # the finest pattern: aliases to all-0 or all-1 if sampled
    np.testing.assert_allclose((digits.resize_matrix(16, 8) @ stripes)[1:-1], 0.5)


def test_train_and_test_digit_images_are_disjoint():
    train, test = digits.digit_split_indices("train"), digits.digit_split_indices("test")
    assert len(np.intersect1d(train, test)) == 0
    np.testing.assert_array_equal(np.union1d(train, test), np.arange(1797))
    assert len(train) == 1438 and len(test) == 359
    np.testing.assert_array_equal(digits.digit_split_indices("validation"), test)


def test_the_shipped_digits_are_scikit_learns():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")  # not a dependency
    shipped = sklearn_datasets.load_digits()
    images, labels = digits._digit_images()
    np.testing.assert_array_equal(images, shipped.images / 16.0)
    np.testing.assert_array_equal(labels, shipped.target)


def test_the_digits_are_ten_classes_of_8x8_images_in_0_1():
    images, labels = digits._digit_images()
    assert images.shape == (1797, 8, 8) and images.min() == 0.0 and images.max() == 1.0
    np.testing.assert_array_equal(np.unique(images * 16), np.arange(17))  # sixteenths
    counts = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]  # load_digits' classes
    np.testing.assert_array_equal(np.bincount(labels), counts)


@pytest.mark.parametrize("change", ["pixel", "missing", "not_npz"])
def test_a_changed_or_missing_digits_file_is_refused_naming_it(tmp_path, monkeypatch, change):
    with np.load(digits.DIGITS_FILE) as stored:
        images, labels = stored["images"].copy(), stored["labels"]
    path = tmp_path / "digits.npz"
    if change == "pixel":
        images[0, 3, 3] = 16 - images[0, 3, 3]
        np.savez_compressed(path, images=images, labels=labels)
    elif change == "not_npz":
        path.write_text("not an archive")
    monkeypatch.setattr(digits, "DIGITS_FILE", path)
    digits._digit_images.cache_clear()
    try:
        message = "not the one this package ships" if change == "pixel" else "Cannot read"
        with pytest.raises(OSError, match=message) as raised:
            digits.moving_digit_clips("train", clip_length=2, image_size=16, num_clips=1)
        assert str(path) in str(raised.value)
    finally:
        digits._digit_images.cache_clear()


@pytest.mark.filterwarnings("ignore:`shuffle=True` was passed")  # Keras' fit default
def test_feeds_sideways_fit():
    dataset = digits.moving_digits(clip_length=4, image_size=16, num_clips=16, batch_size=8)
    model = ks.SidewaysModel(tiny_conv_stages(classes=digits.NUM_CLASSES), mode="sideways")
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    history = model.fit(dataset, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"split": "dev"}, "split to be one of 'train', 'validation', 'test'; got 'dev'"),
        ({"clip_length": 0}, "clip_length to be a positive integer; got 0"),
        ({"temporal_stride": -1}, "temporal_stride to be a positive integer; got -1"),
        ({"batch_size": 0}, "batch_size to be a positive integer; got 0"),
        ({"image_size": 0}, "image_size to be a positive int or a .* got 0"),
        ({"image_size": 4}, r"canvas_size \(defaults to image_size\) of at least 8"),
        ({"num_digits": 0}, "num_digits to be a positive integer; got 0"),
        ({"num_clips": -2}, "num_clips to be a positive integer; got -2"),
        ({"speed": -1.0}, r"speed >= 0 \(pixels per frame\); got -1.0"),
        ({"target": "mask"}, "target to be one of 'label', 'direction', 'frames'; got 'mask'"),
        ({"channels": 2}, "channels to be one of 1, 3; got 2"),
        ({"seed": -1}, "seed to be a non-negative integer; got -1"),
        ({"speed": "fast"}, "speed >= 0 .* got 'fast'"),
        ({"speed": True}, "speed >= 0 .* got True"),
        ({"channels": True}, "channels to be one of 1, 3; got True"),
        ({"channels": 3.0}, "channels to be one of 1, 3; got 3.0"),
        ({"shuffle": "no"}, "shuffle to be True or False .*got 'no'"),
        ({"shuffle": 1}, "shuffle to be True or False .*got 1"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        digits.moving_digits(**{"num_clips": 2, "clip_length": 2, **kwargs})


STEPS = {"right": (0, 1), "left": (0, -1), "up": (-1, 0), "down": (1, 0)}


def moves(clip, step):
    """Whether every frame of `clip` [time, h, w] is the one before rolled by `step` (dy, dx)."""
    return all(
        np.allclose(np.roll(clip[t - 1], step, axis=(0, 1)), clip[t], atol=1e-6)
        for t in range(1, len(clip))
    )


@pytest.mark.parametrize("speed, stride", [(1.0, 1), (2.0, 1), (1.0, 3)])
def test_direction_clips_move_the_labelled_way_and_backwards_the_opposite_way(speed, stride):
    video, labels = digits.moving_digit_clips(
        "test",
        clip_length=5,
        temporal_stride=stride,
        image_size=16,
        num_clips=8,
        speed=speed,
        num_digits=2,
        target="direction",
    )
    np.testing.assert_array_equal(labels, np.arange(8) % 4)  # balanced: clip i is i % 4
    assert digits.classes("direction") == digits.DIRECTIONS == ("right", "left", "up", "down")
    pixels = int(speed * stride)
    for clip, label in zip(video[..., 0], labels):
        direction = digits.DIRECTIONS[label]
        opposite = digits.DIRECTIONS[label ^ 1]
        step = tuple(pixels * s for s in STEPS[direction])
        # On the torus a whole-pixel step is an exact roll, wrapping around the edges.
        assert moves(clip, step)
        assert not moves(clip, tuple(pixels * s for s in STEPS[opposite]))
        # Played backwards, the clip is a clip of the opposite direction.
        assert moves(clip[::-1], tuple(pixels * s for s in STEPS[opposite]))


def test_no_single_frame_reveals_the_direction():
    # Starts are uniform on the torus: in every class the mean frame is flat (no position is
    # likelier than another) and the same. Bouncing digits, whose mean frame is brighter in
    # the middle, show the statistic can tell.
    def class_means(video, labels):
        return np.stack([video[labels == c].mean(axis=(0, 1))[..., 0] for c in range(4)])

    kwargs = {"clip_length": 2, "image_size": 16, "num_clips": 2000, "seed": 3}
    means = class_means(*digits.moving_digit_clips(target="direction", **kwargs))
    assert means.std(axis=(1, 2)).max() < 0.02
    assert np.abs(means - means.mean(axis=0)).max() < 0.04
    bounce_video, bounce_labels = digits.moving_digit_clips(**kwargs)
    assert class_means(bounce_video, bounce_labels % 4).std(axis=(1, 2)).min() > 0.05


def test_direction_dataset_is_deterministic_and_clip_i_ignores_num_clips():
    kwargs = {"clip_length": 3, "image_size": (12, 20), "canvas_size": 24, "target": "direction"}
    video, labels = next(iter(digits.moving_digits("train", num_clips=6, batch_size=6, **kwargs)))
    assert video.shape == (6, 3, 12, 20, 1) and labels.dtype == tf.int32
    again = digits.moving_digit_clips("train", num_clips=6, **kwargs)
    more = digits.moving_digit_clips("train", num_clips=9, **kwargs)
    np.testing.assert_array_equal(np.sort(labels), np.sort(again[1]))
    assert (
        again[0].tobytes() == digits.moving_digit_clips("train", num_clips=6, **kwargs)[0].tobytes()
    )
    np.testing.assert_array_equal(more[0][:6], again[0])
    assert not np.array_equal(again[0], digits.moving_digit_clips("test", num_clips=6, **kwargs)[0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"speed": 0.0}, r"more than 0 and less than half the canvas's shorter side \(8 pixels\)"),
        ({"speed": 4.0, "temporal_stride": 2}, r"got speed=4.0 \* temporal_stride=2 on canvas"),
        ({"target": "velocity"}, "target to be one of 'label', 'direction', 'frames'"),
        ({"clip_length": 1}, "clip_length >= 2 for target='direction'.*got clip_length=1"),
    ],
)
def test_bad_direction_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        digits.moving_digits(
            **{"num_clips": 2, "clip_length": 2, "image_size": 16, "target": "direction", **kwargs}
        )


@pytest.mark.parametrize(
    "kwargs, still",
    [
        ({"image_size": 8}, "at all"),
        ({"image_size": 16, "canvas_size": 8}, "at all"),
        ({"image_size": 16, "canvas_size": (8, 32)}, "along its shorter side"),
    ],
)
@pytest.mark.parametrize("target", ["label", "frames"])
def test_a_canvas_the_digits_fill_warns_that_they_cannot_move(kwargs, still, target):
    with pytest.warns(UserWarning, match=f"cannot move {still}.*at least 9 pixels a side"):
        dataset = digits.moving_digits(
            "train", clip_length=3, num_clips=2, speed=2.0, target=target, **kwargs
        )
    if still == "at all":  # what the warning is about: every frame of a clip the same
        video = np.concatenate([v.numpy() for v, _ in dataset])
        assert np.abs(np.diff(video, axis=1)).max() == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"image_size": 9},  # the smallest canvas whose digits can move
        {"image_size": 8, "speed": 0.0},  # still clips asked for
        {"image_size": 8, "target": "direction"},  # a torus: the digits wrap around
    ],
)
def test_a_canvas_with_room_to_move_does_not_warn(kwargs, recwarn):
    dataset = digits.moving_digits("train", clip_length=3, num_clips=4, **kwargs)
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]
    video = np.concatenate([v.numpy() for v, _ in dataset])
    assert (np.abs(np.diff(video, axis=1)).max() > 0) == (kwargs.get("speed") != 0.0)
