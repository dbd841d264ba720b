"""The poly learning rate with linear warm-up, against hand-computed values."""

import numpy as np
import pytest

from dpc_tf.errors import DpcError
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
  with pytest.raises(DpcError, match="warmup_steps"):
    PolyLearningRate(0.1, 10, warmup_steps=10)
  with pytest.raises(DpcError, match="num_steps"):
    PolyLearningRate(0.1, 0)


def test_poly_equals_keras_polynomial_decay_bit_for_bit():
  # The proxy trial and pretraining used Keras' PolynomialDecay before sharing this schedule;
  # equal rates at every step keep their results unchanged.
  import keras  # pylint: disable=import-outside-toplevel
  ours = PolyLearningRate(0.02, 300, power=0.9)
  theirs = keras.optimizers.schedules.PolynomialDecay(0.02, 300, end_learning_rate=0.0,
                                                      power=0.9)
  for step in (0, 1, 7, 150, 299, 300, 301):
    assert float(ours(step)) == float(theirs(step)), step


def test_build_optimizer_reads_the_schedule_at_its_iterations_or_a_given_step():
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from dpc_tf.training.optimizer import build_optimizer  # pylint: disable=import-outside-toplevel
  schedule = PolyLearningRate(0.1, 10, power=1.0)
  weight = tf.Variable([1.0])
  own = build_optimizer(schedule, 0.0, [weight])
  for _ in range(3):
    own.apply_gradients([(tf.constant([1.0]), weight)])
  # SGD without momentum: 1 - (0.1 + 0.09 + 0.08).
  assert float(weight[0]) == pytest.approx(1 - 0.27, rel=1e-6)
  step = tf.Variable(5, dtype=tf.int64)
  stepped = build_optimizer(schedule, 0.9, [weight], step=step)
  assert float(stepped.learning_rate) == pytest.approx(0.05)
  assert build_optimizer(schedule, 0.9, [weight], "float16").__class__.__name__ == \
      "LossScaleOptimizer"
