"""SidewaysModel: the Keras face of Sideways and of its backprop baseline.

What the model is (stages, options, build, call, state, saving, export); its trainer half
(steps, gradients, losses, metrics) is `trainer.SidewaysTrainer`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_sideways import clips, delays, options, threads
from keras_sideways import placement as placements
from keras_sideways.engines import batched, bp, pipeline, tick_layers, windows
from keras_sideways.engines.buffers import PipelineBuffers
from keras_sideways.graph import VIDEO, StageGraph, check_inputs, with_delay_lines
from keras_sideways.layers import Relay
from keras_sideways.placement import device_scope
from keras_sideways.trainer import SidewaysTrainer


class CheckpointError(ValueError, OSError):
    """A checkpoint that is missing or cannot be read; the message names the file.

    It is an OSError too, so Keras' BackupAndRestore falls back to its previous backup.
    """


MODES, ENGINES = options.MODES, options.ENGINES
_PIPELINE = "pipeline_"  # the prefix of a stream's buffers in a checkpoint


@keras.saving.register_keras_serializable(package="keras_sideways")
class SidewaysModel(SidewaysTrainer, keras.Model):
    """Per-frame stages trained on video with Sideways or with backprop.

    Args:
        stages: the stages, bottom first: a list of Keras layers or models, each a
            per-frame function [N, ...] -> [N, ...], or a `keras.Sequential` whose
            layers become the stages. At least two.
        inputs: what each stage reads, bottom first (None: a chain, stage k reads stage
            k-1). One entry per stage: a source, or a list of sources, each an earlier
            stage's index or `ks.VIDEO`. A stage of several sources is called on the list
            of their outputs, in that order (a Functional model with several inputs, or a
            layer such as `keras.layers.Concatenate`). Every stage but the last (the top,
            which the loss scores) must be read by a later one. Every edge carries its
            source's output of the previous tick; errors come back one tick per edge and
            add up where a stage has several readers (docs/algorithm.md, "Stage graphs").
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
            devices (GPUs/TPUs, else CPUs); None leaves placement to TensorFlow. Devices
            of other tasks ("/job:worker/replica:0/task:1/device:GPU:0") once connected
            to a cluster (`keras_sideways.cluster`). Under a tf.distribute strategy of R
            replicas, a list of R such lists: replica r runs its stages on its own list
            (data x depth, docs/distributed.md).
        stash_depth: Sideways mode's fidelity knob (docs/algorithm.md, "Stash depth"):
            stage k keeps its last D_k inputs and pairs each error with the input of the
            frame it was born from when D_k covers its frame gap 2(L-1-k). "full" (the
            default) gives exact per-frame gradients, pipelined; 0 is the paper's
            Sideways; an int applies to every stage, a list of L ints to each.
        delay_warmup_steps: Sideways mode's delay-aware learning rate
            (docs/algorithm.md, "Delay-aware learning rate"; PipeMare's rescheduling):
            over the first N steps, stage k's update is scaled by (1 + g_k)^-(1 - t/N),
            g_k its frame gap after the stash, so the stages with the oldest errors
            start slow. 0 (the default) keeps the paper's uniform learning rate.
        drain: fill and drain each clip (docs/algorithm.md, "Fill and drain"): the
            pipeline runs 2(L-1) more ticks on the clip's last frame, so that every frame
            reaches the top and every frame's error reaches the bottom, and the loss
            scores each frame once (without it, a clip's last L-1 frames never reach the
            loss and the primed frame 0 is scored L times). "auto" (the default) drains
            when the stash leaves no frame gap (`stash_depth="full"`) and the model does
            not stream: the pseudo-gradient is then BP's gradient, on any video, and the
            batched passes compute it at BP's cost. The tick-by-tick loop pays the bubble,
            (T + 2(L-1)) / T ticks per clip of T frames. True or False force it (not for
            streams, `stateful=True`). True drains a stage graph without delay lines too:
            each frame's errors reach a stage along every path, the skips' sooner.

        delay_lines: for a stage graph (`inputs`), hold every skip edge j -> k in a
            delay line of depth(k) - depth(j) - 1 relays (`ks.layers.Relay`, one tick
            each; `model.stages` and `model.graph` include them), so that every path
            brings a stage the same frame and every error it gets was born from one frame
            (docs/algorithm.md, "Delay lines"). With a full stash and the drain, a graph
            then trains with BP's gradient too. Without them a skip brings a newer frame
            than the long path, sooner (Skip-Sideways' fresher errors). "auto" (the
            default): with `stash_depth="full"`. A chain has no skip edges.

        The defaults (`stash_depth="full"`, `drain="auto"`, `delay_lines="auto"`) train
        with BP's gradient, pipelined; `SidewaysModel(stages, stash_depth=0)` is the
        paper's Sideways. Which to use when, and what each costs: README.md, "Choosing the
        settings".
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
        inputs: Sequence | None = None,
        stateful: bool = False,
        engine: str = "auto",
        placement: Sequence[str] | str | None = None,
        stash_depth: int | str | Sequence[int] = "full",
        delay_warmup_steps: int = 0,
        pipeline_chunk: int | str = "auto",
        drain: bool | str = "auto",
        delay_lines: bool | str = "auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        stages = options.check_stages(stages)
        options.check_options(mode, stateful, engine)
        self.drain = options.check_drain(drain, stateful)  # as given; `graph.drain` resolved
        self.delay_lines = options.check_delay_lines(delay_lines)  # as given
        placement = options.check_placement(placement, len(stages))
        self.mode = mode
        self.stateful = stateful
        self.engine = engine
        self.placement = placement
        if isinstance(stash_depth, (np.ndarray, np.generic)):  # as the list or int it holds:
            stash_depth = stash_depth.tolist()  # a numpy value saved a config no load took
        self.stash_depth = stash_depth
        if inputs is not None:
            inputs = check_inputs(inputs)
            if len(inputs) != len(stages):
                raise ValueError(
                    f"inputs needs one entry per stage ({len(stages)}); got {len(inputs)}: "
                    f"{[list(s) for s in inputs]}."
                )
        # What each stage reads, as given (None: a chain); not `inputs`, which Keras reads
        # as a Functional model's input tensors.
        self.stage_sources = None if inputs is None else [list(s) for s in inputs]
        # The stages the engines run: the given ones, and the relays of the delay lines.
        graph_inputs, origins = inputs, range(len(stages))
        if inputs is None:
            graph_inputs = StageGraph.chain(len(stages)).inputs
        else:
            # Checked as given first, so that a refusal names the stages as given.
            StageGraph.of(inputs, windows=options.check_windows(stages))
            if options.resolve_delay_lines(delay_lines, stash_depth):
                graph_inputs, origins = with_delay_lines(inputs)
        self.origins = tuple(origins)  # per stage run: a given stage's index, or a relay's edge
        self.stages = [stages[o] if isinstance(o, int) else _relay(o) for o in self.origins]
        per_stage = lambda values, relay: _expanded(values, self.origins, relay)  # noqa: E731
        # How the stages connect, where each runs, its window and stash: the one object
        # the engines, buffers and export read (devices set by "auto" placement in build).
        # A placement per replica (data x depth): the graph holds replica 0's devices.
        self.replica_devices = None
        if isinstance(placement, list) and not isinstance(placement[0], str):
            self.replica_devices = [per_stage(p, _source_device) for p in placement]
        relayed = len(self.stages) > len(stages)
        if relayed and isinstance(stash_depth, Sequence) and not isinstance(stash_depth, str):
            if len(stash_depth) != len(stages):
                raise ValueError(
                    f"stash_depth as a list needs one depth per stage ({len(stages)}); got "
                    f"{len(stash_depth)}: {list(stash_depth)}."
                )
            stash_depth = per_stage(list(stash_depth), lambda *_: 0)  # a relay stashes nothing
        devices = None  # a flat list of devices, one per given stage, expanded to the relays
        if self.replica_devices is None and _listed(placement):
            devices = per_stage(_listed(placement), _source_device)
        self.graph = StageGraph.of(
            graph_inputs,
            self.replica_devices[0] if self.replica_devices else devices,
            per_stage(options.check_windows(stages), lambda *_: 1),
            stash_depth,
            self.drain,
            stateful,
            relays=[not isinstance(o, int) for o in self.origins],
        )
        self.delay_warmup_steps = delays.check_warmup_steps(delay_warmup_steps)
        if self.delay_warmup_steps and mode == "sideways" and not any(self.graph.gaps()):
            warnings.warn(
                f"delay_warmup_steps={delay_warmup_steps} does nothing here: it scales the "
                "steps of stages whose pseudo-gradients pair frames apart, and every stage "
                f"here pairs a frame with itself (stash_depth={stash_depth!r}: BP's "
                "gradient). It is for the paper's pairing: add stash_depth=0 (or a partial "
                "stash), or leave it at 0.",
                UserWarning,
                stacklevel=2,
            )
        self.pipeline_chunk = options.check_chunk(pipeline_chunk, stateful)
        if self.replica_devices is not None and (stateful or pipeline_chunk == 1):
            raise ValueError(
                "A placement per replica (data x depth) runs clips in blocks of ticks: it "
                "cannot stream (stateful=True) or run tick by tick (pipeline_chunk=1); got "
                f"stateful={stateful}, pipeline_chunk={pipeline_chunk!r}."
            )
        self.buffers: PipelineBuffers | None = None
        self.frame_shape: tuple | None = None  # set by build
        self._stream_started = False  # a training step ran since build or reset (a stream)
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
            self.graph = self.graph.placed(
                placements.auto_placement(self.stages, sample, graph=self.graph)
            )
        placements.check_fits_strategy(self.devices, self.distribute_strategy, self.replica_devices)
        frame = keras.KerasTensor((batch, *input_shape[2:]), dtype=self.compute_dtype)
        output_shapes = _build_stages(self.stages, frame, self.graph, self.origins)
        self._output_shapes = output_shapes  # per stage, per lane: `stash_bytes`
        if self.mode == "sideways":
            self._check_layers()  # again: stages may make their layers when built
        self.frame_shape = tuple(input_shape[2:])
        # Stashes and window histories only where the tick-by-tick loop runs.
        clip = input_shape[1]
        self._ticking = self.resolved_engine == "pipeline" and (
            clip is None or self.resolved_chunk(clip) is None
        )
        self.buffers = self._new_buffers(batch)
        self._stream_started = False
        # The buffers are state of a run, not weights: no tracked attribute holds them, so
        # Keras neither counts them as parameters nor saves them with the weights (a
        # stream's checkpoint keeps them by name: `save_own_variables`).

    # Per stage, from `graph`: its device (None: TensorFlow's choice), the inputs it stashes
    # (`stash_depth`, capped at its frame gap) and the frames it sees per tick.
    devices = property(lambda self: list(self.graph.devices))
    stash = property(lambda self: list(self.graph.stash))
    windows = property(lambda self: list(self.graph.windows))

    def replica_graph(self) -> StageGraph:
        """The stage graph of the tf.distribute replica tracing the step: `graph` on the
        replica's own devices under a placement per replica, else `graph` itself."""
        if self.replica_devices is None:
            return self.graph
        return self.graph.placed(self.replica_devices[placements.replica_index()])

    def stash_bytes(self, batch: int | None = None) -> int:
        """Bytes of the stages' stashed inputs for a batch of `batch` lanes (the built
        batch by default): Σ_k D_k inputs of stage k, in the compute dtype, and the W-1
        shares of its input's errors a temporal stage holds when it sends whole errors.
        The tick-by-tick loop keeps them (`PipelineBuffers.stashes`, `pending`); the
        batched passes and blocks of ticks keep the clip's activations instead, as BP
        does. 0 before `build`."""
        if batch is not None and (
            isinstance(batch, bool) or not isinstance(batch, int) or batch < 1
        ):
            raise ValueError(f"batch must be a whole number >= 1 (or None); got {batch!r}.")
        if getattr(self, "_output_shapes", None) is None:
            return 0
        batch = batch or self.buffers.capacity
        shapes = self.graph.input_shapes(self.frame_shape, self._output_shapes)
        size = tf.as_dtype(self.compute_dtype).size
        kept = [depth + self.graph.holds(k) for k, depth in enumerate(self.stash)]
        return sum(n * batch * size * int(np.prod(shape)) for n, shape in zip(kept, shapes))

    def _new_buffers(self, lanes: int) -> PipelineBuffers:
        return PipelineBuffers(
            self.graph,
            self._output_shapes,
            capacity=lanes,
            frame_shape=self.frame_shape,
            dtype=self.compute_dtype,
            ticking=self._ticking,
            # A stream keeps the seeds its random layers key their noise with.
            random_layers=len(tick_layers.random_layers(self.stages)) if self.stateful else 0,
        )

    def reset_pipeline(self) -> None:
        """Clears the pipeline buffers: the next Sideways step primes on its first frame.

        A stream (`stateful=True`) then starts anew, and its next training batch may be
        of another size (`size_stream`)."""
        if self.buffers is not None:
            self.buffers.reset()
        self._stream_started = False

    def size_stream(self, batch: int, start: bool = False) -> None:
        """Gives a stream whose lanes hold nothing yet the size of its training batches.

        `build` gives the lanes the batch of whatever built the model first: `predict`,
        `evaluate`, a call, `build((None, ...))` (one lane). Those take any batch size and
        leave the stream alone; so until a training step (`start`) has run since the
        model was built or `reset_pipeline()`, the lanes are made again for `batch`
        (`fit`, `train_on_batch` and `compute_gradients` call this first). From the first
        step on, the stream's batch size is fixed. Other models need nothing here.
        """
        if not self.stateful or self.buffers is None or self._stream_started:
            return
        if batch != self.buffers.capacity:
            with self.distribute_strategy.scope():
                self.buffers = self._new_buffers(batch)
            self.train_function = None  # traced with the old lanes: Keras traces it again
            self._gradient_fns = {}
        self._stream_started = start

    # ----------------------------------------------------------------- forward
    @tf.autograph.experimental.do_not_convert  # as the steps are (SidewaysTrainer)
    def call(self, video, training=None):
        """Per-frame outputs [batch, time, ...]: every frame through every stage."""
        clips.check_video(video)
        return bp.frame_outputs(self.stages, video, training, self.replica_graph())

    def pipelined_call(self, video, training=None):
        """The pipeline's output at every tick, [batch, time, ...], for a clip primed afresh.

        Unlike `call`, the output at tick t belongs to frame max(t - L + 1, 0): what a
        streaming deployment (the exported `stream` endpoint) emits.
        """
        clips.check_video(video)
        return pipeline.pipelined_forward(self.stages, video, bool(training), self.graph)

    # ----------------------------------------------------------------- engines

    @property
    def resolved_engine(self) -> str:
        """The engine Sideways mode runs: "pipeline" or "batched"."""
        if self.placement == "auto" and not self.built:
            spread = len(placements.visible_devices()) > 1
        else:
            spread = placements.distinct_devices(self.devices) > 1
        batched_ok = not tick_layers.unkeyable_layers(self.stages)
        return options.resolve_engine(self.engine, self.stateful, spread, batched_ok)

    def resolved_chunk(self, clip_length: int | None) -> int | None:
        """Ticks per block the pipeline engine runs clips of `clip_length` (None: unknown)
        in, for this model's `pipeline_chunk`, devices and this process's inter-op
        threads; None where it runs tick by tick."""
        keyed = not tick_layers.unkeyable_layers(self.stages)
        if clip_length is not None:  # a drained clip runs its tail too
            clip_length = batched.ticks_run(self.graph, self.stages, clip_length)
        placed = placements.distinct_devices(self.devices)
        workers = placed if placed > 1 else threads.inter_op_workers()
        return options.resolve_chunk(
            self.pipeline_chunk, clip_length, self.stateful, keyed, workers, len(self.stages)
        )

    def _check_layers(self) -> None:
        """Raises ValueError for a stage layer Sideways cannot run as docs/algorithm.md
        defines it ("Normalisation and stochastic layers"), naming what to use instead."""
        tick_layers.check_stages(self.stages, self.resolved_engine)

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
        _load_seeds(tick_layers.seed_states(self.stages), store, keys)
        streamed = {k[len(_PIPELINE) :]: k for k in keys if k.startswith(_PIPELINE)}
        if self.stateful and self.buffers is not None and streamed:
            _load_stream(self.buffers, store, streamed)
            self._stream_started = True  # it goes on at the batch size it was saved at

    def load_weights(self, filepath, *args, **kwargs):
        """`keras.Model.load_weights`, with a CheckpointError naming a missing or bad file."""
        path = os.fspath(filepath)
        if not os.path.exists(path):
            raise CheckpointError(f"No checkpoint at {path}.")
        try:
            return super().load_weights(filepath, *args, **kwargs)
        except ValueError as error:  # Keras: weights that do not fit the stages
            if not self.built or any(reason in str(error) for reason in _STREAM_REASONS):
                # the structure fits: a stream of another batch size, or no model yet
                raise CheckpointError(f"Cannot load the checkpoint {path}: {error}") from error
            raise CheckpointError(
                f"Cannot load the checkpoint {path}: its weights do not fit this model's "
                f"stages{_stage_counts(path, self)}. It was saved from a model of "
                "another structure (another number of stages, other layers or widths; "
                "a per-frame Functional model's file goes to that model, whose layers "
                f"the stages ks.cut made from it share); Keras says: {error}"
            ) from error
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
            inputs=self.stage_sources,
            stateful=self.stateful,
            engine=self.engine,
            placement=self.placement,
            stash_depth=self.stash_depth,
            delay_warmup_steps=self.delay_warmup_steps,
            pipeline_chunk=self.pipeline_chunk,
            drain=self.drain,
            delay_lines=self.delay_lines,
        )
        config["stages"] = [  # as given: the relays are made again
            keras.saving.serialize_keras_object(s)
            for s, o in zip(self.stages, self.origins)
            if isinstance(o, int)
        ]
        return config

    @classmethod
    def from_config(cls, config):
        """The model of `get_config`. A placement on devices this process does not see (a
        model saved on a machine with more devices) is dropped with a warning: the
        stages then run where TensorFlow puts them, as with `placement=None`."""
        config = dict(config)
        stages = [keras.saving.deserialize_keras_object(s) for s in config.pop("stages")]
        placement = config.get("placement")
        unseen = isinstance(placement, (list, tuple)) and placements.unknown_devices(placement)
        if unseen:
            warnings.warn(
                f"The saved model's placement {list(placement)} names devices this process "
                f"does not see ({', '.join(dict.fromkeys(unseen))}); its "
                "stages run where TensorFlow puts them (placement=None). To place them, "
                "make the model with a placement of visible devices and load_weights.",
                UserWarning,
                stacklevel=2,
            )
            config["placement"] = None
        return cls(stages, **config)


