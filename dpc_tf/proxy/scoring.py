"""Loss and score of a segmentation head, as the release computes them.

The loss upsamples logits (bilinear, align_corners) to the labels and averages the softmax
cross-entropy over pixels whose label is not 255. The score is the mIOU over a confusion
matrix, with the convention of dpc_tf.data.StreamingMeanIoU (classes never labelled nor
predicted have no IOU and are left out of the mean).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from dpc_tf.layers import common

IGNORE_LABEL = 255


def segmentation_loss(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
  """Mean softmax cross-entropy over valid pixels, logits upsampled to the labels first."""
  labels = tf.cast(labels[..., 0], tf.int32)
  if logits.shape[1:3] != labels.shape[1:3]:
    logits = common.resize_bilinear(logits, tf.shape(labels)[1:3])
  valid = tf.not_equal(labels, IGNORE_LABEL)
  ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.where(valid, labels, 0), logits=logits)
  weights = tf.cast(valid, tf.float32)
  return tf.reduce_sum(ce * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)


def predictions(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
  """Class ids (uint8) at the labels' resolution: logits upsampled, then argmax."""
  if logits.shape[1:3] != labels.shape[1:3]:
    logits = common.resize_bilinear(logits, tf.shape(labels)[1:3])
  return tf.cast(tf.argmax(logits, axis=-1), tf.uint8)


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
  """[num_classes, num_classes] int64 counts (row: label, column: prediction), ignoring labels
  outside 0..num_classes-1 (the ignore label). Counted on the host with np.bincount: exact,
  and deterministic on every device (GPU scatter-adds refuse op determinism)."""
  labels = labels.reshape(-1).astype(np.int64)
  predicted = predicted.reshape(-1).astype(np.int64)
  valid = labels < num_classes
  cells = labels[valid] * num_classes + predicted[valid]
  return np.bincount(cells, minlength=num_classes * num_classes).reshape(
      num_classes, num_classes)


def mean_iou(matrix: np.ndarray) -> tuple[float, list[float], float]:
  """mIOU over classes that occur (in labels or predictions), per-class IoU, pixel accuracy."""
  matrix = matrix.astype(np.float64)
  tp = np.diag(matrix)
  union = matrix.sum(0) + matrix.sum(1) - tp
  present = union > 0
  iou = np.where(present, tp / np.maximum(union, 1), np.nan)
  miou = float(np.mean(iou[present])) if present.any() else 0.0
  accuracy = float(tp.sum() / max(matrix.sum(), 1))
  return miou, [None if np.isnan(v) else float(v) for v in iou], accuracy
