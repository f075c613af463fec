"""Command-line training, evaluation and benchmark scripts for keras_sideways.

`python -m train.<command>` imports this package first, so TensorFlow starts here, quietly:
its C++ log below errors is off (TF_CPP_MIN_LOG_LEVEL=3, unless set already) and the lines
it writes while it loads, before that setting takes effect (the oneDNN notice, "Could not
find cuda drivers" on a machine without a GPU, absl's "before InitializeLog" warning), are
dropped; anything else it writes then passes through. The commands' child processes inherit
the setting and import this package too. `TF_CPP_MIN_LOG_LEVEL=0 python -m train.train ...`
shows everything. The library (`keras_sideways`) leaves TensorFlow's logging alone.
"""

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


def _import_tensorflow_quietly() -> None:
    """Imports TensorFlow with file descriptor 2 caught, then writes back what is not noise."""
    level = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if level == "0" or "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as caught:
        os.dup2(caught.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
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


_import_tensorflow_quietly()
