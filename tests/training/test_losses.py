"""The one loss (trainer, proxy trial, pretraining): label rule, upsampling, replica arithmetic."""

import numpy as np
import pytest
import tensorflow as tf

from dpc_tf.data import metrics
from dpc_tf.training import losses


def _reference_mean_ce(labels, logits):
  labels = labels[..., 0]
  valid = labels != 255
  z = logits - logits.max(-1, keepdims=True)
  log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
  picked = np.take_along_axis(log_p, np.where(valid, labels, 0)[..., None], -1)[..., 0]
  return -(picked * valid).sum() / valid.sum(), valid.sum()


def test_cross_entropy_ignores_255():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 4, 5, 3)).astype(np.float32)
  labels = rng.integers(0, 3, size=(2, 4, 5, 1)).astype(np.int32)
  labels[0, 0, :2] = 255
  expected, count = _reference_mean_ce(labels, logits)
  total, valid = losses.cross_entropy_sum(labels, logits)
  assert float(valid) == count == 38
  assert float(total) / float(valid) == pytest.approx(expected, rel=1e-5)
  assert float(losses.mean_cross_entropy(labels, logits)) == pytest.approx(expected, rel=1e-5)


def test_out_of_range_labels_weigh_nothing_and_are_counted_for_the_guard():
  # The loss stays finite on a data bug (labels 3 and 9 with 3 classes; sparse CE would
  # raise on CPU and give NaN on GPU) so the loop's guard can name it: see test_guard.py.
  logits = tf.constant(np.random.default_rng(2).normal(size=(1, 1, 4, 3)), tf.float32)
  good = tf.constant([[[[0], [2], [255], [1]]]])  # [1, 1, 4, 1]
  bugged = tf.constant([[[[0], [2], [9], [3]]]])
  total, valid = losses.cross_entropy_sum(bugged, logits)
  assert float(valid) == 2 and np.isfinite(float(total))
  first_two, _ = losses.cross_entropy_sum(good[:, :, :2], logits[:, :, :2])
  assert float(total) == pytest.approx(float(first_two), rel=1e-6)
  assert float(metrics.count_bad_labels(bugged, 3)) == 2.0


def test_mean_cross_entropy_upsamples_logits_to_the_labels():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(2, 3, 3, 4)).astype(np.float32)
  labels = rng.integers(0, 4, (2, 5, 5, 1)).astype(np.uint8)
  labels[0, 0, 0, 0] = labels[1, 4, 4, 0] = 255
  # align_corners from 3x3 to 5x5 (as the release): even label pixels sit on logits.
  up = tf.compat.v1.image.resize(logits, [5, 5], align_corners=True).numpy()
  expected, _ = _reference_mean_ce(labels.astype(np.int64), up)
  assert float(losses.mean_cross_entropy(labels, logits)) == pytest.approx(expected, rel=1e-5)
  np.testing.assert_allclose(losses.logits_at_label_size(logits, labels).numpy(), up,
                             rtol=1e-5, atol=1e-6)


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
  assert float(losses.mean_cross_entropy(labels, tf.zeros([1, 2, 2, 3]))) == 0.0
