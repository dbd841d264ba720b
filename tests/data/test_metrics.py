"""StreamingMeanIoU against a NumPy reference, absent classes, and under tf.distribute."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from dpc_tf.data import StreamingMeanIoU

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def reference(labels, predictions, k, ignore=255, weights=None):
  """(mIOU over classes with a non-empty union, per-class IOU with NaN, pixel accuracy)."""
  labels, predictions = np.ravel(labels), np.ravel(predictions)
  weights = np.ones(labels.shape) if weights is None else np.ravel(weights)
  keep = labels != ignore
  matrix = np.zeros((k, k))
  np.add.at(matrix, (labels[keep], predictions[keep]), weights[keep])
  tp = np.diag(matrix)
  union = matrix.sum(0) + matrix.sum(1) - tp
  with np.errstate(invalid="ignore", divide="ignore"):
    iou = np.where(union > 0, tp / union, np.nan)
  return np.nanmean(iou), iou, tp.sum() / matrix.sum()


def _random_batch(rng, k, shape=(2, 9, 11, 1)):
  labels = rng.integers(0, k, shape)
  labels[rng.random(shape) < 0.15] = 255
  # Predictions right 60% of the time, so that IOUs are far from 0 and 1.
  predictions = np.where(rng.random(shape) < 0.6, labels % k, rng.integers(0, k, shape))
  return labels, predictions


def test_matches_numpy_over_several_batches():
  rng = np.random.default_rng(0)
  metric = StreamingMeanIoU(6)
  all_labels, all_predictions = [], []
  for _ in range(4):
    labels, predictions = _random_batch(rng, 6)
    metric.update_state(tf.constant(labels, tf.int32), tf.constant(predictions, tf.int64))
    all_labels.append(labels)
    all_predictions.append(predictions)
  miou, iou, accuracy = reference(np.stack(all_labels), np.stack(all_predictions), 6)
  assert 0.2 < miou < 0.8
  np.testing.assert_allclose(float(metric.result()), miou, rtol=1e-6)
  np.testing.assert_allclose(metric.per_class_iou().numpy(), iou, rtol=1e-6)
  np.testing.assert_allclose(float(metric.pixel_accuracy()), accuracy, rtol=1e-6)
  metric.reset_state()
  assert float(metric.result()) == 0.0 and float(metric.pixel_accuracy()) == 0.0


def test_absent_classes_are_nan_and_left_out_of_the_mean():
  metric = StreamingMeanIoU(5)
  labels = np.array([[0, 0, 1, 1, 255, 3]])
  predictions = np.array([[0, 1, 1, 1, 4, 2]])  # class 4 only under the ignore label
  metric.update_state(labels, predictions)
  iou = metric.per_class_iou().numpy()
  # 0: 1/2, 1: 2/3, 2: predicted never labelled -> 0 (counted), 3: labelled never right -> 0,
  # 4: seen nowhere that counts -> NaN, excluded.
  np.testing.assert_allclose(iou[:4], [0.5, 2 / 3, 0.0, 0.0], rtol=1e-6)
  assert np.isnan(iou[4])
  np.testing.assert_allclose(float(metric.result()), (0.5 + 2 / 3) / 4, rtol=1e-6)
  np.testing.assert_allclose(float(metric.pixel_accuracy()), 3 / 5, rtol=1e-6)


def test_logits_sample_weights_and_tf_function():
  rng = np.random.default_rng(1)
  labels, _ = _random_batch(rng, 4, shape=(3, 5, 7, 1))
  logits = rng.normal(size=(3, 5, 7, 4)).astype(np.float32)
  weights = np.array([1.0, 0.0, 2.5])
  metric = StreamingMeanIoU(4, from_logits=True)
  tf.function(metric.update_state)(labels, logits, weights)
  expected = reference(labels, logits.argmax(-1)[..., None], 4,
                       weights=np.broadcast_to(weights[:, None, None, None], labels.shape))
  np.testing.assert_allclose(float(metric.result()), expected[0], rtol=1e-6)
  np.testing.assert_allclose(float(metric.pixel_accuracy()), expected[2], rtol=1e-6)


def test_bad_ids_raise():
  metric = StreamingMeanIoU(3)
  with pytest.raises(tf.errors.InvalidArgumentError, match="neither a class id < 3"):
    metric.update_state([[0, 7]], [[0, 1]])
  with pytest.raises(tf.errors.InvalidArgumentError, match="prediction is >= 3"):
    metric.update_state([[0, 1]], [[0, 3]])
  with pytest.raises(ValueError, match="num_classes"):
    StreamingMeanIoU(0)


def test_config_round_trip():
  metric = StreamingMeanIoU(19, ignore_label=0, from_logits=True, name="miou")
  clone = StreamingMeanIoU.from_config(metric.get_config())
  assert (clone.num_classes, clone.ignore_label, clone.from_logits, clone.name) == \
      (19, 0, True, "miou")


_DISTRIBUTED = textwrap.dedent("""
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from dpc_tf.data import StreamingMeanIoU
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
      metric = StreamingMeanIoU(5)
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, (4, 6, 6, 1)); labels[:, 0] = 255
    predictions = np.where(rng.random(labels.shape) < 0.5, labels % 5,
                           rng.integers(0, 5, labels.shape))
    ds = tf.data.Dataset.from_tensor_slices((labels, predictions)).batch(4)
    @tf.function
    def step(batch):
      strategy.run(lambda l, p: metric.update_state(l, p), args=batch)
    for batch in strategy.experimental_distribute_dataset(ds):
      step(batch)
    assert strategy.num_replicas_in_sync == 2
    print(repr(float(metric.result())), repr(float(metric.pixel_accuracy())))
    print(metric.per_class_iou().numpy().tolist())
    """)


def test_sums_over_replicas_under_mirrored_strategy():
  # A subprocess: logical devices must be set before TensorFlow initialises its runtime.
  env = dict(os.environ, PYTHONPATH=_ROOT, TF_CPP_MIN_LOG_LEVEL="3")
  out = subprocess.run([sys.executable, "-c", _DISTRIBUTED], capture_output=True, text=True,
                       env=env, timeout=120, check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  lines = out.stdout.strip().splitlines()
  miou, accuracy = map(float, lines[-2].split())
  rng = np.random.default_rng(3)
  labels = rng.integers(0, 5, (4, 6, 6, 1))
  labels[:, 0] = 255
  predictions = np.where(rng.random(labels.shape) < 0.5, labels % 5,
                         rng.integers(0, 5, labels.shape))
  expected = reference(labels, predictions, 5)
  # Each replica saw half the batch; only the sum over both gives the full-batch numbers.
  np.testing.assert_allclose(miou, expected[0], rtol=1e-6)
  np.testing.assert_allclose(accuracy, expected[2], rtol=1e-6)
  np.testing.assert_allclose(json.loads(lines[-1]), expected[1], rtol=1e-6)
