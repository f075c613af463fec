"""A short demo fit: the same model trained with backprop and with Sideways, side by side.

    python -m train.demo            # what `make train` runs until the full training command lands
    python -m train.demo --epochs 2 --clips 32
"""

from __future__ import annotations

import argparse

import keras
import numpy as np

import keras_sideways as ks


def brightness_squares(count: int, time: int = 8, size: int = 16, seed: int = 0):
    """Clips of a square moving one pixel a frame; its brightness (3 levels) is the class."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, count)
    video = np.zeros((count, time, size, size, 1), "float32")
    for i, label in enumerate(labels):
        row, col = rng.integers(0, size - 4, 2)
        for t in range(time):
            c = (col + t) % (size - 4)
            video[i, t, row : row + 4, c : c + 4] = (label + 1) / 3
    return video, labels


def run(epochs: int = 20, clips: int = 128, seed: int = 0) -> dict:
    """Trains one model per mode on the same data; returns {mode: test clip accuracy}."""
    train_x, train_y = brightness_squares(clips, seed=seed)
    test_x, test_y = brightness_squares(clips // 2, seed=seed + 1)
    accuracy = {}
    for mode in ("bp", "sideways"):
        keras.utils.set_random_seed(seed)
        stages = [
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.GlobalMaxPooling2D(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(3),
        ]
        model = ks.SidewaysModel(stages, mode=mode)
        model.compile(
            optimizer=keras.optimizers.Adam(0.01),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        print(f"--- {mode}")
        model.fit(train_x, train_y, batch_size=16, epochs=epochs, verbose=2)
        scores = model.evaluate(test_x, test_y, verbose=0, return_dict=True)
        accuracy[mode] = scores["accuracy"]
    return accuracy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--clips", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    accuracy = run(args.epochs, args.clips, args.seed)
    print("test clip accuracy:  " + "   ".join(f"{m}: {a:.3f}" for m, a in accuracy.items()))


if __name__ == "__main__":
    main()
