"""Mixed precision: bfloat16 and float16 compute, float32 weights, and loss scaling.

Every test sets a global Keras dtype policy through a fixture, which puts back "float32"
afterwards.

The 16-bit gradients are compared with a bound derived from the arithmetic (`tolerances`),
per variable, as relative errors in the 2-norm. Each weight gradient is a sum of n
products: batch x frames x the output pixels of its layer (the bottom convolution's n is
the largest). A CPU without 16-bit dot-product instructions (Eigen's kernels, as on an
AVX2-only x86-64) adds them up in the 16-bit format itself, every addition rounding with
a relative error of at most the unit roundoff u (2^-8 for bfloat16's 8 significant bits,
2^-11 for float16's 11). With the rounding errors independent and of mean zero, the sum is
then within lambda * sqrt(n) * u of the exact one, relative to the sum of the terms'
magnitudes, except with a probability below 2n exp(-lambda^2 / 2) (Higham and Mary, "A new
approach to probabilistic rounding error analysis", SIAM J. Sci. Comput. 41(5), 2019).
LAMBDA = 5 makes that 1e-3 at the largest n here. A CPU with such instructions (oneDNN on
AVX512-BF16) accumulates in float32 and comes about ten times closer. Where the terms
cancel (a bias), the errors relative to the gradient's own norm are larger by the ratio of
the two sums, which eats into LAMBDA's margin: measured on an AVX2-path CPU, a cancelling
bias came to 2 sqrt(n) u, kernels to sqrt(n) u. Two 16-bit results that should agree may
each be that far from the exact one: twice the bound (the triangle inequality). The videos
are small (4 x 4 frames) to keep n, and so the bound, small enough to tell Sideways from BP
on moving video (checked below). The stages pool by averaging (`smooth=True`): which input
a max pool picks can flip under any rounding, a jump that no precision bound covers.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import (
    CLIP_LOSS,
    clip_labels,
    compiled_model,
    random_video,
    tiny_conv_stages,
    tiny_temporal_stages,
)

import keras_sideways as ks

POLICIES = ["mixed_bfloat16", "mixed_float16"]
COMPUTE_DTYPE = {"mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}
UNIT_ROUNDOFF = {"mixed_bfloat16": 2.0**-8, "mixed_float16": 2.0**-11}
LAMBDA = 5  # the probabilistic bound's confidence factor (module docstring)
MODES_AND_ENGINES = [("sideways", "pipeline"), ("sideways", "batched"), ("bp", "auto")]


@pytest.fixture(params=POLICIES)
def policy(request):
    keras.config.set_dtype_policy(request.param)
    yield request.param
    keras.config.set_dtype_policy("float32")


@pytest.fixture
def float16():
    keras.config.set_dtype_policy("mixed_float16")
    yield "mixed_float16"
    keras.config.set_dtype_policy("float32")


def relative_errors(actual, expected) -> list[float]:
    """Per variable, |actual - expected| / |expected| in the 2-norm."""
    return [
        float(np.linalg.norm(np.asarray(a) - np.asarray(e)) / np.linalg.norm(np.asarray(e)))
        for a, e in zip(actual, expected)
    ]


def reduction_lengths(model, video_shape) -> list[int]:
    """Per trainable variable, how many products its gradient adds up: batch x frames x
    the output pixels of its layer (a bias sums its layer's output errors; each kernel tap
    the products of an input and an output error)."""
    batch, time, *frame = video_shape
    lengths = {}

    def visit(layer, shape):
        if isinstance(layer, keras.Sequential):
            for inner in layer.layers:
                shape = visit(inner, shape)
            return shape
        out = tuple(layer.compute_output_shape(shape))
        for v in layer.trainable_variables:
            lengths[v.path] = time * int(np.prod(out[:-1]))
        return out

    shape = (batch, *frame)
    for stage in model.stages:
        shape = visit(stage, shape)
    return [lengths[v.path] for v in model.trainable_variables]


def tolerances(model, video_shape, policy, results=1) -> list[float]:
    """Per trainable variable, the relative error a 16-bit gradient may have (module
    docstring): LAMBDA * sqrt(n) * u for one 16-bit result against float32, `results`
    times that between two 16-bit results."""
    u = UNIT_ROUNDOFF[policy]
    return [results * LAMBDA * np.sqrt(n) * u for n in reduction_lengths(model, video_shape)]


def assert_close_in_norm(actual, expected, model, bounds):
    assert len(actual) == len(expected) == len(model.trainable_variables) == len(bounds)
    for error, bound, v in zip(
        relative_errors(actual, expected), bounds, model.trainable_variables
    ):
        assert error < bound, f"{v.path}: relative error {error:.2e} >= {bound:.2e}"


def policy_model(policy, stages_fn, **kwargs):
    """A compiled SidewaysModel whose stages are made under `policy` (None: float32)."""
    keras.config.set_dtype_policy(policy or "float32")
    try:
        model = compiled_model(stages_fn(), **kwargs)
    finally:
        keras.config.set_dtype_policy("float32")
    return model


def loss_scale(model) -> float:
    return float(model.optimizer.dynamic_scale.numpy())


# ------------------------------------------------------------------ training and dtypes
@pytest.mark.parametrize("mode, engine", MODES_AND_ENGINES)
def test_fit_learns_and_keeps_float32_weights(policy, mode, engine):
    video, labels = random_video(batch=4, time=5, seed=2), np.array([0, 1, 2, 0])
    model = ks.SidewaysModel(tiny_conv_stages(num_stages=3), mode=mode, engine=engine)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=CLIP_LOSS)
    history = model.fit(video, labels, batch_size=4, epochs=4, verbose=0).history
    assert history["loss"][-1] < history["loss"][0] - 0.03, history["loss"]
    assert history["skipped_updates"] == [0.0] * 4
    assert model.compute_dtype == COMPUTE_DTYPE[policy]
    assert model.predict(video, verbose=0).dtype == COMPUTE_DTYPE[policy]
    assert {v.dtype for v in model.trainable_variables} == {"float32"}
    state = {v.dtype for v in model.optimizer.variables}  # moments, loss scale, counters
    assert {d for d in state if not d.startswith("int")} == {"float32"}
    scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (policy == "mixed_float16")  # Keras' compile wraps the optimizer
    assert ("loss_scale_skips" in history) == scaled


@pytest.mark.parametrize("temporal", [False, True], ids=["per_frame", "temporal"])
def test_pipeline_buffers_stashes_and_histories_take_half_the_bytes(policy, temporal):
    video = random_video(batch=2, time=4)
    stages_fn = tiny_temporal_stages if temporal else tiny_conv_stages
    sizes = {}
    for name in (None, policy):
        model = policy_model(name, stages_fn, stash_depth=2)
        model.build(video.shape)
        buffers = [v for v in model.buffers.variables if v.dtype not in ("int32", "int64")]
        kinds = {v.path.rsplit("pipeline_", 1)[1].split("_")[0] for v in buffers}
        assert kinds == (
            {"activation", "error", "stash", "history"}
            if temporal
            else {"activation", "error", "stash"}
        )
        assert {v.dtype for v in buffers} == {COMPUTE_DTYPE.get(name, "float32")}
        assert {v.dtype for v in model.trainable_variables} == {"float32"}
        sizes[name] = sum(v.numpy().nbytes for v in buffers)
    assert sizes[policy] * 2 == sizes[None]


# ------------------------------------------------------------------ the maths, at 16 bits
@pytest.mark.parametrize("engine", ["pipeline", "batched"])
def test_static_video_sideways_equals_bp(policy, engine):
    model = policy_model(policy, lambda: tiny_conv_stages(4, smooth=True), engine=engine)
    static = np.repeat(random_video(batch=2, time=4, size=4)[:, :1], 4, axis=1)
    sideways = model.compute_gradients(static, clip_labels(2))
    bp = model.compute_gradients(static, clip_labels(2), mode="bp")
    assert {np.asarray(g).dtype for g in sideways} == {np.dtype("float32")}
    bounds = tolerances(model, static.shape, policy, results=2)
    assert_close_in_norm(sideways, bp, model, bounds)
    # The bound is tight enough to tell Sideways from BP where the frames move: the head
    # pairs its kernel with features of frames L-1 ticks older (its reduction, batch x
    # frames, is the shortest, so its bound the tightest).
    moving = random_video(batch=2, time=4, size=4, seed=3)
    head = -2  # the head's kernel
    gap = relative_errors(
        model.compute_gradients(moving, clip_labels(2))[head:][:1],
        model.compute_gradients(moving, clip_labels(2), mode="bp")[head:][:1],
    )
    assert gap[0] > bounds[head], (gap[0], bounds[head])


def test_batched_engine_equals_pipeline_engine(policy):
    stages = policy_model(policy, lambda: tiny_conv_stages(4, smooth=True)).stages
    keras.config.set_dtype_policy(policy)  # models made here take the policy's dtypes
    batched = compiled_model(stages, engine="batched", stash_depth=2)
    pipeline = compiled_model(stages, engine="pipeline", stash_depth=2)
    keras.config.set_dtype_policy("float32")
    video = random_video(batch=3, time=4, size=4, seed=5)
    assert_close_in_norm(
        batched.compute_gradients(video, clip_labels(3)),
        pipeline.compute_gradients(video, clip_labels(3)),
        batched,
        tolerances(batched, video.shape, policy, results=2),
    )


@pytest.mark.parametrize("mode, engine", MODES_AND_ENGINES)
def test_mixed_gradients_are_float32_gradients_within_the_tolerance(policy, mode, engine):
    video = random_video(batch=2, time=4, size=4, seed=4)
    stages = lambda: tiny_conv_stages(3, smooth=True)
    exact = policy_model(None, stages, engine=engine, mode=mode)
    mixed = policy_model(policy, stages, engine=engine, mode=mode)
    exact.build(video.shape)
    mixed.build(video.shape)
    mixed.set_weights(exact.get_weights())
    assert_close_in_norm(
        mixed.compute_gradients(video, clip_labels(2)),
        exact.compute_gradients(video, clip_labels(2)),
        exact,
        tolerances(exact, video.shape, policy),
    )


# ------------------------------------------------------------------ loss scaling
@pytest.mark.parametrize("mode, engine", MODES_AND_ENGINES)
def test_a_loss_scaled_step_applies_the_unscaled_gradient(float16, mode, engine):
    video, labels = random_video(batch=2, time=5, seed=1), clip_labels(2)
    model = ks.SidewaysModel(tiny_conv_stages(num_stages=3), mode=mode, engine=engine)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=CLIP_LOSS)
    model.build(video.shape)
    model.optimizer.build(model.trainable_variables)
    assert loss_scale(model) == 2.0**15
    before = [v.numpy() for v in model.trainable_variables]
    grads = model.compute_gradients(video, labels)
    logs = model.train_on_batch(video, labels, return_dict=True)
    assert (logs["skipped_updates"], logs["loss_scale_skips"]) == (0.0, 0.0)
    for b, g, v in zip(before, grads, model.trainable_variables):
        np.testing.assert_allclose(b - v.numpy(), 0.1 * np.asarray(g), rtol=1e-3, atol=1e-7)


def test_a_static_loss_scale_factor_is_divided_out_too():
    video, labels = random_video(batch=2, time=5, seed=1), clip_labels(2)
    model = ks.SidewaysModel(tiny_conv_stages(num_stages=3), engine="batched")
    model.compile(optimizer=keras.optimizers.SGD(0.1, loss_scale_factor=64.0), loss=CLIP_LOSS)
    model.build(video.shape)
    before = [v.numpy() for v in model.trainable_variables]
    grads = model.compute_gradients(video, labels)
    logs = model.train_on_batch(video, labels, return_dict=True)
    assert "loss_scale_skips" not in logs  # no dynamic scale: nothing to count
    for b, g, v in zip(before, grads, model.trainable_variables):
        np.testing.assert_allclose(b - v.numpy(), 0.1 * np.asarray(g), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("mode, engine", MODES_AND_ENGINES)
def test_overflowing_gradients_lower_the_scale_and_skip_the_step_only(float16, mode, engine):
    video, labels = random_video(batch=2, time=5, seed=1), clip_labels(2)
    model = ks.SidewaysModel(tiny_conv_stages(num_stages=3), mode=mode, engine=engine)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=CLIP_LOSS, metrics=["accuracy"])
    model.build(video.shape)
    model.optimizer.build(model.trainable_variables)
    model.optimizer.dynamic_scale.assign(2.0**24)  # float16 errors overflow, the loss not
    before = [v.numpy() for v in model.trainable_variables]
    logs = model.train_on_batch(video, labels, return_dict=True)
    assert logs["loss_scale_skips"] == 1.0
    assert logs["skipped_updates"] == 0.0  # not a bad batch: its loss counts
    assert np.isfinite(logs["loss"]) and logs["loss"] > 0
    assert loss_scale(model) == 2.0**23
    for b, v in zip(before, model.trainable_variables):
        np.testing.assert_array_equal(b, v.numpy(), err_msg=v.path)

    # Training goes on: the scale halves until the gradients fit, then steps apply.
    history = model.fit(video, labels, epochs=10, verbose=0).history
    assert history["skipped_updates"] == [0.0] * 10
    assert 0 < sum(history["loss_scale_skips"]) < 10
    assert history["loss_scale_skips"][-1] == 0.0
    assert loss_scale(model) < 2.0**23
    assert history["loss"][-1] < history["loss"][0]
    assert all(np.all(np.isfinite(v.numpy())) for v in model.trainable_variables)


def test_an_overflow_under_a_mirrored_strategy_is_skipped_on_every_replica(float16):
    video, labels = random_video(batch=4, time=5), np.array([0, 1, 2, 0])
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        model = ks.SidewaysModel(tiny_conv_stages(num_stages=3))
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss=CLIP_LOSS)
    model.fit(video, labels, epochs=1, verbose=0)
    before = [v.numpy() for v in model.trainable_variables]
    model.optimizer.dynamic_scale.assign(2.0**24)
    logs = model.fit(video, labels, epochs=1, verbose=0).history
    assert (logs["loss_scale_skips"], logs["skipped_updates"]) == ([1.0], [0.0])
    assert loss_scale(model) == 2.0**23
    for b, v in zip(before, model.trainable_variables):
        np.testing.assert_array_equal(b, v.numpy(), err_msg=v.path)


@pytest.mark.parametrize("mode, engine", MODES_AND_ENGINES)
def test_a_corrupt_batch_under_loss_scaling_is_skipped_and_leaves_the_scale(float16, mode, engine):
    video, labels = random_video(batch=2, time=5), clip_labels(2)
    video[0, 2, 3, 3, 0] = np.nan
    model = ks.SidewaysModel(tiny_conv_stages(num_stages=3), mode=mode, engine=engine)
    model.compile(optimizer="adam", loss=CLIP_LOSS)
    model.build(video.shape)
    model.optimizer.build(model.trainable_variables)
    before = [v.numpy() for v in model.trainable_variables]
    logs = model.train_on_batch(video, labels, return_dict=True)
    assert (logs["skipped_updates"], logs["loss_scale_skips"]) == (1.0, 0.0)
    assert loss_scale(model) == 2.0**15  # the data's fault, not the scale's
    for b, v in zip(before, model.trainable_variables):
        np.testing.assert_array_equal(b, v.numpy(), err_msg=v.path)


def test_a_stream_keeps_its_errors_at_the_scale_of_the_next_step(float16):
    video, labels = random_video(batch=2, time=5), clip_labels(2)
    errors = {}
    for grows in (False, True):
        keras.utils.set_random_seed(0)
        model = ks.SidewaysModel(tiny_conv_stages(num_stages=3), stateful=True)
        model.compile(optimizer=keras.optimizers.SGD(0.0), loss=CLIP_LOSS)
        model.build(video.shape)
        model.optimizer.build(model.trainable_variables)
        if grows:  # this step is the one after which the scale doubles
            model.optimizer.step_counter.assign(model.optimizer.dynamic_growth_steps - 1)
        model.train_on_batch(video, labels)
        assert loss_scale(model) == 2.0**15 * (2 if grows else 1)
        errors[grows] = [e.numpy().astype("float32") for e in model.buffers.errors]
    for grown, kept in zip(errors[True], errors[False]):
        assert np.abs(kept).max() > 0
        np.testing.assert_array_equal(grown, 2 * kept)

    # An overflow leaves no infinite error to poison the stream's next step.
    model.optimizer.dynamic_scale.assign(2.0**40)
    logs = model.train_on_batch(video, labels, return_dict=True)
    assert logs["loss_scale_skips"] == 1.0
    assert all(np.all(np.isfinite(e.numpy())) for e in model.buffers.errors)


def test_save_and_load_keep_the_policy_and_the_loss_scale(float16, tmp_path):
    video, labels = random_video(batch=2, time=5), clip_labels(2)
    model = ks.SidewaysModel(tiny_conv_stages(num_stages=3), engine="pipeline")
    model.compile(optimizer="adam", loss=CLIP_LOSS)
    model.fit(video, labels, epochs=1, verbose=0)
    model.optimizer.dynamic_scale.assign(2.0**9)
    model.save(tmp_path / "model.keras")
    keras.config.set_dtype_policy("float32")  # a fresh process: the policy is saved
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert loaded.compute_dtype == "float16"
    assert {v.dtype for v in loaded.buffers.variables[:2]} == {"float16"}
    assert isinstance(loaded.optimizer, keras.optimizers.LossScaleOptimizer)
    assert loss_scale(loaded) == 2.0**9
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    model.fit(video, labels, epochs=1, verbose=0, shuffle=False)
    loaded.fit(video, labels, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("stages_fn", [tiny_conv_stages, tiny_temporal_stages])
def test_export_serves_and_streams_as_the_model_does_in_float32(policy, stages_fn, tmp_path):
    video, labels = random_video(batch=2, time=5), clip_labels(2)
    model = policy_model(policy, stages_fn)
    model.fit(video, labels, epochs=1, verbose=0)
    loaded = tf.saved_model.load(model.export(tmp_path / "export", verbose=False))
    served = loaded.serve(tf.constant(video))
    streamed = np.stack([loaded.stream(tf.constant(video[:, t]))["output"] for t in range(5)], 1)
    # The exported outputs are float32 (each the float32 value of a 16-bit one); the
    # stream's state holds its 16-bit activations exactly, so both equal the model's
    # traced outputs (eager kernels may round a 16-bit sum differently: one ulp).
    assert served["frames"].dtype == streamed.dtype == tf.float32
    frames = model.predict(video, verbose=0)
    np.testing.assert_array_equal(served["frames"], tf.cast(frames, tf.float32))
    pipelined = tf.function(model.pipelined_call)(video)
    np.testing.assert_array_equal(streamed, tf.cast(pipelined, tf.float32))


@pytest.mark.parametrize("stages_policy, model_policy", [(None, "bfloat16"), ("bfloat16", None)])
def test_stages_and_model_of_other_policies_are_refused_at_build(stages_policy, model_policy):
    # The pipeline holds stage outputs in the model's dtype; it failed deep in autodiff.
    keras.config.set_dtype_policy(f"mixed_{stages_policy}" if stages_policy else "float32")
    try:
        stages = tiny_conv_stages(num_stages=3)
    finally:
        keras.config.set_dtype_policy("float32")
    model = policy_model(model_policy and f"mixed_{model_policy}", lambda: stages)
    with pytest.raises(ValueError, match="Stage 0 .* outputs .* but the model computes in"):
        model.build((2, 3, 8, 8, 1))


def test_a_float32_top_stage_in_a_mixed_model_trains():
    # Keras' advice for mixed precision: the last layer in float32. The top's output is not
    # held in the pipeline, so it may differ.
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        *below, _ = tiny_conv_stages(num_stages=3)
        model = compiled_model([*below, keras.layers.Dense(3, dtype="float32")])
    finally:
        keras.config.set_dtype_policy("float32")
    history = model.fit(random_video(batch=2, time=3), clip_labels(2), verbose=0).history
    assert np.isfinite(history["loss"][0])
    assert model.predict(random_video(batch=2, time=3), verbose=0).dtype == np.float32


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("engine", ["batched", "pipeline"])
def test_a_pure_16_bit_policy_trains_as_keras_does(dtype, engine):
    # Weights in 16 bits too (no loss scaling): Keras trains such a model; under the
    # defaults the batched passes (and the pipeline's blocks of ticks) failed on a float32
    # averaging factor.
    keras.config.set_dtype_policy(dtype)
    try:
        model = ks.SidewaysModel(tiny_conv_stages(num_stages=3), engine=engine)
        model.compile(optimizer="sgd", loss=CLIP_LOSS)
    finally:
        keras.config.set_dtype_policy("float32")
    history = model.fit(random_video(batch=2, time=6), clip_labels(2), verbose=0).history
    assert np.isfinite(history["loss"][0]) and history["skipped_updates"] == [0.0]
    assert {v.dtype for v in model.trainable_variables} == {dtype}
