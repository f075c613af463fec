"""Layers that look beyond one frame of one lane: batch normalisation and randomness.

docs/algorithm.md ("Normalisation and stochastic layers"). A Sideways stage at a tick
processes one frame of every lane. While a Sideways engine runs (`TickLayers.patched`),
in training mode:

- a `BatchNormalization` normalises with the mean and variance of the rows of the tick
  it is processing (its lanes, and every position but the channel axis), grouped as the
  engine's `rows` say, and leaves its moving statistics alone; the statistics of the
  calls made with `record=True` (each stage's one forward pass per tick, not priming or a
  stash's second pass) are collected, and the model applies one update per step
  (`update_moving_statistics`);
- a `Dropout` (and `SpatialDropout*`) draws its mask from a key of (a per-step seed of the
  layer, the tick whose input the stage processes, the group of lanes), the same in both
  engines, so a stash's second forward pass meets the mask of the tick it recomputes;
- any other layer holding a `keras.random.SeedGenerator` gets that key as its seed
  (the tick-by-tick engine only: the batched engine draws one tensor for all ticks).

Outside training mode every layer is Keras' own: inference uses the moving statistics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Sequence

import keras
import tensorflow as tf

BatchNormalization = keras.layers.BatchNormalization
Dropout = keras.layers.Dropout
SPATIAL_DROPOUTS = tuple(getattr(keras.layers, f"SpatialDropout{d}D") for d in (1, 2, 3))


def sublayers(stages: Sequence[keras.layers.Layer]) -> list:
    """Every layer of the stages, nested ones included, each once, bottom stage first."""
    found, seen = [], set()
    for stage in stages:
        # Keras has no public traversal of sublayers (tests/test_keras_surface.py).
        for layer in stage._flatten_layers(include_self=True, recursive=True):
            if id(layer) not in seen:
                seen.add(id(layer))
                found.append(layer)
    return found


def batch_norms(stages: Sequence[keras.layers.Layer]) -> list:
    """The BatchNormalization layers of the stages, found recursively."""
    return [layer for layer in sublayers(stages) if isinstance(layer, BatchNormalization)]


def _seed_attributes(layer) -> list[str]:
    return [n for n, v in vars(layer).items() if isinstance(v, keras.random.SeedGenerator)]


def random_layers(stages: Sequence[keras.layers.Layer]) -> list:
    """The layers of the stages that draw random numbers from their own SeedGenerator."""
    return [layer for layer in sublayers(stages) if _seed_attributes(layer)]


def unkeyable_layers(stages: Sequence[keras.layers.Layer]) -> list:
    """Random layers other than Dropout: the batched engine cannot key their noise by tick."""
    return [layer for layer in random_layers(stages) if not isinstance(layer, Dropout)]


def check_stages(stages: Sequence[keras.layers.Layer], engine: str) -> None:
    """Raises ValueError for a layer Sideways mode cannot run with `engine` as defined.

    Args:
        stages: the model's stages.
        engine: the engine that will run them, "pipeline" or "batched".

    Raises:
        ValueError: naming the layer, what is wrong, and what to use instead.
    """
    for layer in batch_norms(stages):
        for option in ("synchronized", "renorm"):
            if getattr(layer, option, False):
                raise ValueError(
                    f"BatchNormalization layer {layer.name!r} has {option}=True; Sideways "
                    "normalises each tick over the lanes of its own pipeline "
                    "(docs/algorithm.md, 'Normalisation and stochastic layers'). Use "
                    f"{option}=False, or mode='bp'."
                )
    if engine == "batched":
        for layer in unkeyable_layers(stages):
            raise ValueError(
                f"{type(layer).__name__} layer {layer.name!r} draws its own noise, which "
                "engine='batched' cannot key to the tick of each frame (it draws once for "
                "every frame of the clip). Use engine='pipeline' (or 'auto', which picks it)."
            )


def seed_states(stages: Sequence[keras.layers.Layer]) -> list:
    """The state variables of the random layers' SeedGenerators, which each step advances."""
    return [
        getattr(layer, name).state
        for layer in random_layers(stages)
        for name in _seed_attributes(layer)
    ]


