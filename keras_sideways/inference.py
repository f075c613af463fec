"""Using an exported SavedModel: load it with clear errors, classify a video file."""

from __future__ import annotations

import json
import numbers
import os
import warnings

import numpy as np
import tensorflow as tf

from keras_sideways.data import clip_pipeline as cp
from keras_sideways.data import video_files
from keras_sideways.export import METADATA_FILE


def load_export(path: str | os.PathLike):
    """Loads a SavedModel written by `export_saved_model`; returns (model, metadata dict).

    Raises:
        ValueError: naming `path`, when it is missing, not an export, or corrupt.
    """
    path = os.fspath(path)
    meta_path = _export_files(path)
    try:
        with open(meta_path) as f:
            metadata = json.load(f)
        model = tf.saved_model.load(path)
    except Exception as error:  # a damaged file fails in many ways (an IndexError, ...)
        reason = str(error) or type(error).__name__
        if not isinstance(error, (OSError, ValueError, tf.errors.OpError)):
            reason = f"{type(error).__name__}: {reason}"
        raise ValueError(f"Cannot load the exported model at {path}: {reason}") from error
    return model, metadata


def _export_files(path: str) -> str:
    """The metadata file of the export at `path`; ValueError naming `path` where it is no
    folder or lacks an export's files (checked without loading anything)."""
    if not os.path.isdir(path):
        raise ValueError(f"No exported model at {path}: not a folder.")
    meta_path = os.path.join(path, METADATA_FILE)
    if not os.path.exists(os.path.join(path, "saved_model.pb")) or not os.path.exists(meta_path):
        raise ValueError(
            f"{path} is not a keras_sideways export: it needs saved_model.pb and {METADATA_FILE}."
        )
    return meta_path


def classify_video_file(model_dir: str | os.PathLike, video_path: str | os.PathLike, top: int = 5):
    """The `top` classes of a video file's centre clip, as [(class name, probability)].

    The clip is cut, resized and converted as at training time, from the export's metadata
    (`sideways.json`, the `metadata` of `export_saved_model` and the frame shape it adds):
    `clip_length` frames (required), `temporal_stride` apart (default 1: every frame). Its
    `class_names` name the classes; without them they are "class 0", "class 1", ...
    A video shorter than the clip's span has its last frame repeated (as `tfds_video` pads
    a short video; `video_folder` skips one, `arrow_of_time` refuses one), with a
    UserWarning saying how often.

    Raises:
        ValueError: naming the folder, the file or `top`, for an export that is missing,
            not a classifier (its `serve` returns no "probabilities") or without a usable
            `clip_length`, a video file that is missing (checked before the export loads)
            or cannot be decoded, or a `top` below 1.
    """
    if isinstance(top, bool) or not isinstance(top, numbers.Integral) or top < 1:
        raise ValueError(f"top: expected how many classes to return, an int >= 1; got {top!r}.")
    top = int(top)
    _export_files(os.fspath(model_dir))
    if not os.path.isfile(video_path):  # before the export loads (seconds)
        what = "a folder" if os.path.isdir(video_path) else "no such file"
        raise ValueError(f"Cannot read the video {video_path}: {what}.")
    model, meta = load_export(model_dir)
    serve = _classifier_serve(model, model_dir)
    clip_length, stride = _clip_settings(meta, model_dir)
    height, width, channels = meta.get("frame_shape") or _frame_shape(serve)
    try:
        frames = video_files.count_frames(video_path)
        span = cp.clip_span(clip_length, stride)
        start = max((frames - span) // 2, 0)
        wanted = start + np.arange(clip_length) * stride
        indices = np.minimum(wanted, frames - 1)
        if span > frames:  # as training repeats a short video's last frame, but said
            warnings.warn(
                f"The video {video_path} has {frames} frames; a clip of {clip_length} frames "
                f"{stride} apart spans {span}: its last frame stands in for the "
                f"{int(np.sum(wanted > frames - 1))} frames the clip lacks.",
                UserWarning,
                stacklevel=2,
            )
        clip = video_files.read_clip(video_path, indices, (height, width))
    except video_files.decode_errors() as error:
        raise ValueError(f"Cannot decode the video {video_path}: {error}") from error
    clip = clip.astype(np.float32) / 255.0
    if channels == 1:  # grey as the builders make it (it was the mean of R, G and B)
        clip = (clip @ cp.LUMA.astype(np.float32))[..., None]
    probabilities = model.serve(tf.constant(clip[None]))["probabilities"].numpy()[0]
    names = _class_names(meta, len(probabilities), model_dir)
    order = np.argsort(probabilities)[::-1][:top]
    return [(names[i], float(probabilities[i])) for i in order]


def _classifier_serve(model, model_dir):
    """The export's `serve` signature; ValueError, naming what it returns, unless it returns
    clip probabilities (a reconstruction model's returns only its per-frame outputs)."""
    serve = model.signatures.get("serve")
    if serve is None:
        raise ValueError(f"The model at {model_dir} has no serve endpoint to classify with.")
    outputs = serve.structured_outputs
    if "probabilities" not in outputs:
        returned = " and ".join(_described(name, spec) for name, spec in outputs.items())
        raise ValueError(
            f"The model at {model_dir} is not a classifier: its serve returns no "
            f"'probabilities' but only {returned}; predict classifies clips."
        )
    return serve


def _described(name: str, spec) -> str:
    """An output of `serve` in words: "'frames' (per-frame outputs, shape [batch, time, ...])"."""
    if name != "frames":
        return repr(name)
    dims = ["batch", "time", *("?" if d is None else str(d) for d in spec.shape[2:])]
    return f"'frames' (per-frame outputs, shape [{', '.join(dims)}])"


def _clip_settings(meta: dict, model_dir) -> tuple[int, int]:
    """(clip_length, temporal_stride) from the export's metadata; the stride defaults to 1.
    ValueError naming the missing or bad key, and how to give it."""
    meta_path = os.path.join(os.fspath(model_dir), METADATA_FILE)
    if meta.get("clip_length") is None:
        missing = [key for key in ("clip_length", "temporal_stride") if meta.get(key) is None]
        raise ValueError(
            f"The export at {model_dir} does not say how long a clip it takes: {meta_path} has "
            f"{' and '.join(f'no {key}' for key in missing)}. Export it with "
            "ks.export_saved_model(model, path, metadata=dict(clip_length=<frames per "
            "training clip>, temporal_stride=<step between them, default 1>, class_names=<a "
            "name per class, default 'class 0', ...>)), or add them to that file."
        )
    stride = meta.get("temporal_stride")
    settings = meta["clip_length"], 1 if stride is None else stride
    for key, value in zip(("clip_length", "temporal_stride"), settings):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{meta_path}: {key}: expected an int >= 1; got {value!r}.")
    return settings


def _frame_shape(serve) -> list[int]:
    """[height, width, channels] of the video `serve` takes, [batch, time, H, W, C]."""
    (spec,) = serve.structured_input_signature[1].values()
    return spec.shape[2:].as_list()


def _class_names(meta: dict, num_classes: int, model_dir) -> list[str]:
    """The export's class names, or "class 0", "class 1", ... where it has none."""
    names = meta.get("class_names")
    if not names:
        return [f"class {i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(
            f"{os.path.join(os.fspath(model_dir), METADATA_FILE)}: class_names names "
            f"{len(names)} classes but the model scores {num_classes}."
        )
    return [str(name) for name in names]
