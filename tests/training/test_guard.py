"""The per-step guard every loop runs (its use in each loop: test_nan_guard.py, tests/proxy)."""

import pytest

from dpc_tf.errors import DpcError
from dpc_tf.training import guard
from dpc_tf.training.errors import BadLabelError, NonFiniteLossError


def _check(loss, **kwargs):
  guard.check_step(7, loss, num_classes=3, where="a loop", advice="lower the rate", **kwargs)


def test_a_finite_step_passes():
  _check(1.5)
  _check(0.0, bad_labels=0.0, gradients_finite=True)


@pytest.mark.parametrize("loss", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_loss_is_one_line_naming_step_and_advice(loss):
  with pytest.raises(NonFiniteLossError) as info:
    _check(loss)
  message = str(info.value)
  assert message == f"a loop: loss is {loss} at step 7; lower the rate"
  assert isinstance(info.value, DpcError)


def test_non_finite_gradient_with_a_finite_loss():
  with pytest.raises(NonFiniteLossError, match="a gradient is NaN/Inf at step 7"):
    _check(0.5, gradients_finite=False)


def test_bad_labels_are_refused_before_the_loss_is_looked_at():
  with pytest.raises(BadLabelError) as info:
    _check(float("nan"), bad_labels=4.0)
  assert str(info.value) == (
      "a loop, step 7: 4 pixel(s) have labels that are neither a class id 0..2 nor the "
      "ignore label 255: check the dataset's label mapping and its number of classes")
  assert isinstance(info.value, DpcError)


def test_advice_may_be_computed_only_on_failure():
  calls = []
  advice = lambda: calls.append(1) or "kept ckpt-4"
  guard.check_step(1, 0.3, num_classes=3, where="w", advice=advice)
  assert not calls
  with pytest.raises(NonFiniteLossError, match="kept ckpt-4"):
    guard.check_step(2, float("nan"), num_classes=3, where="w", advice=advice)
  assert calls == [1]
