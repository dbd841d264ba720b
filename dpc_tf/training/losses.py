"""The one segmentation loss: full training, proxy trials and backbone pretraining use it.

Which pixels count is dpc_tf.data.metrics' label rule (class ids 0..C-1; 255 weight 0;
anything else refused by the loops' guard). The loss is the release's: logits upsampled
(bilinear, align_corners) to the labels, softmax cross-entropy averaged over the valid
pixels of the batch, plus the L2 regularisation. On one device that is
`mean_cross_entropy` + `regularization_loss`.

With R replicas each seeing B / R images, averaging per replica and then averaging replicas
would weigh a pixel by how many valid pixels its replica happened to get. Instead each
replica computes the *sum* of its pixel losses and the count of its valid pixels; the
counts are all-reduced, and replica r contributes

    loss_r = sum_r / (sum over replicas of count) + regularization / R

The optimizer all-reduces (sums) gradients over replicas, so the applied gradient is exactly
the gradient of  mean over every valid pixel of the global batch + regularization,  whatever
R is. No Keras loss object is used, so nothing else divides by R.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from dpc_tf.data.metrics import labels_2d, label_masks
from dpc_tf.layers.common import resize_bilinear


def logits_at_label_size(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
  """float32 logits bilinearly upsampled (align_corners) to the labels' spatial size."""
  logits = tf.cast(logits, tf.float32)
  labels = labels_2d(labels)
  if (logits.shape[1:3].is_fully_defined() and labels.shape[1:3].is_fully_defined()
      and logits.shape[1:3] == labels.shape[1:3]):
    return logits
  return resize_bilinear(logits, tf.shape(labels)[1:3])


def cross_entropy_sum(labels: tf.Tensor, logits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """(sum of the pixel cross-entropies, number of valid pixels), both float32 scalars.

  Valid pixels are the label rule's (dpc_tf.data.metrics); the others carry weight 0 here,
  and the loop's guard refuses a batch with labels that are neither a class nor 255.
  Logits are upsampled to the label size.
  """
  labels = labels_2d(labels)
  logits = logits_at_label_size(logits, labels)
  valid, _ = label_masks(labels, tf.shape(logits)[-1])
  safe_labels = tf.where(valid, labels, tf.zeros_like(labels))
  pixel_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe_labels, logits=logits)
  weights = tf.cast(valid, tf.float32)
  return tf.reduce_sum(pixel_loss * weights), tf.reduce_sum(weights)


def mean_cross_entropy(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
  """The mean over valid pixels on one device (proxy trials, pretraining); 0 with none."""
  total, valid = cross_entropy_sum(labels, logits)
  return total / tf.maximum(valid, 1.0)


def regularization_loss(losses: Sequence[tf.Tensor]) -> tf.Tensor:
  """Sum of the layers' L2 losses in float32 (0 when there are none)."""
  if not losses:
    return tf.constant(0.0, tf.float32)
  return tf.add_n([tf.cast(l, tf.float32) for l in losses])


def count_valid(labels: tf.Tensor, num_classes: int) -> tf.Tensor:
  """Number of pixels whose label is a class id 0..C-1 (float32 scalar)."""
  return tf.reduce_sum(tf.cast(label_masks(labels, num_classes)[0], tf.float32))


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
