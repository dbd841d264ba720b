"""Cityscapes through tfds's `cityscapes/semantic_segmentation`, mapped to the 19 trainIds.

tfds stores *labelIds* (34 ids, many never evaluated); DeepLab trains and scores on the 19
trainIds. The mapping is a 256-entry table applied with one gather inside the tf.data graph,
so it runs in parallel with decoding and never drops into Python.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from dpc_tf.data.specs import CITYSCAPES_LABEL_TO_TRAIN, IGNORE_LABEL

# tfds feature names of the cityscapes builder.
IMAGE_KEY = "image_left"
LABEL_KEY = "segmentation_label"


def trainid_table() -> np.ndarray:
  """uint8 [256]: entry i is the trainId of labelId i (255 for every unevaluated id)."""
  table = np.full(256, IGNORE_LABEL, dtype=np.uint8)
  for label_id, train_id in CITYSCAPES_LABEL_TO_TRAIN.items():
    table[label_id] = train_id
  return table


def labelids_to_trainids(label_ids: tf.Tensor) -> tf.Tensor:
  """Maps a uint8 labelId mask of any shape to trainIds (uint8, 255 = ignore)."""
  table = tf.constant(trainid_table(), dtype=tf.uint8)
  return tf.gather(table, tf.cast(label_ids, tf.int32))
