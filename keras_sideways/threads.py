"""TensorFlow's CPU thread pools: a run's `threads` setting, resolved, applied and read back.

TensorFlow sizes its two pools once per process, when its runtime starts (the first op or
device listing): the inter-op pool runs independent ops side by side (the pipeline
engine's stages within a tick), the intra-op pool splits one op over threads. A setting
must therefore be applied before anything starts TensorFlow, and a process keeps the pools
it started with: runs that want different pools need a process each.

A setting is "auto", or "inter,intra" text such as "2,1", where 0 leaves a pool at
TensorFlow's default (one thread per core). "auto" picks one inter-op thread per core and
one intra-op thread for the pipeline engine, whose stages run concurrently (what `make
bench` measured best for it, docs/performance.md); TensorFlow's defaults for BP and the
batched engine, which run one large op at a time (within about 4% of the best setting
the sweeps found for BP, less than the machine's spread).
"""

from __future__ import annotations

import dataclasses
import os

import tensorflow as tf  # importing it starts nothing: the pools are sized on first use

AUTO = "auto"
ENGINES = ("bp", "batched", "pipeline")  # what trains: BP, or one of Sideways' engines
_EXPECTED = (
    "'auto' or 'inter,intra', two whole numbers >= 0 such as '2,1' ('0,0': TensorFlow's defaults)"
)


@dataclasses.dataclass(frozen=True)
class Threads:
    """Sizes of TensorFlow's inter-op and intra-op thread pools; 0 is TensorFlow's default."""

    inter: int
    intra: int

    def __str__(self) -> str:
        return f"{self.inter},{self.intra}"

    def describe(self) -> str:
        """Both pools in words, e.g. "inter-op 2, intra-op 1" or "inter-op default, ..."."""
        return f"inter-op {self.inter or 'default'}, intra-op {self.intra or 'default'}"


def parse(setting: str) -> Threads | None:
    """The pools `setting` names, or None for "auto".

    Raises:
        ValueError: `setting` is neither "auto" nor two whole numbers >= 0 as "inter,intra".
    """
    if isinstance(setting, str):
        text = setting.strip()
        if text == AUTO:
            return None
        parts = [part.strip() for part in text.split(",")]
        # isascii: str.isdigit also accepts digits such as "²" that int() refuses.
        if len(parts) == 2 and all(part.isascii() and part.isdigit() for part in parts):
            return Threads(int(parts[0]), int(parts[1]))
    raise ValueError(f"expected {_EXPECTED}; got {setting!r}.")


def resolve(setting: str, engine: str, cores: int | None = None) -> Threads:
    """The pools of `setting` for a run of `engine` on `cores` cores.

    Args:
        setting: "auto" or "inter,intra" (see `parse`).
        engine: what trains: "bp", or Sideways' "batched" or "pipeline" engine.
        cores: the cores "auto" counts on; `os.cpu_count()` when None.

    Returns:
        The parsed pools; for "auto", (cores, 1) for the pipeline engine, else (0, 0).
    """
    if engine not in ENGINES:
        raise ValueError(f"Unknown engine {engine!r}; expected one of {', '.join(ENGINES)}.")
    threads = parse(setting)
    if threads is not None:
        return threads
    if engine == "pipeline":
        return Threads(cores or os.cpu_count() or 1, 1)
    return Threads(0, 0)


def in_use() -> Threads:
    """The pools TensorFlow has or will start with in this process (0: its default)."""
    return Threads(
        tf.config.threading.get_inter_op_parallelism_threads(),
        tf.config.threading.get_intra_op_parallelism_threads(),
    )


def inter_op_workers() -> int:
    """How many ops TensorFlow runs side by side here: its inter-op pool (default: cores)."""
    return in_use().inter or os.cpu_count() or 1


def apply(threads: Threads) -> Threads:
    """Sizes TensorFlow's pools to `threads`; returns the pools in use (read back).

    Raises:
        RuntimeError: TensorFlow has already started in this process with other pools.
    """
    running = in_use()
    if running == threads:
        return running
    try:
        tf.config.threading.set_inter_op_parallelism_threads(threads.inter)
        tf.config.threading.set_intra_op_parallelism_threads(threads.intra)
    except RuntimeError:  # TensorFlow's own message does not say which values clashed
        raise RuntimeError(
            f"Cannot size TensorFlow's thread pools to {threads.describe()}: TensorFlow has "
            f"already started in this process with {running.describe()}. Apply the threads "
            "before anything runs a TensorFlow op or lists devices, or run in a fresh process."
        ) from None
    return in_use()
