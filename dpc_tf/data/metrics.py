"""What a pixel counts for: the one label rule, confusion counts and mIOU (REFERENCE.md 5).

The rule, shared by every loss and score (training, evaluation, proxy trial, pretraining):
a label is a class id in [0, C) or IGNORE_LABEL (255: no loss, no score). Any other value is
a data bug (an unmapped Cityscapes labelId, a palette index past the classes, a wrong
num_classes) and is refused, not ignored: ignoring it would train and score on a silently
shrunken set of pixels and report a plausible mIOU, and the release's own rule (weight 0
for 255 only) would crash the CPU cross-entropy or give NaN on a GPU. The loops count such
pixels (`label_masks`) and stop through dpc_tf.training.guard with one line naming them.

mIOU: classes absent from both labels and predictions (IOU denominator 0) have no IOU and are
left out of the mean, like TF1's `tf.metrics.mean_iou`; a class predicted but never
labelled has IOU 0 and counts.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from dpc_tf.data.specs import IGNORE_LABEL


def labels_2d(labels) -> tf.Tensor:
  labels = tf.convert_to_tensor(labels)
  if labels.shape.rank == 4:
    labels = tf.squeeze(labels, -1)
  return tf.cast(labels, tf.int32)


def label_masks(labels, num_classes) -> tuple[tf.Tensor, tf.Tensor]:
  """(valid: a class id in [0, C); bad: neither valid nor IGNORE_LABEL), bool [B, H, W].

  labels: [B, H, W] or [B, H, W, 1]; num_classes may be a tensor.
  """
  labels = labels_2d(labels)
  valid = tf.logical_and(labels >= 0, labels < num_classes)
  bad = tf.logical_and(tf.logical_not(valid), tf.not_equal(labels, IGNORE_LABEL))
  return valid, bad


def count_bad_labels(labels, num_classes) -> tf.Tensor:
  """How many pixels break the label rule (float32 scalar, so replicas can sum it)."""
  return tf.reduce_sum(tf.cast(label_masks(labels, num_classes)[1], tf.float32))


def confusion_counts(labels, predictions, num_classes: int,
                     dtype: tf.DType = tf.float32) -> tf.Tensor:
  """[C, C] counts (row = label, column = prediction) over valid pixels, in `dtype`.

  float32 (the default) so that replicas can all-reduce it on any device: exact up to 2^24
  pixels per cell and call, far above one training batch; evaluation of large images asks
  for float64. Callers accumulate in int64 on the host. Deterministic on GPUs too
  (unsorted_segment_sum has had a deterministic kernel since TF 2.8).
  """
  labels = tf.reshape(labels_2d(labels), [-1])
  predictions = tf.reshape(tf.cast(predictions, tf.int32), [-1])
  valid = tf.logical_and(labels >= 0, labels < num_classes)
  cells = tf.boolean_mask(labels * num_classes + predictions, valid)
  counts = tf.math.unsorted_segment_sum(tf.ones_like(cells, dtype), cells,
                                        num_classes * num_classes)
  return tf.reshape(counts, [num_classes, num_classes])


class IoU(NamedTuple):
  """Scores of a confusion matrix: per_class is NaN where a class was never seen."""
  per_class: np.ndarray
  miou: float
  pixel_accuracy: float


def iou_from_confusion(confusion) -> IoU:
  """Per-class IOU, mean IOU over classes seen (0.0 before any pixel), pixel accuracy."""
  confusion = np.asarray(confusion, np.float64)
  true_positives = np.diag(confusion)
  union = confusion.sum(0) + confusion.sum(1) - true_positives
  present = union > 0
  iou = np.where(present, true_positives / np.where(present, union, 1), np.nan)
  miou = float(iou[present].mean()) if present.any() else 0.0
  total = confusion.sum()
  return IoU(iou, miou, float(true_positives.sum() / total) if total else 0.0)