def _stage_counts(path: str, model) -> str:
    """ " (the file holds N layers at its top; this model holds M, its stages)", for a
    .weights.h5 file (a SidewaysModel's top layers are its stages and delay lines)."""
    try:
        import h5py

        with h5py.File(path, "r") as f:
            stages = len(f["layers"])
    except (ImportError, OSError, KeyError):
        return ""
    relays = sum(isinstance(stage, Relay) for stage in model.stages)
    plural = "s" if relays > 1 else ""
    held = "its stages" + (f" and {relays} delay-line relay{plural}" if relays else "")
    holds = len(model.stages)
    return f" (the file holds {stages} layers at its top; this model holds {holds}, {held})"


def _relay(origin) -> keras.layers.Layer:
    """The relay at tick `tick` of the delay line from `source` to `reader`."""
    source, reader, tick = origin
    name = "video" if source == VIDEO else f"stage_{source}"
    return Relay(name=f"delay_line_{name}_to_stage_{reader}_tick_{tick}")


def _source_device(values, source, reader):
    """A relay runs on its source's device (the video's reader's, for the video)."""
    return values[reader] if source == VIDEO else values[source]


def _expanded(values, origins, relay) -> list:
    """Per-stage `values` of the given stages, for the stages the engines run: a given
    stage's own, a relay's `relay(values, source, reader)`."""
    return [values[o] if isinstance(o, int) else relay(values, o[0], o[1]) for o in origins]


