"""Train the same config with BP and with Sideways, one after the other, and compare.

This is `make train`:

    python -m train.compare --config train/configs/moving_digits.py --workdir runs/moving_digits

writes runs/moving_digits_bp and runs/moving_digits_sideways (both curves on one chart:
`tensorboard --logdir runs`) and exports saved_models/moving_digits_{bp,sideways}. Each
run has a process of its own, at the thread pools `config.threads` gives its engine.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from keras_sideways.training import (
    ConfigError,
    DivergedError,
    compare_modes,
    comparison_table,
    summary_lines,
)

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Prefix of the two run folders (_bp, _sideways).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # TensorFlow's SavedModel chatter
    try:
        summaries = compare_modes(
            _CONFIG.value, _WORKDIR.value, log=lambda line: print(line, flush=True)
        )
    except (ConfigError, DivergedError) as error:
        sys.exit(f"error: {error}")  # one line, exit status 1: no traceback for bad input
    print()
    print(comparison_table(summaries))
    for summary in summaries.values():
        print("\n".join(summary_lines(summary)))
    print(f"Both runs on one chart: tensorboard --logdir {os.path.dirname(_WORKDIR.value) or '.'}")


if __name__ == "__main__":
    app.run(main)
