"""The proxy's loss and mIOU agree with the release's definitions and with the data package."""

import numpy as np
import tensorflow as tf

from dpc_tf.data import StreamingMeanIoU
from dpc_tf.proxy.scoring import confusion_matrix, mean_iou, predictions, segmentation_loss


def test_miou_matches_streaming_mean_iou_with_ignored_pixels():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 5, (3, 20, 20, 1)).astype(np.uint8)
  labels[rng.random(labels.shape) < 0.2] = 255
  labels[labels == 4] = 3  # class 4 is never labelled ...
  predicted = rng.integers(0, 5, (3, 20, 20)).astype(np.uint8)
  predicted[predicted == 2] = 1  # ... and class 2 never predicted
  metric = StreamingMeanIoU(5)
  metric.update_state(labels, predicted[..., None])
  matrix = confusion_matrix(labels, predicted, 5)
  miou, class_iou, accuracy = mean_iou(matrix)
  assert matrix.sum() == np.count_nonzero(labels != 255)
  np.testing.assert_allclose(miou, float(metric.result()), rtol=1e-6)
  np.testing.assert_allclose(class_iou, metric.per_class_iou().numpy(), rtol=1e-6)
  np.testing.assert_allclose(accuracy, float(metric.pixel_accuracy()), rtol=1e-6)


def test_loss_is_the_mean_cross_entropy_over_valid_pixels_after_upsampling():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(2, 3, 3, 4)).astype(np.float32)
  labels = rng.integers(0, 4, (2, 5, 5, 1)).astype(np.uint8)
  labels[0, 0, 0, 0] = labels[1, 4, 4, 0] = 255
  # align_corners from 3x3 to 5x5: even label pixels sit exactly on logits.
  up = tf.compat.v1.image.resize(logits, [5, 5], align_corners=True).numpy()
  log_p = up - np.log(np.exp(up).sum(-1, keepdims=True))
  valid = labels[..., 0] != 255
  picked = np.take_along_axis(log_p, np.where(valid, labels[..., 0], 0)[..., None], -1)[..., 0]
  expected = -picked[valid].mean()
  np.testing.assert_allclose(float(segmentation_loss(tf.constant(logits), tf.constant(labels))),
                             expected, rtol=1e-5)
  np.testing.assert_array_equal(predictions(tf.constant(logits), tf.constant(labels)).numpy(),
                                up.argmax(-1))