def _listed(placement):
    """A flat placement as given, else None ("auto" or None: set in build)."""
    return placement if isinstance(placement, list) else None


def _check_fixed_inputs(
    k: int, stage, specs: list, graph: StageGraph, origins: tuple | None = None
) -> None:
    """ValueError for a stage that is a Functional model (a stage of `ks.cut`) whose
    inputs' fixed shapes differ from what it reads: Keras lets an axis of size 1 through
    its own check, and the step then fails on the frame inside the stage."""
    inputs = getattr(stage, "inputs", None) if isinstance(stage, keras.Model) else None
    if not inputs or len(inputs) != len(specs) or graph.windows[k] != 1:
        return
    name = f"Stage {_given(k, origins)} ({stage.name})"
    for expected, spec in zip(inputs, specs):
        if clips.shapes_differ(tuple(expected.shape[1:]), tuple(spec.shape[1:])):
            given = ", ".join(clips.shape_text(tf.TensorShape(x.shape)) for x in specs)
            wanted = ", ".join(clips.shape_text(tf.TensorShape(x.shape)) for x in inputs)
            raise ValueError(
                f"{name} cannot take what it reads, {given} (from "
                f"{_sources_text(graph, k, origins)}): its inputs are {wanted}. Give video of "
                "the frames the model was made for, or make the model for these."
            )


