"""DeepLab's poly learning rate with an optional linear warm-up.

    lr(step) = (base - end) * (1 - min(step, N) / N) ^ power + end      (TF1 polynomial_decay)

During the first `warmup_steps` steps the rate rises linearly from `warmup_learning_rate`
to lr(warmup_steps), so that warm-up never jumps above the schedule it joins.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from dpc_tf.errors import DpcError


@keras.saving.register_keras_serializable(package="dpc_tf")
class PolyLearningRate(keras.optimizers.schedules.LearningRateSchedule):
  """The schedule as a Keras LearningRateSchedule: `schedule(step)` -> float32 rate."""

  def __init__(self, base_learning_rate: float, num_steps: int, power: float = 0.9,
               end_learning_rate: float = 0.0, warmup_steps: int = 0,
               warmup_learning_rate: float = 0.0):
    if num_steps < 1:
      raise DpcError(f"num_steps must be >= 1, got {num_steps}")
    if not 0 <= warmup_steps < num_steps:
      raise DpcError(f"warmup_steps must be in [0, num_steps), got {warmup_steps}")
    self.base_learning_rate = float(base_learning_rate)
    self.num_steps = int(num_steps)
    self.power = float(power)
    self.end_learning_rate = float(end_learning_rate)
    self.warmup_steps = int(warmup_steps)
    self.warmup_learning_rate = float(warmup_learning_rate)

  def _poly(self, step: tf.Tensor) -> tf.Tensor:
    progress = tf.minimum(step, float(self.num_steps)) / float(self.num_steps)
    return ((self.base_learning_rate - self.end_learning_rate) * (1.0 - progress) ** self.power
            + self.end_learning_rate)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    rate = self._poly(step)
    if self.warmup_steps:
      target = self._poly(tf.constant(float(self.warmup_steps)))
      fraction = step / float(self.warmup_steps)
      warm = self.warmup_learning_rate + (target - self.warmup_learning_rate) * fraction
      rate = tf.where(step < float(self.warmup_steps), warm, rate)
    return rate

  def get_config(self) -> dict:
    return {"base_learning_rate": self.base_learning_rate, "num_steps": self.num_steps,
            "power": self.power, "end_learning_rate": self.end_learning_rate,
            "warmup_steps": self.warmup_steps,
            "warmup_learning_rate": self.warmup_learning_rate}
