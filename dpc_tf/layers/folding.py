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


def fold_into(conv: keras.layers.Layer, bn: keras.layers.BatchNormalization) -> None:
  """Multiplies conv's kernel by bn's inference scale and leaves bn as identity + bias.

  conv: Conv2D (kernel [kh, kw, in, out]) or DepthwiseConv2D ([kh, kw, in, multiplier]);
  the BN normalises conv's output channels. Computed in float64, stored in the variables'
  dtype.
  """
  if bn.gamma is None or bn.beta is None:
    raise DpcError(f"{bn.name}: folding needs a BN with scale and center")
  eps = float(bn.epsilon)
  gamma, beta, mean, variance = (np.asarray(v.numpy(), np.float64) for v in
                                 (bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance))
  scale = gamma / np.sqrt(variance + eps)
  kernel = np.asarray(conv.kernel.numpy(), np.float64)
  if isinstance(conv, keras.layers.DepthwiseConv2D):
    kernel = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
  else:
    kernel = kernel * scale
  conv.kernel.assign(kernel.astype(conv.kernel.dtype))
  bn.gamma.assign(np.ones_like(gamma, dtype=bn.gamma.dtype))
  bn.beta.assign((beta - mean * scale).astype(bn.beta.dtype))
  bn.moving_mean.assign(np.zeros_like(mean, dtype=bn.moving_mean.dtype))
  bn.moving_variance.assign(np.full_like(variance, 1.0 - eps, dtype=bn.moving_variance.dtype))


def push_bias_through(bn: keras.layers.BatchNormalization, pointwise: keras.layers.Conv2D,
                      next_bn: keras.layers.BatchNormalization) -> None:
  """Moves a folded bn's bias through the 1x1 conv that follows it directly (no activation
  between): pointwise(x + b) = pointwise(x) + b @ kernel, so b @ kernel joins next_bn's
  folded bias and bn's bias becomes 0 (one BiasAdd pass fewer). Both BNs must be folded."""
  kernel = np.asarray(pointwise.kernel.numpy(), np.float64)[0, 0]  # [in, out]
  moved = np.asarray(bn.beta.numpy(), np.float64) @ kernel
  next_bn.beta.assign((np.asarray(next_bn.beta.numpy(), np.float64) + moved)
                      .astype(next_bn.beta.dtype))
  bn.beta.assign(np.zeros(bn.beta.shape, bn.beta.dtype))


class FoldableMixin:
  """For blocks that are conv -> BN (-> activation) chains. A block lists its pairs as
  attribute names in CONV_BN and normalises through `self._normalize(bn, x, training)`."""

  CONV_BN: tuple[tuple[str, str], ...] = ()
  folded = False  # a class default: set on the instance by fold_batch_norm, never in configs

  def fold_batch_norm(self) -> None:
    """Folds every (conv, BN) pair into the conv; irreversible (call it on a copy)."""
    if self.folded:
      return
    for conv_name, bn_name in self.CONV_BN:
      fold_into(getattr(self, conv_name), getattr(self, bn_name))
    self.folded = True

  def _normalize(self, bn: keras.layers.BatchNormalization, x, training):
    if not self.folded:
      return bn(x, training=training)
    if isinstance(training, (bool, np.bool_)) and training:  # no statistics left to update
      raise FoldedTrainingError(f"{self.name}: batch norm is folded for inference; train the "
                                f"unfolded model")
    return tf.nn.bias_add(x, tf.cast(bn.beta, x.dtype))
