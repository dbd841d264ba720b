"""Gradient multipliers (TF1 semantics) and the dtype-policy guard."""

import keras
import pytest

from dpc_tf.training import optimizer


class _Var:
  def __init__(self, path):
    self.path = path


def test_multipliers_follow_tf1_rules():
  variables = [_Var("deeplab/backbone/conv/kernel"), _Var("deeplab/logits/kernel"),
               _Var("deeplab/logits/bias"), _Var("deeplab/head/bn/beta"),
               _Var("deeplab/other/bias")]
  assert optimizer.gradient_multipliers(variables, ["logits"], 10.0, 2.0) == \
      [1.0, 10.0, 20.0, 1.0, 2.0]
  assert optimizer.gradient_multipliers(variables, ["logits"], 1.0, 1.0) == [1.0] * 5


def test_apply_multipliers_keeps_none_and_scales_the_rest():
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  out = optimizer.apply_multipliers([None, tf.constant(2.0), tf.constant(3.0)], [5.0, 1.0, 2.0])
  assert out[0] is None and float(out[1]) == 2.0 and float(out[2]) == 6.0


def test_dtype_policy_is_restored_even_on_error():
  before = keras.config.dtype_policy().name
  with pytest.raises(RuntimeError):
    with optimizer.dtype_policy("bfloat16"):
      assert keras.config.dtype_policy().name == "mixed_bfloat16"
      raise RuntimeError("boom")
  assert keras.config.dtype_policy().name == before
