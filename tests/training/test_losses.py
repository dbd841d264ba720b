"""The pixel loss: ignore label, upsampling, replica arithmetic, confusion counts."""

import numpy as np
import pytest
import tensorflow as tf

from dpc_tf.training import losses


def _reference_mean_ce(labels, logits):
  labels = labels[..., 0]
  valid = labels != 255
  z = logits - logits.max(-1, keepdims=True)
  log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
  picked = np.take_along_axis(log_p, np.where(valid, labels, 0)[..., None], -1)[..., 0]
  return -(picked * valid).sum() / valid.sum(), valid.sum()


def test_cross_entropy_ignores_255_and_out_of_range_labels():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 4, 5, 3)).astype(np.float32)
  labels = rng.integers(0, 3, size=(2, 4, 5, 1)).astype(np.int32)
  labels[0, 0, :2] = 255
  expected, count = _reference_mean_ce(labels, logits)
  total, valid = losses.cross_entropy_sum(labels, logits)
  assert float(valid) == count == 38
  assert float(total) / float(valid) == pytest.approx(expected, rel=1e-5)


def test_logits_are_upsampled_to_the_label_size():
  logits = tf.random.normal([1, 3, 3, 2])
  labels = tf.zeros([1, 5, 5, 1], tf.int32)
  assert losses.logits_at_label_size(logits, labels).shape == (1, 5, 5, 2)
  total, valid = losses.cross_entropy_sum(labels, logits)
  assert float(valid) == 25 and np.isfinite(float(total))


def test_replica_loss_on_one_replica_is_mean_plus_regularization():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(2, 3, 3, 4)).astype(np.float32)
  labels = rng.integers(0, 4, size=(2, 3, 3, 1)).astype(np.int32)
  labels[1] = 255
  expected, _ = _reference_mean_ce(labels, logits)
  strategy = tf.distribute.get_strategy()
  def fn():
    n = losses.global_valid_pixels(labels, 4)
    return losses.replica_loss(labels, logits, tf.constant(0.5), n, 1)
  total, data = strategy.run(fn)
  assert float(data) == pytest.approx(expected, rel=1e-5)
  assert float(total) == pytest.approx(expected + 0.5, rel=1e-5)


def test_all_ignored_batch_gives_zero_data_loss_not_nan():
  labels = tf.fill([1, 2, 2, 1], 255)
  total, data = losses.replica_loss(labels, tf.zeros([1, 2, 2, 3]), tf.constant(0.0),
                                    tf.constant(0.0), 1)
  assert float(data) == 0.0 and float(total) == 0.0


def test_confusion_counts_rows_are_labels():
  labels = tf.constant([[[0], [1], [255]], [[2], [1], [1]]])[None]
  predictions = tf.constant([[0, 2, 1], [2, 1, 0]])[None]
  counts = losses.confusion_counts(labels, predictions, 3).numpy()
  np.testing.assert_array_equal(counts, [[1, 0, 0], [1, 1, 1], [0, 0, 1]])
