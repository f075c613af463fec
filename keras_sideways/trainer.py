"""SidewaysTrainer: the train and test steps, gradients, losses and metrics of a SidewaysModel.

A mixin, composed with `keras.Model` into `SidewaysModel` as Keras composes its `Trainer`
with `Layer` into `Model`. The guarded update is `keras_sideways.update`.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_sideways import callbacks as fit_callbacks
from keras_sideways import clips, cluster, options, replicas, update
from keras_sideways.engines import batched, bp, lanes, tick_layers
from keras_sideways.engines.gradients import EngineResult, in_variable_order


class SidewaysTrainer:
    """The trainer half of `SidewaysModel`: `fit`, `evaluate`, the steps and their parts."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # Keras logs "loss" from its own (private) tracker; this one is listed in its place.
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.skipped_updates = keras.metrics.Sum(name="skipped_updates")
        # Listed only under dynamic loss scaling (mixed_float16): see `metrics`.
        self.loss_scale_skips = keras.metrics.Sum(name="loss_scale_skips")
        self._gradient_fns = {}
        self._warned_short_clip = False
        self._fitting = False
        self._fit_length = None  # the clip length the train step was last traced for
        self._evaluating = False

    # ----------------------------------------------------------------- fit, evaluate
    def fit(
        self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None, **kwargs
    ):
        """`keras.Model.fit`, with checks first and the counts of skipped steps reported.

        Before any computation it raises ValueError for a stream (`stateful=True`) whose
        arrays or dataset would give a batch of another size, for array labels out of
        range for a classifier, for video of other channels than the built model's, and
        for a `class_weight` with per-frame targets (`clips.check_data`). It warns after an
        epoch whose every step was skipped (`callbacks.SkippedEpochWarning`), and its
        progress bar shows `skipped_updates` (and `loss_scale_skips`) only where they are
        not zero (`callbacks.ProgbarLogger`); the History keeps them per epoch. A training
        set that yields no batch raises a ValueError. A stream's arrays are taken in
        their order (`shuffle=False` unless given; `shuffle=True` is refused): consecutive
        batches continue the same videos.
        """
        clips.check_data(x, y, self.frame_shape, kwargs.get("class_weight"), self._fixed_frame())
        if self.stateful:  # fixed: a stream that has started (`size_stream`)
            fixed = self.buffers.capacity if self._stream_started else None
            clips.check_stream_data(x, batch_size, fixed)
            kwargs["shuffle"] = clips.stream_shuffle(x, kwargs.get("shuffle"))
        labels = [y, *fit_callbacks.validation_labels(kwargs.get("validation_data"))]
        callbacks = fit_callbacks.with_fit_callbacks(callbacks, verbose, labels, warn=True)
        self._fitting = True  # the next `_maybe_symbolic_build` sees the training data
        try:
            with cluster.naming_lost_tasks(self.devices):  # a lost worker, by name
                return super().fit(x, y, batch_size, epochs, verbose, callbacks=callbacks, **kwargs)
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
        clips.check_data(x, y, self.frame_shape, fixed_frame=self._fixed_frame())
        callbacks = fit_callbacks.with_fit_callbacks(callbacks, verbose, [y])
        self._evaluating = True
        try:
            kwargs.update(callbacks=callbacks, return_dict=return_dict)
            return super().evaluate(x, y, batch_size, verbose, sample_weight, steps, **kwargs)
        finally:
            self._evaluating = False

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """`keras.Model.train_on_batch`, with `fit`'s checks of the batch. Its list (no
        `return_dict`) is Keras': the loss and the metrics, a float where that is all; the
        counts of skipped updates are in the dict only (as a list's extra entry they broke
        `loss, accuracy = model.train_on_batch(...)` and `float(...)`)."""
        clips.check_data(x, y, self.frame_shape, class_weight, self._fixed_frame())
        self._fitting = True  # the next `_maybe_symbolic_build` sees a training batch
        try:
            logs = super().train_on_batch(x, y, sample_weight, class_weight, return_dict=True)
        finally:
            self._fitting = False
        if return_dict:
            return logs
        counts = ("skipped_updates", "loss_scale_skips")
        names = []  # Keras' order: the metrics', compile's expanded in theirs, then the rest
        for metric in self.metrics:
            inner = getattr(metric, "metrics", None) if metric.name not in logs else None
            names += [m.name for m in inner] if inner else [metric.name]
        names = [name for name in names if name in logs and name not in counts]
        names += sorted(name for name in logs if name not in names and name not in counts)
        values = [float(logs[name]) for name in names]
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """`keras.Model.predict`, refusing video of other channels than the model's first."""
        clips.check_data(x, None, self.frame_shape, fixed_frame=self._fixed_frame())
        return super().predict(x, batch_size, verbose, steps, callbacks)

    def _fixed_frame(self) -> tuple | None:
        """The frame shape the first stage's inputs fix (None where a size is free), for
        a first stage that is a Functional model (`ks.cut`'s); None for any other."""
        first = self.stages[0]  # (a Sequential's inputs are its first build's: not fixed)
        functional = isinstance(first, keras.Model) and not isinstance(first, keras.Sequential)
        inputs = getattr(first, "inputs", None) if functional else None
        if not inputs or self.windows[0] != 1:
            return None
        return tuple(inputs[0].shape[1:])

    def _build_for(self, video, any_length: bool = False) -> None:
        """Builds the model for a batch like `video`, after checking its layout; for clips
        of any length with `any_length` (a dataset whose spec leaves the length unknown:
        its train step is traced for any length, so the pipeline runs tick by tick)."""
        clips.check_video(video)
        shape = tuple(video.shape)
        if any_length:
            shape = (shape[0], None, *shape[2:])
        self.build(shape)  # plain: Keras' exporters read the recorded shape

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # A private Keras hook (tests/test_keras_surface.py). Keras (TF) builds at the first
        # trace of the train function without a strategy, where the batch size is unknown,
        # and fails to reduce a distributed batch under MultiWorkerMirroredStrategy. The
        # pipeline buffers need a real per-replica batch: build on the first one, here.
        training, self._fitting = self._fitting, False
        any_length = False
        if data_batch is None:
            for _, _, batches in iterator:
                any_length = _any_length(getattr(batches, "element_spec", None))
                data_batch = self._first_batch(batches, training)
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
        if training and self.built:
            self.size_stream(int(video.shape[0]))  # a stream not started takes this size
        if target is not None or training or self._evaluating:  # predict needs no target
            self._check_inputs(video, target, sample_weight)
        with strategy.scope():  # variables made here belong to the strategy
            if not self.built:
                self._build_for(video, any_length)
            self._symbolic_build(data_batch=data_batch)
        if training:
            self.size_stream(int(video.shape[0]), start=True)
            self._checked_labels(target)  # eager: a ValueError naming the bad label
            self._trace_for_length(None if any_length else video.shape[1])

    def _trace_for_length(self, length: int | None) -> None:
        """Drops the traced train step when this training's clips are of another length
        than the last's. Traced again by the same function, Keras relaxes the time axis
        to any length, which the pipeline's blocks of ticks cannot run (nor, without the
        buffers of its stash, the tick loop): a second `fit` on longer clips was refused.
        A new trace takes the new length as it is."""
        if self.train_function is not None and length != self._fit_length:
            self.train_function = None
        self._fit_length = length

    def _first_batch(self, batches, training: bool):
        """The batch `_maybe_symbolic_build` checks and builds from; None for no data.

        Evaluating a built model needs only the batch's shapes and dtypes: it takes the
        iterator's specs, where pulling a batch would read (decode) it once more than the
        evaluation does, and leave a cached dataset's cache half read (TensorFlow warns).
        Training, and a model not yet built, take a real batch (its size builds the
        buffers; its labels are checked)."""
        spec = getattr(batches, "element_spec", None)
        specs = tf.nest.flatten(spec) if spec is not None else []
        if (
            not training
            and self.built
            and specs
            and all(isinstance(s, tf.TensorSpec) for s in specs)
        ):
            return spec
        return next(batches, None)

    # ----------------------------------------------------------------- steps
    # The steps, `compute_gradients` and the model's call are traced without AutoGraph:
    # their loops are Python loops (unrolled) or tf.while_loop, and a Keras 3 layer cannot
    # branch on a tensor's value in Python anyway; converting them only cost tracing time.
    @tf.autograph.experimental.do_not_convert
    def train_step(self, data):
        video, target, sample_weight = keras.utils.unpack_x_y_sample_weight(data)

        # Forward, loss and (pseudo-)gradients, by the engine of the mode; the gradients
        # are those of the loss times the optimizer's loss scale (mixed_float16).
        scale = update.loss_scale(self.optimizer)
        loss, grads, outputs, scored, statistics = self._loss_and_gradients(
            video, target, sample_weight, self.mode, scale
        )

        # Update once per step (`update.guarded_update`: what is skipped, rolled back or
        # counted); a stream's errors, kept for the next step, follow the loss scale.
        kept, overflow = update.guarded_update(self, loss, grads, video)
        if self.stateful and update.dynamic_loss_scale(self.optimizer):
            update.rescale_errors(self, update.loss_scale(self.optimizer) / scale)
        # Sideways' batch-norm moving statistics: once per step, as the update (BP: Keras').
        tick_layers.update_moving_statistics(
            statistics, tf.logical_and(kept, tf.logical_not(overflow))
        )

        # Metrics: a skipped batch counts in skipped_updates, not in the loss or metrics.
        return self._track_step(video, scored, outputs, sample_weight, loss, kept, overflow)

    def _track_step(self, video, target, outputs, sample_weight, loss, finite, overflow):
        """The logs of a train step: its loss and metrics (only if `finite`, its update
        kept) and the counts of skipped steps."""
        kept = tf.cast(finite, tf.float32)
        count = tf.distribute.get_strategy().num_replicas_in_sync
        self.skipped_updates.update_state((1.0 - kept) / count)  # summed over replicas
        if update.dynamic_loss_scale(self.optimizer):  # an overflow's loss is sound: kept
            self.loss_scale_skips.update_state(tf.cast(overflow, tf.float32) / count)
        batch = tf.cast(tf.shape(video)[0], tf.float32)
        loss = loss * count  # Keras losses are divided by the replicas: log the true mean
        self.loss_tracker.update_state(tf.where(finite, loss, 0.0), sample_weight=kept * batch)

        # Keras weighs only `weighted_metrics` by a sample weight, not `metrics`: a
        # skipped batch updates none of them.
        def update_metrics():
            self.compute_metrics(video, target, outputs, sample_weight)
            return tf.constant(True)

        tf.cond(finite, update_metrics, lambda: tf.constant(False))
        return replicas.for_multi_worker(self.get_metrics_result())

    @tf.autograph.experimental.do_not_convert
    def test_step(self, data):
        video, target, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        self._check_inputs(video, target, sample_weight, stream=False)  # no buffers used
        target = self._checked_labels(target)
        outputs = self(video, training=False)
        loss = self.compute_loss(video, target, outputs, sample_weight, training=False)
        loss = loss * tf.distribute.get_strategy().num_replicas_in_sync  # see _track_step
        batch = tf.cast(tf.shape(video)[0], tf.float32)
        self.loss_tracker.update_state(loss, sample_weight=batch)
        logs = self.compute_metrics(video, target, outputs, sample_weight)
        # Evaluation skips nothing: no counts of skipped steps (see `metrics`).
        return replicas.for_multi_worker(
            {k: v for k, v in logs.items() if k not in fit_callbacks.COUNTERS}
        )

    # ----------------------------------------------------------------- gradients
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
        if not self.compiled:
            raise ValueError(
                "compute_gradients needs the loss: call compile(optimizer=..., loss=...) first."
            )
        if mode == "sideways" and self.mode != "sideways":  # a BP model's layers, unchecked
            self._check_layers()
        clips.check_structure(video, target)
        video = tf.convert_to_tensor(video)
        target = tf.convert_to_tensor(target)
        clips.check_data(video, target, self.frame_shape, fixed_frame=self._fixed_frame())
        if sample_weight is not None:
            sample_weight = tf.convert_to_tensor(sample_weight, tf.float32)
        if self.built:
            self.size_stream(int(video.shape[0]))  # a stream not started takes this size
        self._check_inputs(video, target, sample_weight)
        if not self.built:
            self._build_for(video)
        self._checked_labels(target)  # eager: a ValueError naming the bad label
        if mode not in self._gradient_fns:

            def gradients(video, target, sample_weight):
                scale = update.loss_scale(self.optimizer)  # as train_step, then unscaled
                loss, grads, *_ = self._loss_and_gradients(
                    video, target, sample_weight, mode, scale
                )
                return loss, grads if scale is None else [g / scale for g in grads]

            self._gradient_fns[mode] = tf.function(
                gradients, reduce_retracing=True, autograph=False
            )
        # The pipeline, batch-norm statistics and random layers' seeds are left as they were.
        state = [*self.buffers.variables, *tick_layers.state_variables(self.stages)]
        saved = [tf.identity(v.value) for v in state]
        with cluster.naming_lost_tasks(self.devices):
            _, grads = self._gradient_fns[mode](video, target, sample_weight)
        for variable, value in zip(state, saved):
            variable.assign(value)
        return list(grads)

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
        # Under tf.distribute, each replica's loss weighed by its share of the global
        # batch: the same update as one device on that batch, however it splits.
        share = replicas.batch_share(video)
        if share is not None:
            scale = share if scale is None else scale * share
        if scale is None:
            loss_fn = self._tick_loss
        else:

            def loss_fn(y_true, y_pred, sample_weight):
                return self._tick_loss(y_true, y_pred, sample_weight) * scale

        if mode == "bp":
            graph = self.replica_graph()  # this replica's devices (data x depth)
            result = bp.bp_gradients(self.stages, video, target, loss_fn, sample_weight, graph)
        else:
            result = self._sideways_gradients(video, target, loss_fn, sample_weight)
        if scale is not None:  # (a replica with no clips has a share, and a loss, of 0)
            result.loss = tf.math.divide_no_nan(result.loss, tf.cast(scale, result.loss.dtype))
        return self._with_regularisers(result, scale)

    def _sideways_gradients(self, video, target, loss_fn, sample_weight) -> EngineResult:
        """Sideways mode's engine result: the batched passes (whole clips, or the
        pipeline's blocks of ticks), or the pipeline tick by tick."""
        if not (self.stateful or self.graph.drain or self._warned_short_clip):  # drained: none
            depth = self.graph.depth(self.graph.top) + 1  # relays of delay lines add none
            self._warned_short_clip = clips.warn_if_too_short(video.shape[1], depth)
        whole = self.resolved_engine == "batched"
        chunk = None if whole else self.resolved_chunk(video.shape[1])
        if whole or chunk is not None:
            graph = self.replica_graph()  # this replica's devices (data x depth)
            return batched.batched_sideways_gradients(
                self.stages,
                video,
                target,
                loss_fn,
                sample_weight,
                graph,
                capacity=self.buffers.capacity,  # lanes grouped as the pipeline would
                chunk=chunk,
            )
        if self.replica_devices is not None:
            raise ValueError(
                "A placement per replica runs clips in blocks of ticks; this model would "
                "run tick by tick (stateful=True, pipeline_chunk=1, or clips of unknown "
                "length). Give clips a known length and pipeline_chunk='auto' or > 1."
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

    # ----------------------------------------------------------------- losses
    def _tick_loss(self, y_true, y_pred, sample_weight):
        """The compiled loss of one tick, a mean over the lanes given (no regularisers)."""
        if self._compile_loss is None:  # private: tests/test_keras_surface.py
            raise ValueError("No loss to compute. Provide a `loss` argument in `compile()`.")
        return self._compile_loss(y_true, y_pred, sample_weight)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled loss of per-frame outputs [batch, time, ...], a mean over frames.

        Clip labels [batch] count for every frame; `sample_weight` is per clip, [batch].
        Weight regularisers are added, as in Keras.
        """
        time = tf.shape(y_pred)[1]
        if sample_weight is not None:
            sample_weight = tf.repeat(sample_weight, time, axis=0)
        y, y_pred = clips.per_frame(y, time), clips.frames_to_batch(y_pred)
        return super().compute_loss(x, y, y_pred, sample_weight, training=training)

    # ----------------------------------------------------------------- metrics
    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Compiled metrics of per-frame outputs `y_pred` [batch, time, ...].

        For clip labels [batch] the metrics see the clip class probabilities (per-frame
        probabilities averaged over time), as video classification is scored; for
        per-frame targets, every frame. `sample_weight` is per clip, [batch].
        """
        if clips.is_clip_target(y):
            self._check_clip_metrics()
            y_pred = clips.clip_probabilities(y_pred, self.outputs_are_logits())
        else:
            time = tf.shape(y_pred)[1]
            if sample_weight is not None:
                sample_weight = tf.repeat(sample_weight, time, axis=0)
            y, y_pred = clips.frames_to_batch(y), clips.frames_to_batch(y_pred)
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _check_clip_metrics(self) -> None:
        """Raises ValueError for a compiled metric that takes logits (from_logits=True):
        with clip labels every metric sees the clip's class probabilities."""
        for container in super().metrics:
            for metric in getattr(container, "metrics", None) or []:
                if metric.get_config().get("from_logits"):
                    raise ValueError(
                        f"The metric {metric.name!r} takes logits (from_logits=True), but "
                        "with clip labels [batch] the metrics see the clip's class "
                        "probabilities: the per-frame probabilities averaged over time. "
                        "Compile it with from_logits=False (the loss keeps its own)."
                    )

    @property
    def metrics(self):
        """Keras' metrics, the loss from `loss_tracker`; `loss_scale_skips` only under
        dynamic loss scaling, and neither count of skipped steps while evaluating
        (evaluation skips nothing)."""
        tracker = getattr(self, "loss_tracker", None)
        metrics = [m for m in super().metrics if m is tracker or m.name != "loss"]
        if tracker is not None and self.compiled:  # first, where Keras logs its loss
            metrics = [tracker, *(m for m in metrics if m is not tracker)]
        hidden = []
        evaluating = getattr(self, "_evaluating", False)
        if evaluating or not update.dynamic_loss_scale(getattr(self, "optimizer", None)):
            hidden.append(getattr(self, "loss_scale_skips", None))
        if evaluating:
            hidden.append(getattr(self, "skipped_updates", None))
        return [m for m in metrics if all(m is not h for h in hidden)]

    def get_metrics_result(self):
        """Keras' metric results, except that the loss and metrics of no kept step (every
        step of the epoch skipped, see `update.guarded_update`) read NaN rather than 0."""
        logs = super().get_metrics_result()
        tracker = getattr(self, "loss_tracker", None)
        if tracker is None or not self.compiled:
            return logs
        kept = tracker.count > 0
        return {
            name: value
            if name in fit_callbacks.COUNTERS or not tf.as_dtype(value.dtype).is_floating
            else tf.where(kept, value, tf.constant(float("nan"), value.dtype))
            for name, value in logs.items()
        }

    # ----------------------------------------------------------------- checks
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
        clips.check_one_hot_clip_labels(getattr(self, "loss", None), target)
        clips.check_target(video, target)
        clips.check_sample_weight(video, sample_weight)
        stream = stream and not self._evaluating
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


def _any_length(spec) -> bool:
    """Whether a dataset's element spec leaves its clips' length unknown (None)."""
    if isinstance(spec, tuple):
        spec = keras.utils.unpack_x_y_sample_weight(spec)[0]
    return isinstance(spec, tf.TensorSpec) and spec.shape.rank == 5 and spec.shape[1] is None
