"""Video datasets as `tf.data` pipelines of `(video, target)` for `SidewaysModel.fit`.

Every builder yields video as float32 [batch, time, height, width, channels] in [0, 1] and
takes clip_length, temporal_stride (stride s takes source frames 0, s, 2s, ...), image_size,
batch_size, shuffle and seed:

- `moving_digits`: bouncing handwritten digits, generated offline (the default dataset).
- `tfds_video`: any tensorflow-datasets dataset with a Video feature (ucf101, moving_mnist).
- `video_folder`: a folder of video files, one subfolder per class, decoded with PyAV.

`consecutive_chunks` turns batches of long videos into consecutive chunks for a stateful
pipeline (`SidewaysModel(..., stateful=True)`), which then fills once per video.
"""

from keras_sideways.data.digits import NUM_CLASSES as NUM_DIGIT_CLASSES
from keras_sideways.data.digits import digit_split_indices, moving_digits
from keras_sideways.data.streaming import consecutive_chunks
from keras_sideways.data.tfds_videos import PRESETS, tfds_video
from keras_sideways.data.video_files import folder_class_names, video_folder

__all__ = [
    "NUM_DIGIT_CLASSES",
    "PRESETS",
    "consecutive_chunks",
    "digit_split_indices",
    "folder_class_names",
    "moving_digits",
    "tfds_video",
    "video_folder",
]
