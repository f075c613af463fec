"""Using an exported SavedModel: load it with clear errors, classify a video file."""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from keras_sideways.data import video_files
from keras_sideways.export import METADATA_FILE


def load_export(path: str | os.PathLike):
    """Loads a SavedModel written by `export_saved_model`; returns (model, metadata dict).

    Raises:
        ValueError: naming `path`, when it is missing, not an export, or corrupt.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ValueError(f"No exported model at {path}: not a folder.")
    meta_path = os.path.join(path, METADATA_FILE)
    if not os.path.exists(os.path.join(path, "saved_model.pb")) or not os.path.exists(meta_path):
        raise ValueError(
            f"{path} is not a keras_sideways export: it needs saved_model.pb and {METADATA_FILE}."
        )
    try:
        with open(meta_path) as f:
            metadata = json.load(f)
        model = tf.saved_model.load(path)
    except (OSError, ValueError, tf.errors.OpError) as error:
        raise ValueError(f"Cannot load the exported model at {path}: {error}") from error
    return model, metadata


def classify_video_file(model_dir: str | os.PathLike, video_path: str | os.PathLike, top: int = 5):
    """The `top` classes of a video file's centre clip, as [(class name, probability)].

    The clip is cut, resized and converted as at training time, from the export's metadata.
    Raises ValueError naming the folder, the file or `top` for an export that is missing or
    not a classifier, a file that cannot be decoded, or a `top` below 1.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top: expected how many classes to return, an int >= 1; got {top!r}.")
    model, meta = load_export(model_dir)
    if not meta.get("class_names"):
        raise ValueError(f"The model at {model_dir} is not a classifier (no class names).")
    clip_length, stride = meta["clip_length"], meta["temporal_stride"]
    height, width, channels = meta["frame_shape"]
    try:
        frames = video_files.count_frames(video_path)
        span = (clip_length - 1) * stride + 1
        start = max((frames - span) // 2, 0)
        indices = np.minimum(start + np.arange(clip_length) * stride, frames - 1)
        clip = video_files.read_clip(video_path, indices, (height, width))
    except video_files.decode_errors() as error:
        raise ValueError(f"Cannot decode the video {video_path}: {error}") from error
    clip = clip.astype(np.float32) / 255.0
    if channels == 1:
        clip = clip.mean(axis=-1, keepdims=True)
    probabilities = model.serve(tf.constant(clip[None]))["probabilities"].numpy()[0]
    order = np.argsort(probabilities)[::-1][:top]
    return [(meta["class_names"][i], float(probabilities[i])) for i in order]
