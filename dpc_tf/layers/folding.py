"""Batch norm folded into the preceding convolution, for inference only.

In inference a BN layer is the affine map y = x * s + b with s = gamma / sqrt(var + eps),
b = beta - mean * s; after a bias-free conv it can be absorbed: kernel * s (per output
channel) and a bias b. Keras' BN runs as separate element-wise Mul/AddV2 passes over every
activation (about a third of MobileNet-v2 + DPC's CPU forward time, docs/BENCHMARKS.md
"profile"), while conv + BiasAdd + ReLU/ReLU6 is fused into one kernel by TensorFlow's
graph optimizer (grappler's remapper).

`fold_batch_norm()` rewrites a block's own variables, so it is only ever called on a copy
(`dpc_tf.models.fold_batch_norm` clones the model first): checkpoints and the trained model
keep the unfolded weights. The folded block keeps every variable (same names, same count)
and leaves its BN as an exact identity plus the folded bias (gamma 1, mean 0,
variance 1 - eps), so even an unfolded call of a folded copy computes the same function.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from dpc_tf.errors import DpcError


class FoldedTrainingError(DpcError):
  """A block whose batch norm was folded for inference was called in training mode."""


class Values:
  """Variable values as float64 arrays, read once and written back in one pass: folding a
  whole model is then array arithmetic instead of thousands of small eager reads/assigns.
  `initial` maps id(variable) -> array (e.g. the original model's weights for its clone)."""

  def __init__(self, initial: dict | None = None):
    self.arrays = dict(initial or {})
    self.variables = {}

  def __getitem__(self, variable) -> np.ndarray:
    key = id(variable)
    self.variables[key] = variable
    if key not in self.arrays:
      self.arrays[key] = variable.numpy()
    return np.asarray(self.arrays[key], np.float64)

  def __setitem__(self, variable, value) -> None:
    self.variables[id(variable)] = variable
    self.arrays[id(variable)] = value

  def write(self, every=None) -> None:
    """Assigns the changed (or, with `every`, all of those) variables their arrays."""
    for variable in every if every is not None else self.variables.values():
      variable.assign(np.asarray(self.arrays[id(variable)]).astype(variable.dtype))


def fold_into(conv: keras.layers.Layer, bn: keras.layers.BatchNormalization,
              values: Values) -> None:
  """Multiplies conv's kernel by bn's inference scale and leaves bn as identity + bias.

  conv: Conv2D (kernel [kh, kw, in, out]) or DepthwiseConv2D ([kh, kw, in, multiplier]);
  the BN normalises conv's output channels. Computed in float64 in `values`.
  """
  if bn.gamma is None or bn.beta is None:
    raise DpcError(f"{bn.name}: folding needs a BN with scale and center")
  eps = float(bn.epsilon)
  gamma, beta = values[bn.gamma], values[bn.beta]
  mean, variance = values[bn.moving_mean], values[bn.moving_variance]
  scale = gamma / np.sqrt(variance + eps)
  kernel = values[conv.kernel]
  if isinstance(conv, keras.layers.DepthwiseConv2D):
    values[conv.kernel] = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
  else:
    values[conv.kernel] = kernel * scale
  values[bn.gamma] = np.ones_like(gamma)
  values[bn.beta] = beta - mean * scale
  values[bn.moving_mean] = np.zeros_like(mean)
  values[bn.moving_variance] = np.full_like(variance, 1.0 - eps)


def push_bias_through(bn: keras.layers.BatchNormalization, pointwise: keras.layers.Conv2D,
                      next_bn: keras.layers.BatchNormalization, values: Values) -> None:
  """Moves a folded bn's bias through the 1x1 conv that follows it directly (no activation
  between): pointwise(x + b) = pointwise(x) + b @ kernel, so b @ kernel joins next_bn's
  folded bias and bn's bias becomes 0 (one BiasAdd pass fewer). Both BNs must be folded."""
  moved = values[bn.beta] @ values[pointwise.kernel][0, 0]  # kernel [1, 1, in, out]
  values[next_bn.beta] = values[next_bn.beta] + moved
  values[bn.beta] = np.zeros_like(values[bn.beta])


class FoldableMixin:
  """For blocks that are conv -> BN (-> activation) chains. A block lists its pairs as
  attribute names in CONV_BN and normalises through `self._normalize(bn, x, training)`."""

  CONV_BN: tuple[tuple[str, str], ...] = ()
  folded = False  # a class default: set on the instance by fold_batch_norm, never in configs

  def fold_batch_norm(self, values: Values | None = None) -> None:
    """Folds every (conv, BN) pair into the conv; irreversible (call it on a copy). With
    `values`, only computes the new values there (the caller writes them)."""
    if self.folded:
      return
    own = values is None
    values = Values() if own else values
    for conv_name, bn_name in self.CONV_BN:
      fold_into(getattr(self, conv_name), getattr(self, bn_name), values)
    self._fold_more(values)
    if own:
      values.write()
    self.folded = True

  def _fold_more(self, values: Values) -> None:
    """What a block folds beyond its (conv, BN) pairs."""

  def _normalize(self, bn: keras.layers.BatchNormalization, x, training):
    if not self.folded:
      return bn(x, training=training)
    if isinstance(training, (bool, np.bool_)) and training:  # no statistics left to update
      raise FoldedTrainingError(f"{self.name}: batch norm is folded for inference; train the "
                                f"unfolded model")
    return tf.nn.bias_add(x, tf.cast(bn.beta, x.dtype))
