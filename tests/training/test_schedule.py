"""The poly learning rate with linear warm-up, against hand-computed values."""

import numpy as np
import pytest

from dpc_tf.training.schedule import PolyLearningRate


def test_poly_matches_the_formula():
  schedule = PolyLearningRate(0.01, 100, power=0.9)
  for step in (0, 1, 50, 99, 100, 150):
    expected = 0.01 * (1 - min(step, 100) / 100) ** 0.9
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-5, abs=1e-12)


def test_end_learning_rate_is_the_floor():
  schedule = PolyLearningRate(0.01, 10, power=1.0, end_learning_rate=0.001)
  assert float(schedule(5)) == pytest.approx(0.0055)
  assert float(schedule(10)) == pytest.approx(0.001)
  assert float(schedule(20)) == pytest.approx(0.001)


def test_warmup_is_linear_and_joins_the_poly_curve():
  schedule = PolyLearningRate(0.1, 100, power=0.9, warmup_steps=10, warmup_learning_rate=0.0)
  joined = 0.1 * (1 - 10 / 100) ** 0.9
  assert float(schedule(0)) == pytest.approx(0.0)
  assert float(schedule(5)) == pytest.approx(joined / 2, rel=1e-5)
  assert float(schedule(10)) == pytest.approx(joined, rel=1e-5)
  rates = [float(schedule(s)) for s in range(0, 100)]
  assert np.all(np.diff(rates[:11]) > 0) and np.all(np.diff(rates[10:]) < 0)


def test_bad_arguments_are_rejected():
  with pytest.raises(ValueError, match="warmup_steps"):
    PolyLearningRate(0.1, 10, warmup_steps=10)
  with pytest.raises(ValueError, match="num_steps"):
    PolyLearningRate(0.1, 0)
