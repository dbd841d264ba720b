"""The one label rule, confusion counts and mIOU (every loss and score uses them)."""

import numpy as np
import pytest
import tensorflow as tf

from dpc_tf.data import IGNORE_LABEL, metrics


def test_label_rule_on_hand_made_labels():
  # 3 classes: 0..2 valid; 255 ignored; 3, 7, -1 and 254 are data bugs.
  labels = np.array([[[0, 1, 2, 255], [3, 7, -1, 254]]])[..., None]
  valid, bad = metrics.label_masks(labels, 3)
  np.testing.assert_array_equal(valid.numpy()[0], [[1, 1, 1, 0], [0, 0, 0, 0]])
  np.testing.assert_array_equal(bad.numpy()[0], [[0, 0, 0, 0], [1, 1, 1, 1]])
  assert float(metrics.count_bad_labels(labels, 3)) == 4.0
  assert float(metrics.count_bad_labels(labels[:, :1], 3)) == 0.0  # 255 is no bug
  assert IGNORE_LABEL == 255


def test_confusion_counts_rows_are_labels_and_ignore_255():
  labels = np.array([[0, 1, 255], [2, 1, 1]])[None, ..., None]
  predictions = np.array([[0, 2, 1], [2, 1, 0]])[None]
  counts = metrics.confusion_counts(labels, predictions, 3)
  assert counts.dtype == tf.float32
  np.testing.assert_array_equal(counts.numpy(), [[1, 0, 0], [1, 1, 1], [0, 0, 1]])
  wide = metrics.confusion_counts(labels, predictions, 3, tf.float64)
  assert wide.dtype == tf.float64 and float(tf.reduce_sum(wide)) == 5.0


def test_confusion_counts_work_inside_tf_function_with_unknown_shapes():
  count = tf.function(lambda l, p: metrics.confusion_counts(l, p, 2),
                      input_signature=[tf.TensorSpec([None, None, None, 1], tf.int32),
                                       tf.TensorSpec([None, None, None], tf.int64)])
  counts = count(tf.constant([[[[1], [0]]]]), tf.constant([[[1, 1]]], tf.int64))
  np.testing.assert_array_equal(counts.numpy(), [[0, 1], [0, 1]])


def test_iou_from_a_hand_made_confusion_matrix():
  # class 0: tp 3, fp 1, fn 1 -> 3/5; class 1: tp 2, fp 1 (from 0) + 2 (from 3), fn 1 -> 2/6;
  # class 2: never labelled nor predicted -> NaN, left out; class 3: labelled, never
  # predicted -> 0, counted.
  confusion = np.array([[3, 1, 0, 0], [1, 2, 0, 0], [0, 0, 0, 0], [0, 2, 0, 0]])
  iou = metrics.iou_from_confusion(confusion)
  np.testing.assert_allclose(iou.per_class[[0, 1, 3]], [0.6, 2 / 6, 0.0])
  assert np.isnan(iou.per_class[2])
  assert iou.miou == pytest.approx((0.6 + 2 / 6 + 0.0) / 3)
  assert iou.pixel_accuracy == pytest.approx(5 / 9)


def test_iou_before_any_pixel_is_zero_not_nan():
  iou = metrics.iou_from_confusion(np.zeros((3, 3), np.int64))
  assert iou.miou == 0.0 and iou.pixel_accuracy == 0.0 and np.isnan(iou.per_class).all()
