"""SidewaysModel: the Keras face of Sideways and of its backprop baseline."""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_sideways import callbacks as fit_callbacks
from keras_sideways import clips, delays, options, replicas, threads
from keras_sideways import placement as placements
from keras_sideways.engines import batched, bp, lanes, pipeline, tick_layers, windows
from keras_sideways.engines.buffers import PipelineBuffers
from keras_sideways.engines.gradients import (
    EngineResult,
    in_variable_order,
    stage_variable_indices,
)
from keras_sideways.graph import StageGraph
from keras_sideways.placement import device_scope


class CheckpointError(ValueError, OSError):
    """A checkpoint that is missing or cannot be read; the message names the file.

    It is an OSError too, so Keras' BackupAndRestore falls back to its previous backup.
    """


MODES, ENGINES = options.MODES, options.ENGINES
_PIPELINE = "pipeline_"  # the prefix of a stream's buffers in a checkpoint
COUNTERS = fit_callbacks.COUNTERS  # fit's counts of skipped steps


@keras.saving.register_keras_serializable(package="keras_sideways")
class SidewaysModel(keras.Model):
    """A chain of per-frame stages trained on video with Sideways or with backprop.

    Args:
        stages: the stages, bottom first: a list of Keras layers or models, each a
            per-frame function [N, ...] -> [N, ...], or a `keras.Sequential` whose
            layers become the stages. At least two.
        mode: "sideways" (pseudo-gradients through the frame-clocked pipeline of
            docs/algorithm.md) or "bp" (exact gradient of the mean per-frame loss).
        stateful: keep the pipeline buffers across `train_step` calls, so that
            consecutive batches can be consecutive chunks of the same videos. The batch
            size is then fixed by the first batch. Sideways mode only.
        engine: how Sideways mode computes its pseudo-gradients, all with the same
            result: "pipeline" (depth-parallel: stages run concurrently, on blocks of
            `pipeline_chunk` ticks), "batched" (one pass per stage over all ticks: BP's
            cost on one device) or "auto" (batched, unless stateful or placed on several
            devices).
        pipeline_chunk: ticks per block of the pipeline engine. "auto" (the default)
            cuts a clip into as many blocks as there are workers (the devices the
            stages span, else CPU cores; at least 2, at most the stages): every stage
            works on a block at once, with ops as big as a block. 1 runs tick by tick
            in a loop over buffers, whose memory does not grow with the clip; streams
            (`stateful=True`), clips of unknown length and random layers other than
            Dropout always run so. The pseudo-gradients are the same for every value.
        placement: the device of each stage, e.g. ["/GPU:0", "/GPU:0", "/GPU:1",
            "/GPU:1"], or "auto" to balance measured stage costs over the visible
            devices (GPUs/TPUs, else CPUs); None leaves placement to TensorFlow.
        stash_depth: Sideways mode's fidelity knob (docs/algorithm.md, "Stash depth"):
            stage k keeps its last D_k inputs and pairs each error with the input of the
            frame it was born from when D_k covers its frame gap 2(L-1-k). 0 (the
            default) is the paper's Sideways; "full" gives exact per-frame gradients,
            pipelined; an int applies to every stage, a list of L ints to each.
        delay_warmup_steps: Sideways mode's delay-aware learning rate
            (docs/algorithm.md, "Delay-aware learning rate"; PipeMare's rescheduling):
            over the first N steps, stage k's update is scaled by (1 + g_k)^-(1 - t/N),
            g_k its frame gap after the stash, so the stages with the oldest errors
            start slow. 0 (the default) keeps the paper's uniform learning rate.
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Inputs are videos [batch, time, height, width, channels]; `call` returns the
    per-frame outputs [batch, time, ...] in both modes. Targets are clip labels [batch]
    or per-frame targets [batch, time, ...]. What batch normalisation, dropout and other
    random layers inside the stages mean in Sideways mode, and which are refused, is in
    docs/algorithm.md ("Normalisation and stochastic layers").
    """

    def __init__(
        self,
        stages: Sequence[keras.layers.Layer] | keras.Sequential,
        mode: str = "sideways",
        stateful: bool = False,
        engine: str = "auto",
        placement: Sequence[str] | str | None = None,
        stash_depth: int | str | Sequence[int] = 0,
        delay_warmup_steps: int = 0,
        pipeline_chunk: int | str = "auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        stages = options.check_stages(stages)
        options.check_options(mode, stateful, engine)
        placement = options.check_placement(placement, len(stages))
        self.stages = stages
        self.mode = mode
        self.stateful = stateful
        self.engine = engine
        self.placement = placement
        self.stash_depth = stash_depth
        # How the stages connect, where each runs, its window and stash: the one object
        # the engines, buffers and export read (devices set by "auto" placement in build).
        self.graph = StageGraph.chain(
            len(stages),
            placement if isinstance(placement, list) else None,
            options.check_windows(stages),
            stash_depth,
        )
        self.delay_warmup_steps = delays.check_warmup_steps(delay_warmup_steps)
        self.pipeline_chunk = options.check_chunk(pipeline_chunk, stateful)
        self.buffers: PipelineBuffers | None = None
        self.frame_shape: tuple | None = None  # set by build
        self.skipped_updates = keras.metrics.Sum(name="skipped_updates")
        # Listed only under dynamic loss scaling (mixed_float16): see `metrics`.
        self.loss_scale_skips = keras.metrics.Sum(name="loss_scale_skips")
        self._gradient_fns = {}
        self._warned_short_clip = False
        self._fitting = False
        if mode == "sideways":
            self._check_layers()

    # ----------------------------------------------------------------- building
    def build(self, input_shape):
        """Builds the stages on one frame and creates the pipeline buffers.

        The buffers hold as many lanes as the batch of `input_shape` (one if unknown).
        """
        clips.check_video_shape(input_shape)
        input_shape = tf.TensorShape(input_shape)
        if None in input_shape[2:]:
            raise ValueError(
                f"Expected an input shape {clips.VIDEO_LAYOUT} with known frame "
                f"dimensions; got {input_shape}."
            )
        batch = input_shape[0] or 1
        if self.placement == "auto":
            sample = tf.random.uniform((batch, *input_shape[2:]), seed=0)
            self.graph = self.graph.placed(placements.auto_placement(self.stages, sample))
        placements.check_fits_strategy(self.devices, self.distribute_strategy)
        frame = keras.KerasTensor((batch, *input_shape[2:]), dtype=self.compute_dtype)
        outputs, output_shapes = [], []
        for k, stage in enumerate(self.stages):
            x = self.graph.input_of(k, frame, outputs)
            with device_scope(self.devices[k]):  # the stage's weights live on its device
                x = stage(
                    keras.KerasTensor(windows.window_shape(x.shape, self.windows[k]), x.dtype)
                )
            outputs.append(x)
            clips.check_batch_kept(k, stage, batch, x.shape)
            if None in x.shape[1:]:
                raise ValueError(
                    f"Stage {k} ({stage.name}) must give outputs of a known shape per "
                    f"frame; got {x.shape}."
                )
            output_shapes.append(tuple(x.shape[1:]))
        if self.mode == "sideways":
            self._check_layers()  # again: stages may make their layers when built
        self.frame_shape = tuple(input_shape[2:])
        # Stashes and window histories only where the tick-by-tick loop runs.
        clip = input_shape[1]
        ticking = self.resolved_engine == "pipeline" and (
            clip is None or self.resolved_chunk(clip) is None
        )
        self.buffers = PipelineBuffers(
            self.graph,
            output_shapes,
            capacity=batch,
            frame_shape=self.frame_shape,
            dtype=self.compute_dtype,
            ticking=ticking,
            # A stream keeps the seeds its random layers key their noise with.
            random_layers=len(tick_layers.random_layers(self.stages)) if self.stateful else 0,
        )
        # The buffers are state of a run, not weights: no tracked attribute holds them, so
        # Keras neither counts them as parameters nor saves them with the weights (a
        # stream's checkpoint keeps them by name: `save_own_variables`).

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras (TF backend) builds at the first trace of the train function when no
        # strategy is set, where the batch size is unknown, and under
        # MultiWorkerMirroredStrategy it fails to reduce a distributed batch. The pipeline
        # buffers need a real per-replica batch, so build on the first one, here.
        training, self._fitting = self._fitting, False
        if data_batch is None:
            for _, _, batches in iterator:
                data_batch = next(batches, None)
                break
        if data_batch is None:  # an empty dataset
            if training:
                raise ValueError(
                    "The training data yielded no batch: fit needs at least one (video, "
                    "target) batch. Check that the dataset is not empty (e.g. fewer clips "
                    "than one batch with drop_remainder=True, or a filter that keeps none)."
                )
            return  # evaluation (validation data too) warns and goes on, as in Keras
        strategy = self.distribute_strategy
        data_batch = tf.nest.map_structure(
            lambda v: replicas.first_replica_value(strategy, v), data_batch
        )
        video, target, sample_weight = keras.utils.unpack_x_y_sample_weight(data_batch)
        if target is not None:
            self._check_inputs(video, target, sample_weight)
        with strategy.scope():  # variables made here belong to the strategy
            if not self.built:
                self._build_for(video)
            self._symbolic_build(data_batch=data_batch)

    @property
    def devices(self) -> list:
        """The device of each stage (None: TensorFlow's choice), from `graph`."""
        return list(self.graph.devices)

    @property
    def stash(self) -> list[int]:
        """Per stage, the inputs it stashes (`stash_depth`, capped at its frame gap)."""
        return list(self.graph.stash)

    @property
    def windows(self) -> list[int]:
        """Per stage, the frames it sees per tick."""
        return list(self.graph.windows)

    def _build_for(self, video) -> None:
        """Builds the model for a batch like `video`, after checking its layout."""
        clips.check_video(video)
        self.build(video.shape)

    def reset_pipeline(self) -> None:
        """Clears the pipeline buffers: the next Sideways step primes on its first frame."""
        if self.buffers is not None:
            self.buffers.reset()

    # ----------------------------------------------------------------- forward
    def call(self, video, training=None):
        """Per-frame outputs [batch, time, ...]: every frame through every stage."""
        clips.check_video(video)
        return bp.frame_outputs(self.stages, video, training, self.graph)

    def pipelined_call(self, video, training=None):
        """The pipeline's output at every tick, [batch, time, ...], for a clip primed afresh.

        Unlike `call`, the output at tick t belongs to frame max(t - L + 1, 0): what a
        streaming deployment (the exported `stream` endpoint) emits.
        """
        clips.check_video(video)
        return pipeline.pipelined_forward(self.stages, video, bool(training), self.graph)

    # ----------------------------------------------------------------- training
    def fit(
        self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None, **kwargs
    ):
        """`keras.Model.fit`, with checks first and the counts of skipped steps reported.

        Before any computation it raises ValueError for a stream (`stateful=True`) whose
        arrays or dataset would give a batch of another size, and for array labels out of
        range for a classifier. It warns after an epoch whose every step was skipped
        (`callbacks.SkippedEpochWarning`), and its progress bar shows `skipped_updates`
        (and `loss_scale_skips`) only where they are not zero (`callbacks.ProgbarLogger`);
        the History keeps them per epoch. A training set that yields no batch raises a
        ValueError.
        """
        if self.stateful:
            capacity = None if self.buffers is None else self.buffers.capacity
            clips.check_stream_data(x, batch_size, capacity)
        labels = [y, *_validation_labels(kwargs.get("validation_data"))]
        callbacks = self._with_fit_callbacks(callbacks, verbose, labels, warn=True)
        self._fitting = True  # the next `_maybe_symbolic_build` sees the training data
        try:
            return super().fit(x, y, batch_size, epochs, verbose, callbacks, **kwargs)
        finally:
            self._fitting = False

    def evaluate(
        self,
        x=None,
        y=None,
        batch_size=None,
        verbose="auto",
        sample_weight=None,
        steps=None,
        callbacks=None,
        return_dict=False,
        **kwargs,
    ):
        """`keras.Model.evaluate` at any batch size, stateful or not (it runs `call`, not
        the pipeline), without counts of skipped steps (it skips nothing)."""
        callbacks = self._with_fit_callbacks(callbacks, verbose, [y])
        self._evaluating = True
        try:
            return super().evaluate(
                x, y, batch_size, verbose, sample_weight, steps, callbacks, return_dict, **kwargs
            )
        finally:
            self._evaluating = False

    def _with_fit_callbacks(self, callbacks, verbose, labels, warn=False):
        """`callbacks` with this model's checks of array labels first, then (in `fit`) the
        warning of an all-skipped epoch and, where Keras would add its own, the progress
        bar that shows counts of skipped steps as counts."""
        if isinstance(callbacks, keras.callbacks.CallbackList):  # fit's, for validation
            return callbacks
        callbacks = list(callbacks or [])
        extra = [_LabelCheck(labels)]
        if warn:
            extra.append(fit_callbacks.SkippedEpochWarning())
        if verbose != 0 and not any(
            isinstance(c, keras.callbacks.ProgbarLogger) for c in callbacks
        ):
            callbacks.append(fit_callbacks.ProgbarLogger())
        return extra + callbacks

    def train_step(self, data):
        video, target, sample_weight = keras.utils.unpack_x_y_sample_weight(data)

        # Forward, loss and (pseudo-)gradients, by the engine of the mode; the gradients
        # are those of the loss times the optimizer's loss scale (mixed_float16).
        scale = self._loss_scale()
        loss, grads, outputs, scored, statistics = self._loss_and_gradients(
            video, target, sample_weight, self.mode, scale
        )

        # Update once per step (see `_update`: what is skipped, rolled back or counted).
        finite, overflow = self._update(loss, grads, video)
        if self.stateful and self._dynamic_loss_scale():  # errors kept for the next step
            self._rescale_errors(self._loss_scale() / scale)
        # Sideways' batch-norm moving statistics: once per step, as the update (BP: Keras').
        tick_layers.update_moving_statistics(
            statistics, tf.logical_and(finite, tf.logical_not(overflow))
        )

        # Metrics: a skipped batch counts in skipped_updates, not in the loss or metrics.
        kept = tf.cast(finite, tf.float32)
        count = tf.distribute.get_strategy().num_replicas_in_sync
        self.skipped_updates.update_state((1.0 - kept) / count)  # summed over replicas
        if self._dynamic_loss_scale():  # an overflow's loss is sound: it counts as kept
            self.loss_scale_skips.update_state(tf.cast(overflow, tf.float32) / count)
        batch = tf.cast(tf.shape(video)[0], tf.float32)
        loss = loss * count  # Keras losses are divided by the replicas: log the true mean
        self._loss_tracker.update_state(tf.where(finite, loss, 0.0), sample_weight=kept * batch)
        outputs = tf.where(finite, outputs, tf.zeros_like(outputs))
        return replicas.for_multi_worker(
            self._update_metrics(video, scored, outputs, sample_weight, kept)
        )

    def test_step(self, data):
        video, target, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        self._check_inputs(video, target, sample_weight, stream=False)  # no buffers used
        target = self._checked_labels(target)
        outputs = self(video, training=False)
        loss = self._frame_loss(video, target, outputs, sample_weight, training=False)
        loss = loss * tf.distribute.get_strategy().num_replicas_in_sync  # see train_step
        batch = tf.cast(tf.shape(video)[0], tf.float32)
        self._loss_tracker.update_state(loss, sample_weight=batch)
        logs = self._update_metrics(video, target, outputs, sample_weight, 1.0)
        # Evaluation skips nothing: no counts of skipped steps (see `metrics`).
        return replicas.for_multi_worker({k: v for k, v in logs.items() if k not in COUNTERS})

    def compute_gradients(self, video, target, sample_weight=None, mode: str | None = None):
        """The (pseudo-)gradients one `train_step` on this batch hands to the optimizer.

        Args:
            video: float [batch, time, height, width, channels].
            target: clip labels [batch] or per-frame targets [batch, time, ...].
            sample_weight: optional per-clip weights [batch].
            mode: "sideways" or "bp"; defaults to the model's mode.

        Returns:
            A list aligned with `model.trainable_variables`. Nothing is applied, and a
            stateful pipeline is left as it was.
        """
        mode = options.check_mode(mode or self.mode)
        video = tf.convert_to_tensor(video)
        target = tf.convert_to_tensor(target)
        if sample_weight is not None:
            sample_weight = tf.convert_to_tensor(sample_weight, tf.float32)
        self._check_inputs(video, target, sample_weight)
        if not self.built:
            self._build_for(video)
        self._checked_labels(target)  # eager: a ValueError naming the bad label
        if mode not in self._gradient_fns:

            def gradients(video, target, sample_weight):
                scale = self._loss_scale()  # computed as train_step does, then unscaled
                loss, grads, *_ = self._loss_and_gradients(
                    video, target, sample_weight, mode, scale
                )
                return loss, grads if scale is None else [g / scale for g in grads]

            self._gradient_fns[mode] = tf.function(gradients, reduce_retracing=True)
        # The pipeline, batch-norm statistics and random layers' seeds are left as they were.
        state = [*self.buffers.variables, *tick_layers.state_variables(self.stages)]
        saved = [tf.identity(v.value) for v in state]
        _, grads = self._gradient_fns[mode](video, target, sample_weight)
        for variable, value in zip(state, saved):
            variable.assign(value)
        return list(grads)

    # ----------------------------------------------------------------- internals
    def _loss_and_gradients(self, video, target, sample_weight, mode, scale=None):
        """Returns (loss, gradients, outputs, scored targets, batch-norm statistics) for one
        clip batch; the statistics (Sideways only) are for `update_moving_statistics`.

        With `scale`, the gradients (and so every error the engines pass down, in the
        compute dtype) are those of the loss times `scale`, the optimizer's loss scale,
        which the optimizer divides out; the loss returned is never scaled.
        """
        self._check_inputs(video, target, sample_weight)
        if not self.built:  # a custom loop that never called the model
            self._build_for(video)
        target = self._checked_labels(target)
        if scale is None:
            loss_fn = self._tick_loss
        else:

            def loss_fn(y_true, y_pred, sample_weight):
                return self._tick_loss(y_true, y_pred, sample_weight) * scale

        if mode == "bp":
            result = bp.bp_gradients(self.stages, video, target, loss_fn, sample_weight, self.graph)
        else:
            result = self._sideways_gradients(video, target, loss_fn, sample_weight)
        if scale is not None:
            result.loss = result.loss / scale
        return self._with_regularisers(result, scale)

    def _sideways_gradients(self, video, target, loss_fn, sample_weight) -> EngineResult:
        """Sideways mode's engine result: the batched passes (whole clips, or the
        pipeline's blocks of ticks), or the pipeline tick by tick."""
        self._warn_if_clip_too_short(video)
        whole = self.resolved_engine == "batched"
        chunk = None if whole else self.resolved_chunk(video.shape[1])
        if whole or chunk is not None:
            return batched.batched_sideways_gradients(
                self.stages,
                video,
                target,
                loss_fn,
                sample_weight,
                self.graph,
                capacity=self.buffers.capacity,  # lanes grouped as the pipeline would
                chunk=chunk,
            )
        if self.stateful:
            tf.debugging.assert_equal(
                tf.shape(video)[0],
                self.buffers.capacity,
                message=f"stateful=True fixes the batch size to {self.buffers.capacity} "
                "(the first batch); got another batch size. Batch the data with "
                "drop_remainder=True",
            )
        return lanes.sideways_gradients(
            self.stages, self.buffers, video, target, loss_fn, sample_weight, self.stateful
        )

    def _with_regularisers(self, result: EngineResult, scale=None):
        """(loss, gradients, outputs, targets, statistics), weight regularisers added once
        per step (their gradients times `scale`, like the engines')."""
        grads = in_variable_order(self.trainable_variables, self.stages, result.gradients)
        loss = result.loss
        if self.losses:  # weight regularisers: their exact gradient, once per step
            count = tf.distribute.get_strategy().num_replicas_in_sync
            with tf.GradientTape() as tape:  # divided like the loss, as Keras does
                penalty = tf.add_n([tf.cast(x, tf.float32) for x in self.losses]) / count
            reg = tape.gradient(
                penalty if scale is None else penalty * scale, self.trainable_variables
            )
            grads = [g if r is None else g + r for g, r in zip(grads, reg)]
            loss = loss + penalty
        return loss, grads, result.outputs, result.targets, result.statistics

    def _loss_scale(self) -> tf.Tensor | None:
        """The factor the optimizer expects the loss scaled by: a LossScaleOptimizer's
        dynamic scale (mixed_float16) or a `loss_scale_factor`; None without scaling."""
        optimizer = getattr(self, "optimizer", None)
        if not self._dynamic_loss_scale() and getattr(optimizer, "loss_scale_factor", None) is None:
            return None
        return tf.cast(optimizer.scale_loss(tf.constant(1.0)), tf.float32)

    def _dynamic_loss_scale(self) -> bool:
        """True when the optimizer scales the loss dynamically (and skips overflows)."""
        return isinstance(getattr(self, "optimizer", None), keras.optimizers.LossScaleOptimizer)

    @property
    def metrics(self):
        """Keras' metrics; `loss_scale_skips` only under dynamic loss scaling, and neither
        count of skipped steps while evaluating (evaluation skips nothing)."""
        metrics = super().metrics
        hidden = []
        if getattr(self, "_evaluating", False) or not self._dynamic_loss_scale():
            hidden.append(getattr(self, "loss_scale_skips", None))
        if getattr(self, "_evaluating", False):
            hidden.append(getattr(self, "skipped_updates", None))
        return [m for m in metrics if all(m is not h for h in hidden)]

    def get_metrics_result(self):
        """Keras' metric results, except that the loss and metrics of no kept step (every
        step of the epoch skipped, see `_update`) read NaN rather than 0."""
        logs = super().get_metrics_result()
        tracker = getattr(self, "_loss_tracker", None)
        if tracker is None:
            return logs
        kept = tracker.count > 0
        return {
            name: value
            if name in COUNTERS or not tf.as_dtype(value.dtype).is_floating
            else tf.where(kept, value, tf.constant(float("nan"), value.dtype))
            for name, value in logs.items()
        }

    @property
    def resolved_engine(self) -> str:
        """The engine Sideways mode runs: "pipeline" or "batched"."""
        if self.placement == "auto" and not self.built:
            spread = len(placements.visible_devices()) > 1
        else:
            spread = len({d for d in self.devices if d is not None}) > 1
        batched_ok = not tick_layers.unkeyable_layers(self.stages)
        return options.resolve_engine(self.engine, self.stateful, spread, batched_ok)

    def resolved_chunk(self, clip_length: int | None) -> int | None:
        """Ticks per block the pipeline engine runs clips of `clip_length` (None: unknown)
        in, for this model's `pipeline_chunk`, devices and this process's inter-op
        threads; None where it runs tick by tick."""
        keyed = not tick_layers.unkeyable_layers(self.stages)
        placed = {d for d in self.devices if d is not None}
        workers = len(placed) if len(placed) > 1 else threads.inter_op_workers()
        return options.resolve_chunk(
            self.pipeline_chunk, clip_length, self.stateful, keyed, workers, len(self.stages)
        )

    def _check_layers(self) -> None:
        """Raises ValueError for a stage layer Sideways cannot run as docs/algorithm.md
        defines it ("Normalisation and stochastic layers"), naming what to use instead."""
        tick_layers.check_stages(self.stages, self.resolved_engine)

    def _tick_loss(self, y_true, y_pred, sample_weight):
        """The compiled loss of one tick, a mean over the lanes given."""
        if self._compile_loss is None:
            raise ValueError("No loss to compute. Provide a `loss` argument in `compile()`.")
        return self._compile_loss(y_true, y_pred, sample_weight)

    def _frame_loss(self, video, target, outputs, sample_weight, training):
        """The mean per-frame loss over every frame of the batch (plus regularisers)."""
        return self.compute_loss(video, target, outputs, sample_weight, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled loss of per-frame outputs [batch, time, ...], a mean over frames.

        Clip labels [batch] count for every frame; `sample_weight` is per clip, [batch].
        Weight regularisers are added, as in Keras.
        """
        time = tf.shape(y_pred)[1]
        if sample_weight is not None:
            sample_weight = tf.repeat(sample_weight, time, axis=0)
        return super().compute_loss(
            x,
            clips.per_frame(y, time),
            clips.frames_to_batch(y_pred),
            sample_weight,
            training=training,
        )

    def _update_scales(self) -> list | None:
        """Per trainable variable, the delay-aware scale of its update (None: uniform)."""
        if self.mode != "sideways" or not self.delay_warmup_steps:
            return None
        gaps = self.graph.gaps()
        per_stage = delays.stage_scales(gaps, self.optimizer.iterations, self.delay_warmup_steps)
        scales = [None] * len(self.trainable_variables)
        positions = stage_variable_indices(self.trainable_variables, self.stages)
        for k, indices in enumerate(positions):
            for i in indices:
                if gaps[k] and scales[i] is None:  # a shared variable: its first stage's
                    scales[i] = per_stage[k]
        return scales

    def _update(self, loss, grads, video) -> tuple[tf.Tensor, tf.Tensor]:
        """Applies `grads` unless the step must be skipped; returns (kept, overflow).

        A batch with a non-finite loss or gradient (on any replica) is skipped on every
        replica, and an update that makes a weight non-finite (a diverging learning rate)
        is rolled back: `kept` is False. Under dynamic loss scaling (a
        LossScaleOptimizer), non-finite gradients from a finite video and loss are the
        scale's fault, not the batch's: they go to the optimizer, which skips the update
        and halves its scale; `kept` and `overflow` are True. A non-finite video or loss
        is skipped as above and leaves the scale alone.
        """
        finite_loss = tf.reduce_all(tf.math.is_finite(loss))
        finite_grads = replicas.on_all_replicas(
            tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        )
        if self._dynamic_loss_scale():
            finite_video = tf.reduce_all(tf.math.is_finite(video))
            finite = replicas.on_all_replicas(tf.logical_and(finite_loss, finite_video))
        else:
            finite_loss = replicas.on_all_replicas(finite_loss)
            finite = tf.logical_and(finite_loss, finite_grads)
        weights = self.trainable_variables
        applied = replicas.apply_if(
            finite,
            self._apply,
            grads,
            [*weights, *self.optimizer.variables],
            weights,
            self._update_scales(),
        )
        kept = tf.logical_and(finite, applied)
        return kept, tf.logical_and(kept, tf.logical_not(finite_grads))

    def _rescale_errors(self, ratio: tf.Tensor) -> None:
        """Brings a stream's error buffers to the loss scale of the next step (`ratio`: new
        over old); an overflowed error, which that step would pass on, becomes zero."""
        if self.mode != "sideways" or self.resolved_engine != "pipeline":
            return
        for error in self.buffers.errors:
            value = tf.cast(error.value, tf.float32)
            kept = tf.where(tf.math.is_finite(value), value * ratio, 0.0)
            error.assign(tf.cast(kept, error.dtype))

    def _apply(self, grads):
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        return tf.constant(True)

    def _update_metrics(self, video, target, outputs, sample_weight, kept):
        """Updates the compiled metrics; `kept` (0 or 1) weighs the whole batch."""
        weight = tf.ones([tf.shape(video)[0]]) * kept
        if sample_weight is not None:
            weight = weight * tf.cast(sample_weight, weight.dtype)
        return self.compute_metrics(video, target, outputs, sample_weight=weight)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Compiled metrics of per-frame outputs `y_pred` [batch, time, ...].

        For clip labels [batch] the metrics see the clip class probabilities (per-frame
        probabilities averaged over time), as video classification is scored; for
        per-frame targets, every frame. `sample_weight` is per clip, [batch].
        """
        if clips.is_clip_target(y):
            y_pred = clips.clip_probabilities(y_pred, self.outputs_are_logits())
        else:
            time = tf.shape(y_pred)[1]
            if sample_weight is not None:
                sample_weight = tf.repeat(sample_weight, time, axis=0)
            y, y_pred = clips.frames_to_batch(y), clips.frames_to_batch(y_pred)
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def is_classifier(self) -> bool:
        """True when compiled with a categorical cross-entropy loss (clip classification)."""
        return clips.is_classification_loss(getattr(self, "loss", None))

    def outputs_are_logits(self) -> bool:
        """True when the compiled loss takes logits (from_logits=True)."""
        return clips.loss_takes_logits(getattr(self, "loss", None))

    def _check_inputs(self, video, target, sample_weight, stream: bool = True):
        """Raises ValueError for a bad batch, naming what was expected and what was given.

        `stream` False (evaluation, which runs `call`) leaves out the checks of a stream's
        batches: only training and `compute_gradients` use the pipeline buffers.
        """
        clips.check_video(video)
        clips.check_target(video, target)
        clips.check_sample_weight(video, sample_weight)
        stream = stream and not getattr(self, "_evaluating", False)
        if stream and self.stateful and self.mode == "sideways":
            capacity = None if self.buffers is None else self.buffers.capacity
            clips.check_stream_batch(video, target, capacity)

    def _checked_labels(self, target):
        """`target`, checked to be class indices in range when the compiled loss is a
        sparse categorical cross-entropy (`clips.checked_labels`: ValueError for eager
        labels, an assertion in a traced step)."""
        loss = getattr(self, "loss", None)
        if not self.built or not clips.takes_class_indices(loss):
            return target
        classes = self._output_classes()
        if classes is None:
            return target
        return clips.checked_labels(target, classes, clips.ignored_class(loss))

    def _output_classes(self) -> int | None:
        """The size of the last axis of the per-frame outputs (a classifier's classes)."""
        if getattr(self, "_classes", None) is None and self.frame_shape is not None:
            frames = max(self.windows)  # every stage sees a whole window
            spec = self.compute_output_spec(
                keras.KerasTensor((1, frames, *self.frame_shape), self.compute_dtype)
            )
            self._classes = spec.shape[-1]
        return getattr(self, "_classes", None)

    def _warn_if_clip_too_short(self, video):
        if not (self.stateful or self._warned_short_clip):
            self._warned_short_clip = clips.warn_if_too_short(video.shape[1], len(self.stages))

    # ----------------------------------------------------------------- saving
    def save_own_variables(self, store):
        """Keras' saving hook: the model's state beside its stages' weights.

        Saved: the seed states of the stages' random layers (Keras saves no
        SeedGenerator's state; a resumed run then draws the masks an uninterrupted one
        would) and, for a stream (`stateful=True`), the pipeline buffers, as
        `pipeline_<name>`. Other models prime their buffers at every batch: they are not
        saved, so the weights load into a model of any batch size. The model holds no
        variables of its own (its stages save theirs).
        """
        for i, state in enumerate(tick_layers.seed_states(self.stages)):
            store[f"seed_state_{i}"] = state
        if self.stateful and self.buffers is not None:
            for name, buffer in self.buffers.named_variables.items():
                store[f"{_PIPELINE}{name}"] = buffer

    def load_own_variables(self, store):
        """Keras' loading hook: what `save_own_variables` saved.

        A stream's pipeline buffers come back only into a stream built for the same batch
        size (a ValueError names both otherwise); other models ignore them.
        """
        keys = list(store.keys())
        seeds = tick_layers.seed_states(self.stages)
        # Files of earlier versions numbered the buffers, then the seeds: the seeds are last.
        numbered = sorted((k for k in keys if k.isdigit()), key=int)
        saved = dict(zip((f"seed_state_{i}" for i in range(len(seeds))), numbered[-len(seeds) :]))
        saved.update({k: k for k in keys if k.startswith("seed_state_")})
        for i, state in enumerate(seeds):
            value = store[saved[f"seed_state_{i}"]] if f"seed_state_{i}" in saved else None
            if value is not None and tuple(value.shape) == tuple(state.shape):
                state.assign(value)
        streamed = {k[len(_PIPELINE) :]: k for k in keys if k.startswith(_PIPELINE)}
        if self.stateful and self.buffers is not None and streamed:
            self._load_stream(store, streamed)

    def _load_stream(self, store, saved: dict) -> None:
        """Loads a stream's buffers from `store` (`saved`: buffer name to key)."""
        buffers = self.buffers.named_variables
        if set(saved) != set(buffers):
            raise ValueError(
                f"The checkpoint's pipeline state holds the buffers {sorted(saved)}, but this "
                f"stream has {sorted(buffers)}: it was saved by a model with other stages, "
                "stash depth or random layers."
            )
        batch = store[saved["activation_0"]].shape[0]
        if batch != self.buffers.capacity:
            raise ValueError(
                f"The checkpoint resumes a stream (stateful=True) of batch size {batch}, but "
                f"this model was built for batch size {self.buffers.capacity}. Build it for "
                f"batch size {batch} to resume the stream, or load the weights into a model "
                "with stateful=False, which loads them at any batch size."
            )
        for name, buffer in buffers.items():
            buffer.assign(store[saved[name]])

    def load_weights(self, filepath, *args, **kwargs):
        """`keras.Model.load_weights`, with a CheckpointError naming a missing or bad file."""
        path = os.fspath(filepath)
        if not os.path.exists(path):
            raise CheckpointError(f"No checkpoint at {path}.")
        try:
            return super().load_weights(filepath, *args, **kwargs)
        except Exception as error:  # h5py and Keras raise several kinds
            raise CheckpointError(f"Cannot load the checkpoint {path}: {error}") from error

    def export(self, filepath, format="tf_saved_model", verbose=None, **kwargs):
        """Keras' `export`, routed to `export_saved_model` for a SavedModel.

        The SavedModel then has the `serve`, `stream` and `reset` endpoints of
        `keras_sideways.export_saved_model`; other formats are Keras' own.
        """
        if format != "tf_saved_model":
            return super().export(filepath, format=format, verbose=verbose, **kwargs)
        from keras_sideways.export import export_saved_model  # export imports this module

        return export_saved_model(self, filepath, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(
            stages=[keras.saving.serialize_keras_object(s) for s in self.stages],
            mode=self.mode,
            stateful=self.stateful,
            engine=self.engine,
            placement=self.placement,
            stash_depth=self.stash_depth,
            delay_warmup_steps=self.delay_warmup_steps,
            pipeline_chunk=self.pipeline_chunk,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        stages = [keras.saving.deserialize_keras_object(s) for s in config.pop("stages")]
        return cls(stages, **config)


def _validation_labels(validation_data) -> list:
    """The labels of `fit`'s validation_data, when given as a tuple (else none)."""
    if isinstance(validation_data, (tuple, list)) and len(validation_data) >= 2:
        return [validation_data[1]]
    return []


class _LabelCheck(keras.callbacks.Callback):
    """Checks array labels once the model is built, before the first step of `fit` or
    `evaluate` (where Keras builds the model on the first batch)."""

    def __init__(self, labels):
        super().__init__()
        self.labels = [y for y in labels if isinstance(y, (np.ndarray, tf.Tensor, list))]

    def on_train_begin(self, logs=None):
        self._check()

    def on_test_begin(self, logs=None):
        self._check()

    def _check(self):
        for y in self.labels:
            self.model._checked_labels(np.asarray(y))
        self.labels = []  # once: fit's validation begins a test run each epoch