def _build_stages(
    stages, frame: keras.KerasTensor, graph: StageGraph, origins: tuple | None = None
) -> list[tuple]:
    """Builds each stage, on its device, on its input in `graph` (the bottom one on
    `frame`, a batch of frames); returns the per-frame shape of each stage's output.
    Errors name the stages as given (`origins`: per stage built, its index as given, or a
    relay's edge), not as delay lines renumber them."""
    batch, outputs, output_shapes = frame.shape[0], [], []
    for k, stage in enumerate(stages):
        name = f"Stage {_given(k, origins)} ({stage.name})"
        read = graph.sources(k, graph.input_of(k, frame, outputs))
        specs = [
            keras.KerasTensor(windows.window_shape(x.shape, graph.windows[k]), x.dtype)
            for x in read
        ]
        _check_fixed_inputs(k, stage, specs, graph, origins)
        with device_scope(graph.devices[k]):  # the stage's weights live on its device
            try:
                x = stage(graph.shaped(k, specs))
            except ValueError as error:  # Keras names the layer, not the stage
                given = ", ".join(clips.shape_text(tf.TensorShape(x.shape)) for x in specs)
                takes = len(getattr(stage, "inputs", None) or ()) if stage.built else 0
                if takes > len(specs):  # a stage of ks.cut, its sources not given
                    raise ValueError(
                        f"{name} takes {takes} inputs and reads {len(specs)}, {given} "
                        f"(from {_sources_text(graph, k, origins)}): give each stage its "
                        "sources with inputs=, as ks.cut returns them (stages, inputs = "
                        "ks.cut(...); SidewaysModel(stages, inputs=inputs))."
                    ) from error
                raise ValueError(
                    f"{name} cannot take what it reads, {given} "
                    f"(from {_sources_text(graph, k, origins)}): {error}"
                ) from error
        if not isinstance(x, keras.KerasTensor):
            several = isinstance(x, (list, tuple, dict))
            got = f"a {type(x).__name__} of {len(x)}" if several else type(x).__name__
            raise ValueError(
                f"{name} must return one tensor per frame; got {got}. "
                "Split it into stages that return one tensor each: a later stage may read "
                "several (inputs=[...])."
            )
        outputs.append(x)
        clips.check_batch_kept(_given(k, origins), stage, batch, x.shape)
        if k in graph.buffered and x.dtype != frame.dtype:
            raise ValueError(
                f"{name} outputs {x.dtype}, but the model computes in "
                f"{frame.dtype}, the dtype its pipeline holds the outputs of stages in: the "
                "stages were made under another dtype policy than the model. Make both "
                "under one global policy (keras.config.set_dtype_policy before either)."
            )
        if None in x.shape[1:]:
            raise ValueError(f"{name} must give outputs of a known shape per frame; got {x.shape}.")
        output_shapes.append(tuple(x.shape[1:]))
    return output_shapes


