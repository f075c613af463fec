"""Train one model with Sideways or BP from a config, log to TensorBoard, export a SavedModel.

    python -m train.train --config train/configs/moving_digits.py --workdir runs/moving_digits
    python -m train.train --config train/configs/moving_digits.py --workdir runs/digits_bp \
        --config.mode=bp --config.data.temporal_stride=2
"""

from absl import app, flags, logging
from ml_collections import config_flags

from keras_sideways.training import summary_lines, train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Logs and checkpoints; its name names the export.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # TensorFlow's SavedModel chatter
    summary = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    print("\n".join(summary_lines(summary)))


if __name__ == "__main__":
    app.run(main)
