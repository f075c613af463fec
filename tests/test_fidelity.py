"""Gradient fidelity: the figures against a hand computation, and the callback's logs."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import random_video, tiny_conv_stages

import keras_sideways as ks
from keras_sideways import fidelity

CLIP_LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def test_gradient_fidelity_golden_values():
    sideways = [np.array([3.0, 4.0]), np.array([[0.0, 0.0, 2.0]]), np.zeros(2), np.ones(1)]
    bp = [np.array([4.0, 3.0]), np.array([[0.0, 0.0, 1.0]]), np.ones(2), np.zeros(1)]
    groups = [[0], [], [1], [2], [3]]  # a weightless stage, a zero pseudo-gradient, zero BP
    figures = fidelity.gradient_fidelity(sideways, bp, groups)
    assert figures["cosine"][1] is None and figures["norm_ratio"][1] is None  # no weights
    np.testing.assert_allclose([figures["cosine"][k] for k in (0, 2)], [0.96, 1.0])
    np.testing.assert_allclose([figures["norm_ratio"][k] for k in (0, 2)], [1.0, 2.0])
    assert math.isnan(figures["cosine"][3]) and math.isnan(figures["cosine"][4])
    assert figures["cosine_mean"] == pytest.approx(0.98)  # None and NaN stages left out
    assert figures["norm_ratio_mean"] == pytest.approx(1.5)


def test_gradient_fidelity_rejects_lists_of_different_lengths():
    with pytest.raises(ValueError, match="same length"):
        fidelity.gradient_fidelity([np.ones(1)], [], [[0]])


def linear_model(w0, w1):
    """Two linear stages without biases: frame -> x W0 -> (x W0) W1, a number per frame."""
    stages = [
        keras.Sequential(
            [
                keras.layers.Flatten(),
                keras.layers.Dense(
                    2, use_bias=False, kernel_initializer=keras.initializers.Constant(w0)
                ),
            ]
        ),
        keras.layers.Dense(1, use_bias=False, kernel_initializer=keras.initializers.Constant(w1)),
    ]
    model = ks.SidewaysModel(stages, stash_depth=0)  # the paper's Sideways, derived by hand
    model.compile(optimizer="sgd", loss=keras.losses.MeanSquaredError())
    return model


def hand_gradients(x, y, w0, w1):
    """BP and Sideways gradients of the two-stage linear model, derived by hand.

    x: frames [B, T, d]; y: targets [B, T]. Loss: mean over frames of (x W0 W1 - y)^2.
    BP: dW1 = 2/(BT) sum h^T r, dW0 = 2/(BT) sum x^T r W1^T, with h = x W0, r = h W1 - y.
    Sideways (L = 2): at tick t the top stage sees h and the target of frame t-1 (frame 0
    while the pipeline fills), so dW1 = 2/(BT) sum_t h_{t-1}^T r_{t-1}; the bottom stage
    sees frame t with the error the top made at tick t-1, born from frame t-2, valid from
    tick 1: dW0 = 2/(B(T-1)) sum_{t>=1} x_t^T r_{t-2} W1^T (frame indices clipped at 0).
    """
    batch, time = y.shape
    h = x @ w0  # [B, T, 2]
    r = (h @ w1)[..., 0] - y  # [B, T]
    bp_w0 = 2 / (batch * time) * np.einsum("btd,bt,k->dk", x, r, w1[:, 0])
    bp_w1 = 2 / (batch * time) * np.einsum("btk,bt->k", h, r)[:, None]
    prev = [max(t - 1, 0) for t in range(time)]
    sw_w1 = 2 / (batch * time) * np.einsum("btk,bt->k", h[:, prev], r[:, prev])[:, None]
    older = [max(t - 2, 0) for t in range(1, time)]
    sw_w0 = 2 / (batch * (time - 1)) * np.einsum("btd,bt,k->dk", x[:, 1:], r[:, older], w1[:, 0])
    return [sw_w0, sw_w1], [bp_w0, bp_w1]


def cosine_and_ratio(a, b):
    a, b = np.ravel(a), np.ravel(b)
    return a @ b / (np.linalg.norm(a) * np.linalg.norm(b)), np.linalg.norm(a) / np.linalg.norm(b)


def test_stage_fidelity_matches_a_hand_computation():
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(4, 2)).astype("float32")
    w1 = rng.normal(size=(2, 1)).astype("float32")
    video = random_video(batch=3, time=5, size=2, seed=7) - 0.5  # frames of 2x2x1: d = 4
    target = rng.normal(size=(3, 5, 1)).astype("float32")
    model = linear_model(w0, w1)

    figures = fidelity.stage_fidelity(model, video, target)

    x = video.reshape(3, 5, 4).astype(np.float64)
    sideways, bp = hand_gradients(x, target[..., 0].astype(np.float64), w0, w1)
    expected = [cosine_and_ratio(s, b) for s, b in zip(sideways, bp)]
    np.testing.assert_allclose(figures["cosine"], [c for c, _ in expected], rtol=1e-4)
    np.testing.assert_allclose(figures["norm_ratio"], [r for _, r in expected], rtol=1e-4)
    assert figures["cosine_mean"] == pytest.approx(np.mean([c for c, _ in expected]), rel=1e-4)
    assert min(figures["cosine"]) < 0.99  # random video: the pseudo-gradient is not exact


def test_static_video_gives_cosine_one_and_skips_weightless_stages():
    video = np.repeat(random_video(batch=2, time=6)[:, :1], 6, axis=1)
    model = ks.SidewaysModel(tiny_conv_stages(num_stages=5))  # stage 3: global pooling
    model.compile(optimizer="sgd", loss=CLIP_LOSS)
    figures = fidelity.stage_fidelity(model, video, np.array([0, 1]))
    assert figures["cosine"][3] is None and figures["norm_ratio"][3] is None  # never NaN
    weighted = [0, 1, 2, 4]
    np.testing.assert_allclose([figures["cosine"][k] for k in weighted], 1.0, atol=1e-5)
    np.testing.assert_allclose([figures["norm_ratio"][k] for k in weighted], 1.0, rtol=1e-4)
    assert figures["cosine_mean"] == pytest.approx(1.0, abs=1e-5)


def test_a_stream_is_measured_primed_afresh_and_left_as_it_was():
    # Not against the state its training left: a static held clip reads cosine 1, as above.
    model = ks.SidewaysModel(tiny_conv_stages(num_stages=4), stateful=True)
    model.compile(optimizer="sgd", loss=CLIP_LOSS)
    labels = np.array([0, 1])
    for seed in (1, 2):  # two chunks of moving video: the stream carries their state
        model.train_on_batch(random_video(batch=2, time=6, seed=seed), labels)
    carried = [v.numpy().copy() for v in model.buffers.variables]
    static = np.repeat(random_video(batch=2, time=6, seed=3)[:, :1], 6, axis=1)
    figures = fidelity.stage_fidelity(model, static, labels)
    np.testing.assert_allclose(figures["cosine"], 1.0, atol=1e-5)
    for before, v in zip(carried, model.buffers.variables):
        np.testing.assert_array_equal(before, v.numpy())
    with pytest.raises(ValueError, match="stream's batch size, 2 clips; got 3"):
        fidelity.stage_fidelity(model, static[[0, 1, 1]], np.array([0, 1, 1]))


def read_scalars(log_dir):
    """{tag: {step: value}} from the TensorBoard event files in `log_dir`."""
    scalars = {}
    for path in tf.io.gfile.glob(str(log_dir / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                number = float(tf.make_ndarray(value.tensor))
                scalars.setdefault(value.tag, {})[event.step] = number
    return scalars


def test_callback_logs_every_n_steps_to_tensorboard(tmp_path):
    video, labels = random_video(batch=8, time=5, seed=2), np.arange(8) % 3
    held = tf.data.Dataset.from_tensor_slices((video[:4], labels[:4])).batch(4)
    model = ks.SidewaysModel(tiny_conv_stages(num_stages=5))
    model.compile(optimizer="adam", loss=CLIP_LOSS)
    callback = fidelity.GradientFidelity(held, every_n_steps=4, log_dir=str(tmp_path))
    model.fit(video, labels, batch_size=2, epochs=2, callbacks=[callback], verbose=0)  # 8 steps

    assert [record["step"] for record in callback.history] == [0, 4, 8]
    # The last measurement is at the final weights: it is stage_fidelity now.
    now = fidelity.stage_fidelity(model, video[:4], labels[:4])
    last = callback.history[-1]["cosine"]
    assert last[3] is None and now["cosine"][3] is None  # the weightless stage: no figure
    weighted = [0, 1, 2, 4]
    np.testing.assert_allclose(
        [last[k] for k in weighted], [now["cosine"][k] for k in weighted], rtol=1e-5
    )

    scalars = read_scalars(tmp_path / "fidelity")
    expected_tags = {
        f"fidelity/{name}_stage{k}" for name in ("cosine", "norm_ratio") for k in (0, 1, 2, 4)
    }
    expected_tags |= {"fidelity/cosine_mean", "fidelity/norm_ratio_mean"}
    assert set(scalars) == expected_tags  # no tag for the weightless stage 3
    for record in callback.history:
        step = record["step"]
        assert scalars["fidelity/cosine_stage0"][step] == pytest.approx(record["cosine"][0])
        assert scalars["fidelity/norm_ratio_mean"][step] == pytest.approx(record["norm_ratio_mean"])


# Calls of 2 over 4 steps an epoch end at steps 2, 4, 6, 8: 3 and 6 fall due in the calls
# ending at 4 and 6. Calls of 3 over 8 steps end at 3, 6, 8 (Keras reports 9: its last call
# runs fewer), then 11, 14, 16: 9, 12 and 15 fall due in the second epoch's.
@pytest.mark.parametrize(
    "clips, per_call, measured", [(8, 2, [0, 4, 6]), (16, 3, [0, 3, 6, 11, 14, 16])]
)
def test_callback_counts_steps_with_several_steps_per_execution(clips, per_call, measured):
    video, labels = random_video(batch=clips, time=4, seed=3), np.arange(clips) % 3
    model = ks.SidewaysModel(tiny_conv_stages(num_stages=3))
    model.compile(optimizer="adam", loss=CLIP_LOSS, steps_per_execution=per_call)
    callback = fidelity.GradientFidelity((video[:2], labels[:2]), every_n_steps=3, log_dir=None)
    model.fit(video, labels, batch_size=2, epochs=2, callbacks=[callback], verbose=0)
    assert [record["step"] for record in callback.history] == measured
    assert callback.step == clips  # 2 epochs of clips / 2 steps


def test_training_without_the_callback_computes_no_fidelity(monkeypatch):
    calls = []
    original = ks.SidewaysModel.compute_gradients

    def counting(self, *args, **kwargs):
        calls.append(kwargs.get("mode"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ks.SidewaysModel, "compute_gradients", counting)
    video, labels = random_video(batch=4, time=4), np.arange(4) % 3
    model = ks.SidewaysModel(tiny_conv_stages(num_stages=3))
    model.compile(optimizer="adam", loss=CLIP_LOSS)
    model.fit(video, labels, batch_size=2, epochs=1, verbose=0)
    assert calls == []
    callback = fidelity.GradientFidelity((video, labels), every_n_steps=2, log_dir=None)
    model.fit(video, labels, batch_size=2, epochs=1, callbacks=[callback], verbose=0)
    assert calls == ["sideways", "bp"] * 2  # step 0 and step 2


def test_callback_rejects_bad_arguments():
    video, labels = random_video(batch=2, time=4), np.array([0, 1])
    with pytest.raises(ValueError, match="every_n_steps"):
        fidelity.GradientFidelity((video, labels), every_n_steps=0)
    with pytest.raises(ValueError, match="held batch"):
        fidelity.GradientFidelity(video)
    plain = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(2)])
    plain.compile(optimizer="sgd", loss=CLIP_LOSS)
    callback = fidelity.GradientFidelity((video, labels), log_dir=None)
    with pytest.raises(ValueError, match="SidewaysModel"):
        plain.fit(video[:, 0], labels, epochs=1, callbacks=[callback], verbose=0)


def test_a_log_dir_that_is_a_file_is_refused_when_the_callback_is_made(tmp_path):
    # It failed at fit's start, with TensorFlow's error from deep in its file writer.
    video, labels = random_video(batch=2, time=4), np.array([0, 1])
    (tmp_path / "logs").write_text("")
    with pytest.raises(ValueError, match=r"log_dir: .*logs is a file; expected a folder"):
        fidelity.GradientFidelity((video, labels), log_dir=str(tmp_path / "logs"))
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "fidelity").write_text("")  # where its scalars would go
    with pytest.raises(ValueError, match=r"log_dir: .*fidelity is a file; expected a folder"):
        fidelity.GradientFidelity((video, labels), log_dir=str(tmp_path / "runs"))


def test_steps_go_on_over_one_models_fits_and_start_again_for_another_model():
    # Given to a second model, it went on from the first model's steps, its history mixed.
    video, labels = random_video(batch=4, time=4, seed=2), np.arange(4) % 3
    callback = fidelity.GradientFidelity((video[:2], labels[:2]), every_n_steps=2, log_dir=None)
    first = ks.SidewaysModel(tiny_conv_stages(num_stages=3))
    first.compile(optimizer="adam", loss=CLIP_LOSS)
    for _ in range(2):  # 2 steps a call
        first.fit(video, labels, batch_size=2, epochs=1, callbacks=[callback], verbose=0)
    assert [record["step"] for record in callback.history] == [0, 2, 4]
    second = ks.SidewaysModel(tiny_conv_stages(num_stages=3))
    second.compile(optimizer="adam", loss=CLIP_LOSS)
    second.fit(video, labels, batch_size=2, epochs=1, callbacks=[callback], verbose=0)
    assert [record["step"] for record in callback.history] == [0, 2] and callback.step == 2


def test_the_callback_ships_in_keras_sideways_callbacks():
    import keras_sideways as ks

    assert ks.callbacks.GradientFidelity is fidelity.GradientFidelity


def test_a_resumed_run_counts_its_steps_from_its_epoch_and_measures_the_restored_weights(
    tmp_path,
):
    video, labels = random_video(batch=8, time=4, seed=5), np.arange(8) % 3
    held = (video[:2], labels[:2])

    def run(epochs):
        model = ks.SidewaysModel(tiny_conv_stages(num_stages=3))
        model.compile(optimizer="adam", loss=CLIP_LOSS)
        callback = fidelity.GradientFidelity(held, every_n_steps=4, log_dir=None)
        backup = ks.callbacks.BackupAndRestore(str(tmp_path), delete_checkpoint=False)
        model.fit(
            video, labels, batch_size=2, epochs=epochs, callbacks=[callback, backup], verbose=0
        )
        return callback.history

    first = run(2)  # 4 steps an epoch
    assert [record["step"] for record in first] == [0, 4, 8]
    resumed = run(4)  # restored at epoch 2, step 8: before, its steps began at 0 again
    assert [record["step"] for record in resumed] == [8, 12, 16]
    # Its first measurement is of the weights the backup restored, the first run's last.
    np.testing.assert_allclose(resumed[0]["cosine"], first[-1]["cosine"], rtol=1e-5)


def test_a_held_batch_the_figures_cannot_come_from_is_refused_naming_it():
    video, labels = random_video(batch=2, time=4), np.array([0, 1])
    empty = tf.data.Dataset.from_tensor_slices((video, labels)).batch(2).take(0)
    with pytest.raises(ValueError, match="dataset is empty"):
        fidelity.GradientFidelity(empty)
    poisoned = video.copy()
    poisoned[1, 2, 3, 3, 0] = np.inf
    with pytest.raises(ValueError, match="held video holds non-finite values"):
        fidelity.GradientFidelity((poisoned, labels))
    assert fidelity.GradientFidelity((video, labels), every_n_steps=np.int64(2)).every_n_steps == 2
    for bad in (True, 1.5, "2", -1):
        with pytest.raises(ValueError, match="every_n_steps"):
            fidelity.GradientFidelity((video, labels), every_n_steps=bad)


def test_compute_gradients_checks_its_batch_as_fit_does():
    video, labels = random_video(batch=2, time=4), np.array([0, 1])
    model = ks.SidewaysModel(tiny_conv_stages(num_stages=3))
    model.compile(optimizer="adam", loss=CLIP_LOSS)
    model.build(video.shape)
    with pytest.raises(ValueError, match=r"one per clip; got \[3\] for video \[2, 4, 8, 8, 1\]"):
        model.compute_gradients(video, labels, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="built for frames of 1 channel"):
        model.compute_gradients(np.concatenate([video, video], axis=-1), labels)


def test_sideways_figures_of_a_bp_model_are_refused_where_sideways_cannot_run_its_layers():
    # A BP model may hold layers Sideways refuses; their "pseudo-gradients" were measured
    # anyway (cosines of 0.4 to 0.9 where no Sideways run could exist).
    stages = [
        keras.Sequential(
            [keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization(renorm=True, name="re")]
        ),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3),
    ]
    video, labels = random_video(batch=2, time=4), np.array([0, 1])
    model = ks.SidewaysModel(stages, mode="bp")
    model.compile(optimizer="sgd", loss=CLIP_LOSS)
    model.compute_gradients(video, labels)  # its own mode: BP's gradient
    with pytest.raises(ValueError, match="BatchNormalization layer 're'.*renorm=True"):
        fidelity.stage_fidelity(model, video, labels)


def test_reset_pipeline_on_another_model_is_refused_naming_it():
    plain = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(2)])
    plain.compile(optimizer="sgd", loss=CLIP_LOSS)
    video, labels = random_video(batch=2, time=4), np.array([0, 1])
    with pytest.raises(ValueError, match="SidewaysModel's pipeline; got a Sequential"):
        plain.fit(video[:, 0], labels, callbacks=[ks.callbacks.ResetPipeline()], verbose=0)