def _given(k: int, origins: tuple | None):
    """Stage `k`'s index as given (`origins`: see `_build_stages`); a relay gives the
    source of the edge it delays (VIDEO for the video)."""
    if k == VIDEO or origins is None:
        return k
    return origins[k] if isinstance(origins[k], int) else origins[k][0]


def _sources_text(graph: StageGraph, k: int, origins: tuple | None = None) -> str:
    """Where stage `k` reads from, in words: "the video", "stage 1", "stage 0, stage 2"
    (numbered as given: a delay line's relay stands for its source)."""
    given = [_given(s, origins) for s in graph.inputs[k]]
    return ", ".join("the video" if s == VIDEO else f"stage {s}" for s in given)


def _load_seeds(seeds: list, store, keys: list[str]) -> None:
    """Loads the stages' seed states from `store`, saved as `seed_state_<i>` (files of
    earlier versions numbered the buffers, then the seeds: the seeds are last)."""
    numbered = sorted((k for k in keys if k.isdigit()), key=int)
    saved = dict(zip((f"seed_state_{i}" for i in range(len(seeds))), numbered[-len(seeds) :]))
    saved.update({k: k for k in keys if k.startswith("seed_state_")})
    for i, state in enumerate(seeds):
        value = store[saved[f"seed_state_{i}"]] if f"seed_state_{i}" in saved else None
        if value is not None and tuple(value.shape) == tuple(state.shape):
            state.assign(value)


_STREAM_BATCH = "The checkpoint resumes a stream (stateful=True) of batch size"
_STREAM_BUFFERS = "The checkpoint's pipeline state holds the buffers"
_STREAM_REASONS = (_STREAM_BATCH, _STREAM_BUFFERS)  # load_weights passes them on as they are


def _load_stream(pipeline_buffers: PipelineBuffers, store, saved: dict) -> None:
    """Loads a stream's buffers from `store` (`saved`: buffer name to key)."""
    buffers = pipeline_buffers.named_variables
    if set(saved) != set(buffers):
        raise ValueError(
            f"{_STREAM_BUFFERS} {sorted(saved)}, but this "
            f"stream has {sorted(buffers)}: it was saved by a model with other stages, "
            "stash depth or random layers."
        )
    batch = store[saved["activation_0"]].shape[0]
    if batch != pipeline_buffers.capacity:
        raise ValueError(
            f"{_STREAM_BATCH} {batch}, but "
            f"this model was built for batch size {pipeline_buffers.capacity}. Build it for "
            f"batch size {batch} to resume the stream, or load the weights into a model "
            "with stateful=False, which loads them at any batch size."
        )
    for name, buffer in buffers.items():
        buffer.assign(store[saved[name]])
