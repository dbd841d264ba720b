"""The segmentation loss, exact under any number of replicas, and per-step confusion counts.

DeepLab's loss is the softmax cross-entropy averaged over the *valid* pixels of the batch
(ignore label weight 0) plus the L2 regularisation. With R replicas each seeing B / R
images, averaging per replica and then averaging replicas would weigh a pixel by how many
valid pixels its replica happened to get. Instead each replica computes the *sum* of its
pixel losses and the count of its valid pixels; the counts are all-reduced, and replica r
contributes

    loss_r = sum_r / (sum over replicas of count) + regularization / R

The optimizer all-reduces (sums) gradients over replicas, so the applied gradient is exactly
the gradient of  mean over every valid pixel of the global batch + regularization,  whatever
R is. No Keras loss object is used, so nothing else divides by R.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from dpc_tf.layers.common import resize_bilinear


def _labels_2d(labels: tf.Tensor) -> tf.Tensor:
  labels = tf.convert_to_tensor(labels)
  if labels.shape.rank == 4:
    labels = tf.squeeze(labels, -1)
  return tf.cast(labels, tf.int32)


def logits_at_label_size(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
  """float32 logits bilinearly upsampled (align_corners) to the labels' spatial size."""
  logits = tf.cast(logits, tf.float32)
  labels = _labels_2d(labels)
  if (logits.shape[1:3].is_fully_defined() and labels.shape[1:3].is_fully_defined()
      and logits.shape[1:3] == labels.shape[1:3]):
    return logits
  return resize_bilinear(logits, tf.shape(labels)[1:3])


def cross_entropy_sum(labels: tf.Tensor, logits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """(sum of the pixel cross-entropies, number of valid pixels), both float32 scalars.

  A pixel is valid when its label is a class id 0..C-1; the ignore label (255) and any
  other value outside that range carry weight 0. Logits are upsampled to the label size.
  """
  labels = _labels_2d(labels)
  logits = logits_at_label_size(logits, labels)
  num_classes = tf.shape(logits)[-1]
  valid = tf.logical_and(labels >= 0, labels < num_classes)
  safe_labels = tf.where(valid, labels, tf.zeros_like(labels))
  pixel_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe_labels, logits=logits)
  weights = tf.cast(valid, tf.float32)
  return tf.reduce_sum(pixel_loss * weights), tf.reduce_sum(weights)


def regularization_loss(losses: Sequence[tf.Tensor]) -> tf.Tensor:
  """Sum of the layers' L2 losses in float32 (0 when there are none)."""
  if not losses:
    return tf.constant(0.0, tf.float32)
  return tf.add_n([tf.cast(l, tf.float32) for l in losses])


def count_valid(labels: tf.Tensor, num_classes: int) -> tf.Tensor:
  """Number of pixels whose label is a class id 0..C-1 (float32 scalar)."""
  labels = _labels_2d(labels)
  valid = tf.logical_and(labels >= 0, labels < num_classes)
  return tf.reduce_sum(tf.cast(valid, tf.float32))


def global_valid_pixels(labels: tf.Tensor, num_classes: int) -> tf.Tensor:
  """Valid pixels of the *global* batch, inside strategy.run (all-reduced over replicas).

  Computed from the labels alone, before the forward pass, so that the differentiated
  function itself holds no collective (which lets it be XLA-compiled).
  """
  context = tf.distribute.get_replica_context()
  return context.all_reduce(tf.distribute.ReduceOp.SUM, count_valid(labels, num_classes))


def replica_loss(labels: tf.Tensor, logits: tf.Tensor, regularization: tf.Tensor,
                 global_valid: tf.Tensor, num_replicas: int) -> tuple[tf.Tensor, tf.Tensor]:
  """This replica's share of the global loss (see the module docstring).

  Returns (loss to differentiate, this replica's share of the mean cross-entropy); summed
  over replicas they give the global loss and the global mean cross-entropy.
  """
  loss_sum, _ = cross_entropy_sum(labels, logits)
  data_loss = loss_sum / tf.maximum(tf.stop_gradient(global_valid), 1.0)
  return data_loss + regularization / float(num_replicas), data_loss


def confusion_counts(labels: tf.Tensor, predictions: tf.Tensor, num_classes: int) -> tf.Tensor:
  """float32 [C, C] counts (row = label, column = prediction) over valid pixels.

  float32 so that replicas can all-reduce it on any device; exact up to 2^24 pixels per cell
  and call, far above one training batch. Callers accumulate in int64 on the host.
  """
  labels = tf.reshape(_labels_2d(labels), [-1])
  predictions = tf.reshape(tf.cast(predictions, tf.int32), [-1])
  valid = tf.logical_and(labels >= 0, labels < num_classes)
  cells = tf.boolean_mask(labels * num_classes + predictions, valid)
  counts = tf.math.unsorted_segment_sum(tf.ones_like(cells, tf.float32), cells,
                                        num_classes * num_classes)
  return tf.reshape(counts, [num_classes, num_classes])
