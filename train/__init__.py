"""Command-line training, evaluation and benchmark scripts for keras_sideways.

`python -m train.<command>` imports this package first. It sets TensorFlow's C++ log below
errors off (TF_CPP_MIN_LOG_LEVEL=3, unless set already) and makes the first import of
TensorFlow, whoever asks for it (Keras, the library, a command), a quiet one: the lines
TensorFlow writes while it loads, before that setting takes effect (the oneDNN notice,
"Could not find cuda drivers" on a machine without a GPU, absl's "before InitializeLog"
warning), are dropped; anything else it writes then passes through. TensorFlow loads only
when something needs it: a command that rewrites a page from raw results (`--report_only`)
never starts it. The commands' child processes import this package too.
`TF_CPP_MIN_LOG_LEVEL=0 python -m train.train ...` shows everything. The library
(`keras_sideways`) leaves TensorFlow's logging alone.
"""

import contextlib
import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile

# What TensorFlow writes as it loads, at any log level: nothing a user can act on.
STARTUP_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:. ]+\d+ (port|cudart_stub|cpu_feature_guard|cuda_executor|cuda_dnn"
    r"|cuda_fft|cuda_blas)\.cc:\d+\] "
    r"|To enable the following instructions: .* rebuild TensorFlow"
)


@contextlib.contextmanager
def _startup_noise_dropped():
    """Catches file descriptor 2 for the block, then writes back what is not noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            lines = caught.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not STARTUP_NOISE.match(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    """TensorFlow's own loader, its package run with the start-up noise dropped."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        try:
            with _startup_noise_dropped():
                self.loader.exec_module(module)
        finally:  # the module keeps its own loader
            module.__loader__ = module.__spec__.loader = self.loader


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` where Python would, once, and hands it a `_QuietLoader`."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


if os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3") != "0" and "tensorflow" not in sys.modules:
    sys.meta_path.insert(0, _QuietTensorFlow())