def state_variables(stages: Sequence[keras.layers.Layer]) -> list:
    """What a training step changes besides the weights and the pipeline buffers: the
    moving statistics of batch normalisation and the state of random layers' seeds."""
    found = []
    for layer in batch_norms(stages):
        found += list(layer.non_trainable_variables)
    return found + seed_states(stages)


def update_moving_statistics(statistics: Sequence, keep: tf.Tensor) -> list:
    """One moving-statistics update per step, as Keras' BatchNormalization makes it.

    `statistics` holds (layer, mean, variance) from an engine: the means over the step's
    ticks of the per-tick statistics. Where `keep` is False the statistics stay.
    """
    updates = []
    for layer, mean, variance in statistics:
        momentum = layer.momentum
        for moving, value in ((layer.moving_mean, mean), (layer.moving_variance, variance)):
            old = tf.convert_to_tensor(moving.value)
            new = old * momentum + tf.cast(value, old.dtype) * (1.0 - momentum)
            updates.append(moving.assign(tf.where(keep, new, old)))
    return updates


def grouped_moments(x: tf.Tensor, ids: tf.Tensor, num_groups, axis: int):
    """Mean and variance of each group of rows of x over every axis but `axis`.

    Rows (axis 0) with id -1 count in no group. Returns mean and variance [groups,
    channels], and the number of rows of each group [groups].
    """
    rank = x.shape.rank
    axis = axis % rank
    within = [a for a in range(1, rank) if a != axis]
    counts = tf.math.unsorted_segment_sum(tf.ones_like(ids, x.dtype), ids, num_groups)
    per_count = 1.0 / tf.maximum(counts, 1.0)[:, None]
    mean = tf.math.unsorted_segment_sum(tf.reduce_mean(x, within), ids, num_groups) * per_count
    row_mean = _per_row(mean, ids, rank, axis)
    squares = tf.reduce_mean(tf.square(x - row_mean), within)
    variance = tf.math.unsorted_segment_sum(squares, ids, num_groups) * per_count
    return mean, variance, counts


def _per_row(values: tf.Tensor, ids: tf.Tensor, rank: int, axis: int) -> tf.Tensor:
    """Group values [groups, channels] -> each row's, shaped to broadcast over [rows, ...]."""
    rows = tf.gather(values, tf.maximum(ids, 0))
    shape = [-1] + [tf.shape(values)[1] if a == axis else 1 for a in range(1, rank)]
    return tf.reshape(rows, shape)


def _fold(seed: tf.Tensor, *data) -> tf.Tensor:
    for d in data:
        seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(d, tf.int64))
    return seed


@dataclasses.dataclass
class TickRows:
    """The rows of one pipeline tick: `lanes` real lanes (all when None), then padding.

    `tick` counts from priming (0: the first frame's input), `group` is the group of
    lanes the pipeline is running, `seeds` the per-step seeds of the random layers.
    """

    seeds: tf.Tensor
    tick: tf.Tensor | int
    group: tf.Tensor | int = 0
    lanes: tf.Tensor | int | None = None

    def stat_groups(self, rows):
        if self.lanes is None:
            return tf.zeros([rows], tf.int32), 1
        return tf.where(tf.range(rows) < self.lanes, 0, -1), 1

    def uniform(self, seed, rows, rest, shared):
        key = _fold(seed, self.tick, self.group)
        u = tf.random.stateless_uniform([1 if shared else rows, *rest], key)
        return tf.broadcast_to(u, tf.stack([rows, *rest]))

    def seed(self, seed, layer):
        return _fold(seed, self.tick, self.group)


