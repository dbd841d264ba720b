"""Evaluation on a hand-computable case; multi-scale, flip and padding arithmetic."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from dpc_tf.data import specs
from dpc_tf.training import evaluation
from dpc_tf.training.config import EvalConfig
from dpc_tf.training.errors import BadLabelError
from dpc_tf.training.inference import Predictor, scaled_size


class _Fn(keras.layers.Layer):
  def __init__(self, fn, **kwargs):
    super().__init__(**kwargs)
    self.fn = fn

  def call(self, x):
    return self.fn(x)


def _model(fn) -> keras.Model:
  images = keras.Input((None, None, 3))
  return keras.Model(images, _Fn(fn)(images))


def _one_hot_model(num_classes=3):
  """Predicts the class written in the image's first channel."""
  return _model(lambda x: tf.one_hot(tf.cast(x[..., 0], tf.int32), num_classes) * 10.0)


def test_miou_on_a_hand_computed_case():
  predicted = np.array([[[0, 0, 1], [1, 2, 2]], [[0, 0, 0], [2, 2, 1]]])
  labels = np.array([[[0, 1, 1], [1, 2, 255]], [[0, 0, 255], [2, 1, 1]]])
  images = np.repeat(predicted[..., None], 3, -1).astype(np.float32)
  dataset = tf.data.Dataset.from_tensor_slices((images, labels[..., None].astype(np.int32)))
  confusion, num_images = evaluation.confusion_matrix(_one_hot_model(), dataset.batch(1), 3)
  np.testing.assert_array_equal(confusion, [[3, 0, 0], [1, 3, 1], [0, 0, 2]])
  assert num_images == 2
  spec = specs.DatasetSpec("toy", 3, 255, ("a", "b", "c"), ((0, 0, 0),) * 3, (2, 3), (2, 3), "x")
  result = evaluation.result_dict(confusion, spec, split="validation", num_images=2)
  # IoU = tp / (row + column - tp): 3/4, 3/5, 2/3.
  assert result["per_class_iou"] == pytest.approx({"a": 0.75, "b": 0.6, "c": 2 / 3})
  assert result["miou"] == pytest.approx((0.75 + 0.6 + 2 / 3) / 3)
  assert result["pixel_accuracy"] == pytest.approx(8 / 10)
  table = evaluation.format_table(result)
  assert "mean IoU" in table and " 75.00" in table and " 67.22" in table
  json.dumps(result)  # JSON-able as written


def test_absent_class_is_left_out_of_the_mean():
  labels = np.zeros((1, 2, 2, 1), np.int32)
  images = np.zeros((1, 2, 2, 3), np.float32)
  dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(1)
  confusion, _ = evaluation.confusion_matrix(_one_hot_model(), dataset, 3)
  spec = specs.DatasetSpec("toy", 3, 255, ("a", "b", "c"), ((0, 0, 0),) * 3, (2, 2), (2, 2), "x")
  result = evaluation.result_dict(confusion, spec)
  assert result["miou"] == 1.0 and result["per_class_iou"]["b"] is None


def test_labels_breaking_the_label_rule_are_refused():
  labels = np.array([[[0, 255], [1, 5]]], np.int32)[..., None]  # 5 with 3 classes: a data bug
  images = np.zeros((1, 2, 2, 3), np.float32)
  dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(1)
  with pytest.raises(BadLabelError, match="evaluation, image 0: 1 pixel"):
    evaluation.confusion_matrix(_one_hot_model(), dataset, 3)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def test_multi_scale_averages_probabilities_over_scales():
  # logits = [input height, 0]: each scale sees another height, so the average is known.
  model = _model(lambda x: tf.stack([tf.ones_like(x[..., 0]) * tf.cast(tf.shape(x)[1],
                                                                        tf.float32) / 4.0,
                                     tf.zeros_like(x[..., 0])], -1))
  images = tf.zeros([1, 9, 9, 3])
  assert [int(scaled_size(tf.constant(9), s)) for s in (0.5, 1.0, 1.25)] == [5, 9, 11]
  probabilities = Predictor(model, scales=(0.5, 1.0, 1.25)).probabilities(images).numpy()
  expected = np.mean([_sigmoid(h / 4.0) for h in (5, 9, 11)])
  np.testing.assert_allclose(probabilities[..., 0], expected, rtol=1e-5)
  np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)


def test_flip_averages_the_mirrored_pass_mapped_back():
  # logits = [x - 2, 0] over a width-5 image: the mirrored pass sees x' = 4 - x.
  model = _model(lambda x: tf.stack([tf.broadcast_to(tf.range(tf.shape(x)[2], dtype=tf.float32),
                                                     tf.shape(x)[:3]) - 2.0,
                                     tf.zeros_like(x[..., 0])], -1))
  images = tf.zeros([1, 3, 5, 3])
  single = Predictor(model).probabilities(images).numpy()[0, 0, :, 0]
  flipped = Predictor(model, flip=True).probabilities(images).numpy()[0, 0, :, 0]
  x = np.arange(5)
  np.testing.assert_allclose(single, _sigmoid(x - 2.0), rtol=1e-5)
  np.testing.assert_allclose(flipped, (_sigmoid(x - 2.0) + _sigmoid(2.0 - x)) / 2, rtol=1e-5)


def test_padding_runs_on_the_padded_size_and_crops_back():
  model = _model(lambda x: tf.stack([tf.ones_like(x[..., 0]) * tf.cast(tf.shape(x)[1],
                                                                        tf.float32) / 4.0,
                                     tf.reduce_mean(x, -1) / 127.5 - 1.0], -1))
  images = tf.fill([2, 5, 6, 3], 127.5)
  labels, probabilities = Predictor(model, pad_to=(8, 8))(images)
  assert labels.shape == (2, 5, 6) and probabilities.shape == (2, 5, 6, 2)
  np.testing.assert_allclose(probabilities.numpy()[..., 0], _sigmoid(8 / 4.0), rtol=1e-5)
  larger = Predictor(model, pad_to=(4, 4)).probabilities(images)  # never crops an image
  np.testing.assert_allclose(larger.numpy()[..., 0], _sigmoid(5 / 4.0), rtol=1e-5)


def test_results_path_separates_single_and_multi_scale(tmp_path):
  assert evaluation.results_path(str(tmp_path), EvalConfig()).endswith("eval_validation.json")
  assert evaluation.results_path(str(tmp_path), EvalConfig(scales=(1.0,), flip=True)).endswith(
      "eval_validation_multiscale.json")
  assert evaluation.results_path(str(tmp_path), EvalConfig(split="train[:10]")).endswith(
      "eval_train.json")
