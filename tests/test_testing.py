"""The harness itself: each check fails on the bug it exists to catch."""

import keras
import numpy as np
import pytest

from dpc_tf import layers
from dpc_tf.testing import missing_gradients, run_layer_test

X = np.random.default_rng(0).normal(size=(2, 5, 5, 3)).astype("float32")


class WrongShape(keras.layers.Layer):
  def call(self, x):
    return x

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[:-1]) + (7,)


@keras.saving.register_keras_serializable(package="dpc_tf_tests")
class ForgetsItsConfig(keras.layers.Layer):
  """`scale` changes the output but is not in get_config: a round trip drops it."""

  def __init__(self, scale=1.0, **kwargs):
    super().__init__(**kwargs)
    self.scale = scale

  def call(self, x):
    return x * self.scale

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {"name": self.name, "trainable": self.trainable}


def test_passes_a_correct_layer(tmp_path):
  run_layer_test(lambda: layers.ConvBNReLU(4), X, expected_output_shape=(2, 5, 5, 4),
                 expected_trainable_params=3 * 4 + 8, tmp_dir=str(tmp_path))


def test_catches_a_wrong_compute_output_shape():
  with pytest.raises(AssertionError, match="!= compute_output_shape"):
    run_layer_test(WrongShape, X, checks=("output_shape",))


def test_catches_a_config_that_loses_an_argument():
  with pytest.raises(AssertionError, match="serialized clone"):
    run_layer_test(lambda: ForgetsItsConfig(scale=2.0), X, checks=("serialization",))


def test_catches_wrong_weight_counts():
  with pytest.raises(AssertionError, match="20 trainable params, expected 21"):
    run_layer_test(lambda: layers.ConvBNReLU(4), X, expected_trainable_params=21,
                   checks=("weights",))


def test_refuses_unknown_checks():
  with pytest.raises(ValueError, match="unknown checks"):
    run_layer_test(lambda: layers.ConvBNReLU(4), X, skip=("savign",))


def test_missing_gradients_names_weights_off_the_output_path():
  inputs = keras.Input((5, 5, 3))
  used, unused = keras.layers.Conv2D(2, 1, name="used"), keras.layers.Conv2D(2, 1, name="unused")
  unused(inputs)  # built, but not on the path to the output
  model = keras.Model(inputs, used(inputs))
  model.unused = unused  # tracked, so its weights are trainable weights of the model
  assert sorted(missing_gradients(model, X)) == ["unused/bias", "unused/kernel"]


@keras.saving.register_keras_serializable(package="dpc_tf_tests")
class ListHeld(keras.layers.Layer):
  """Sub-layers in a Python list: Keras sees their weights, tf.train.Checkpoint does not."""

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.convs = [keras.layers.Conv2D(2, 1, name=f"c{i}") for i in range(2)]

  def call(self, x):
    return keras.ops.concatenate([c(x) for c in self.convs], axis=-1)

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[:-1]) + (4,)


def test_catches_variables_missing_from_checkpoints():
  with pytest.raises(AssertionError, match="the checkpoint holds 0 of 4 variables"):
    run_layer_test(ListHeld, X, checks=("checkpoint",))
