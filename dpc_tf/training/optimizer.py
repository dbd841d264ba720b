"""The one optimizer factory (momentum SGD on the poly schedule: full training, proxy trials,
pretraining), per-variable gradient multipliers, the mixed-precision policy.

Weight decay is not an optimizer setting: it is the layers' L2 losses (slim convention, see
dpc_tf.layers.common.l2), added to the loss once (losses.replica_loss divides it by the
number of replicas because gradients are summed over them).
"""

from __future__ import annotations

import contextlib
from typing import Optional, Sequence

import keras
import tensorflow as tf

from dpc_tf.training.schedule import PolyLearningRate


def build_optimizer(schedule: PolyLearningRate, momentum: float,
                    variables: Sequence[tf.Variable], mixed_precision: Optional[str] = None,
                    step: Optional[tf.Variable] = None) -> keras.optimizers.Optimizer:
  """SGD(momentum) on `schedule`; with float16 wrapped in a dynamic LossScaleOptimizer.

  step: the variable the schedule reads (the trainer's checkpointed, distributed step);
  None: the optimizer's own iteration count. Call inside strategy.scope() where there is
  one: the slots are built here, before the step function is traced (REFERENCE.md 8).
  """
  learning_rate = schedule if step is None else (lambda: schedule(step))
  optimizer = keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum)
  if mixed_precision == "float16":
    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
  optimizer.build(list(variables))
  return optimizer


def gradient_multipliers(variables: Sequence[tf.Variable], last_layers: Sequence[str],
                         last_layer_multiplier: float,
                         bias_multiplier: float = 2.0) -> list[float]:
  """One multiplier per variable, as TF1 DeepLab's get_model_gradient_multipliers.

  A variable whose path contains one of `last_layers` gets last_layer_multiplier; a conv
  bias (path ending in "/bias"; batch-norm offsets are "beta") gets bias_multiplier on top.
  """
  result = []
  for variable in variables:
    path = getattr(variable, "path", None) or variable.name
    multiplier = 1.0
    if any(layer in path for layer in last_layers):
      multiplier *= last_layer_multiplier
    if path.endswith("/bias") or path.endswith("/bias:0"):
      multiplier *= bias_multiplier
    result.append(float(multiplier))
  return result


def apply_multipliers(gradients: Sequence[Optional[tf.Tensor]],
                      multipliers: Sequence[float]) -> list[Optional[tf.Tensor]]:
  return [g if g is None or m == 1.0 else g * tf.cast(m, g.dtype)
          for g, m in zip(gradients, multipliers)]


@contextlib.contextmanager
def dtype_policy(mixed_precision: Optional[str]):
  """Sets the global Keras dtype policy while a model is built, then restores it.

  The policy is global state; restoring it keeps one in-process run (e.g. a search trial)
  from changing the models every later run builds.
  """
  previous = keras.config.dtype_policy()
  if mixed_precision is not None:
    keras.config.set_dtype_policy(f"mixed_{mixed_precision}")
  try:
    yield
  finally:
    keras.config.set_dtype_policy(previous)