@dataclasses.dataclass
class ClipRows:
    """The rows of a whole clip batch, b*T + t, lanes run in groups of `capacity`.

    Row (b, t) holds the input of tick `ticks[t]` of lane b; statistics are per tick and
    group of lanes, as the tick-by-tick engine computes them.
    """

    seeds: tf.Tensor
    batch: tf.Tensor
    time: tf.Tensor
    capacity: int | tf.Tensor
    ticks: tf.Tensor

    def _groups(self):
        return (self.batch + self.capacity - 1) // self.capacity

    def stat_groups(self, rows):
        lane_group = tf.range(self.batch) // self.capacity
        ids = lane_group[:, None] * self.time + tf.range(self.time)[None, :]
        return tf.reshape(ids, [-1]), self._groups() * self.time

    def uniform(self, seed, rows, rest, shared):
        groups, capacity = self._groups(), self.capacity

        def one(i):  # the mask of a group of lanes at one tick, as the pipeline draws it
            key = _fold(seed, tf.gather(self.ticks, i // groups), i % groups)
            u = tf.random.stateless_uniform([1 if shared else capacity, *rest], key)
            return tf.broadcast_to(u, [capacity, *rest])

        u = tf.map_fn(
            one,
            tf.range(self.time * groups),
            fn_output_signature=tf.TensorSpec(
                [capacity if isinstance(capacity, int) else None, *rest], tf.float32
            ),
        )
        u = tf.reshape(u, [self.time, groups * capacity, *rest])[:, : self.batch]
        u = tf.transpose(u, [1, 0, *range(2, len(rest) + 2)])
        return tf.reshape(u, [-1, *rest])

    def seed(self, seed, layer):
        raise ValueError(
            f"{type(layer).__name__} layer {layer.name!r} draws its own noise, which "
            "engine='batched' cannot key to the tick of each frame. Use engine='pipeline'."
        )


class _KeyedSeed(keras.random.SeedGenerator):
    """Stands in for a layer's SeedGenerator during a tick: the seed is the tick's key."""

    def __init__(self, owner: TickLayers, index: int, attribute: int):  # no state variable
        self.name = f"keyed_seed_{index}_{attribute}"
        self._owner, self._index, self._attribute = owner, index, attribute

    def next(self, ordered=True):
        return self._owner._seed(self._index, self._attribute)


class TickLayers:
    """The batch-norm and random layers of some stages, with their Sideways semantics.

    Engines enter `patched()` once, then `rows(...)` around every stage call in training
    mode, and read the recorded statistics with `take_statistics()`.
    """

    def __init__(self, stages: Sequence[keras.layers.Layer]):
        self.norms = batch_norms(stages)
        self.random = random_layers(stages)
        self._seed_names = [_seed_attributes(layer) for layer in self.random]
        self._generators = [
            [getattr(layer, name) for name in names]
            for layer, names in zip(self.random, self._seed_names)
        ]
        self._index = {id(layer): i for i, layer in enumerate(self.random)}
        self._rows = None
        self._record = False
        self._recorded = {}
        self._patched = False

    def draw_seeds(self) -> tf.Tensor:
        """One seed per random layer for this step, [layers, 2] int64, from its generator."""
        if not self.random:
            return tf.zeros([0, 2], tf.int64)
        return tf.stack([tf.cast(g[0].next(), tf.int64) for g in self._generators])

    def recording_norms(self) -> list:
        """The batch norms whose statistics a training step collects (the trainable ones)."""
        return [layer for layer in self.norms if layer.trainable]

    def zero_statistics(self) -> list:
        """Per recording norm, zero (mean, variance) sums."""
        return [
            (tf.zeros(layer.moving_mean.shape), tf.zeros(layer.moving_variance.shape))
            for layer in self.recording_norms()
        ]

    def take_statistics(self) -> list:
        """Per recording norm, (mean, variance) recorded since the last take, averaged over
        its calls by their rows (its moving statistics where it recorded none)."""
        taken = []
        for layer in self.recording_norms():
            calls = self._recorded.get(id(layer), [])
            if not calls:
                taken.append((layer.moving_mean.value, layer.moving_variance.value))
                continue
            total = tf.add_n([rows for *_, rows in calls])
            taken.append(
                tuple(tf.add_n([call[i] * (call[2] / total) for call in calls]) for i in range(2))
            )
        self._recorded = {}
        return taken

    @contextlib.contextmanager
    def patched(self):
        """Gives the layers their Sideways behaviour in training mode, while inside."""
        if self._patched or not (self.norms or self.random):
            yield self
            return
        for layer in self.norms:
            layer.__dict__["call"] = functools.partial(self._batch_norm_call, layer)
        for index, layer in enumerate(self.random):
            if isinstance(layer, Dropout):
                layer.__dict__["call"] = functools.partial(self._dropout_call, layer)
            else:
                for attribute, name in enumerate(self._seed_names[index]):
                    layer.__dict__[name] = _KeyedSeed(self, index, attribute)
        self._patched = True
        try:
            yield self
        finally:
            for layer in [*self.norms, *self.random]:
                layer.__dict__.pop("call", None)
            for layer, names, generators in zip(self.random, self._seed_names, self._generators):
                for name, generator in zip(names, generators):
                    layer.__dict__[name] = generator
            self._patched = False

    @contextlib.contextmanager
    def rows(self, rows: TickRows | ClipRows, record: bool = False):
        """The stage calls inside process `rows`; with `record`, their statistics count."""
        saved = self._rows, self._record
        self._rows, self._record = rows, record
        try:
            yield
        finally:
            self._rows, self._record = saved

    # ------------------------------------------------------------ the layers' behaviour
    def _current(self, layer):
        if self._rows is None:
            raise RuntimeError(
                f"{layer.name} ran in training mode inside a Sideways engine but outside a tick."
            )
        return self._rows

    def _seed(self, index: int, attribute: int) -> tf.Tensor:
        rows = self._current(self.random[index])
        return _fold(rows.seed(rows.seeds[index], self.random[index]), attribute)

    def _batch_norm_call(self, layer, inputs, training=None, mask=None):
        if not (training and layer.trainable):
            return type(layer).call(layer, inputs, training=training, mask=mask)
        if mask is not None:
            raise ValueError(f"BatchNormalization {layer.name!r}: masks are not supported.")
        rows = self._current(layer)
        x = tf.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        ids, num_groups = rows.stat_groups(tf.shape(x)[0])
        mean, variance, counts = grouped_moments(x, ids, num_groups, layer.axis)
        if self._record:
            share = (counts / tf.reduce_sum(counts))[:, None]
            step = [tf.stop_gradient(tf.reduce_sum(s * share, 0)) for s in (mean, variance)]
            self._recorded.setdefault(id(layer), []).append((*step, tf.reduce_sum(counts)))
        rank, axis = x.shape.rank, layer.axis % x.shape.rank
        inverse = tf.math.rsqrt(_per_row(variance, ids, rank, axis) + layer.epsilon)
        channel_shape = [-1 if a == axis else 1 for a in range(rank)]
        if layer.scale:
            inverse = inverse * tf.reshape(tf.cast(layer.gamma, x.dtype), channel_shape)
        outputs = (x - _per_row(mean, ids, rank, axis)) * inverse
        if layer.center:
            outputs = outputs + tf.reshape(tf.cast(layer.beta, x.dtype), channel_shape)
        return tf.cast(outputs, layer.compute_dtype)

    def _dropout_call(self, layer, inputs, training=False):
        if not training or layer.rate <= 0:
            return inputs
        if layer.rate >= 1:
            return tf.zeros_like(inputs)
        rows = self._current(layer)
        rest, shared = _noise_shape(layer, inputs)
        seed = rows.seeds[self._index[id(layer)]]
        noise = rows.uniform(seed, tf.shape(inputs)[0], rest, shared)
        kept = noise >= layer.rate
        return tf.where(kept, inputs / (1.0 - layer.rate), tf.zeros_like(inputs))


def _noise_shape(layer, inputs) -> tuple[list[int], bool]:
    """A dropout layer's mask shape past the rows, and whether one mask serves every row."""
    if isinstance(layer, SPATIAL_DROPOUTS):  # whole feature maps: one draw per channel
        channel = 1 if getattr(layer, "data_format", None) == "channels_first" else -1
        shape, shared = [1] * len(inputs.shape), False
        shape[channel] = inputs.shape[channel]
    elif layer.noise_shape is None:
        shape, shared = list(inputs.shape), False
    else:
        shape = [d if d is not None else s for d, s in zip(layer.noise_shape, inputs.shape)]
        shared = layer.noise_shape[0] == 1
    rest = [int(d) for d in shape[1:]]
    return rest, shared
