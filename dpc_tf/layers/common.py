"""Conventions shared by every layer: batch norm, slim-style L2, align-corners resizing."""

from __future__ import annotations

from typing import Optional, Sequence

import keras
import tensorflow as tf

from dpc_tf.errors import DpcError
from dpc_tf.layers.batch_norm import BatchNorm
from dpc_tf.utils.sizes import size_pair

# DeepLab's defaults for heads (REFERENCE.md section 3); backbones use epsilon 1e-3.
BN_MOMENTUM = 0.9997
BN_EPSILON = 1e-5
WEIGHT_DECAY = 4e-5


# Rates in cells and ASPP are written for output stride 16 (REFERENCE.md section 3).
RATES_OUTPUT_STRIDE = 16


class LayerArgumentError(DpcError):
  """A layer argument that cannot work."""


def rate_multiplier(output_stride: int, rate_multiplier_given: Optional[int] = None) -> int:
  """16 // output_stride: what a cell's (or ASPP's) rates are multiplied by.

  Layers derive it from output_stride themselves, so the two can no longer disagree.
  `rate_multiplier_given` is the value an old config (before the layers derived it) carried:
  accepted when it is what output_stride gives, refused otherwise (it would silently change
  the rates).
  """
  if (not isinstance(output_stride, int) or isinstance(output_stride, bool)
      or output_stride < 1 or RATES_OUTPUT_STRIDE % output_stride):
    raise LayerArgumentError(f"output_stride must divide {RATES_OUTPUT_STRIDE} (rates are "
                             f"written for output stride {RATES_OUTPUT_STRIDE}), got "
                             f"{output_stride!r}")
  multiplier = RATES_OUTPUT_STRIDE // output_stride
  if rate_multiplier_given is not None and rate_multiplier_given != multiplier:
    raise LayerArgumentError(f"rate_multiplier={rate_multiplier_given} contradicts "
                             f"output_stride={output_stride} (which gives {multiplier}); pass "
                             f"output_stride only")
  return multiplier


def scale_dimension(dim: int, scale: float) -> int:
  """DeepLab's size rule: int((dim - 1) * scale + 1); why its crops are 513, 769, 1025."""
  return int((dim - 1) * scale + 1)


def l2(weight_decay: float) -> Optional[keras.regularizers.Regularizer]:
  """slim's L2 is wd * sum(w^2) / 2; Keras' L2(l) is l * sum(w^2)."""
  return keras.regularizers.L2(weight_decay / 2.0) if weight_decay else None


def batch_norm(name: str, momentum: float = BN_MOMENTUM, epsilon: float = BN_EPSILON,
               synchronized: bool = False) -> keras.layers.BatchNormalization:
  """Every batch norm of every model (layers/batch_norm.py: fused kernel when training)."""
  return BatchNorm(
      momentum=momentum, epsilon=epsilon, synchronized=synchronized, name=name)


def resize_bilinear(x: tf.Tensor, size: Sequence) -> tf.Tensor:
  """Bilinear resize with align_corners=True, keeping x's dtype (keras.ops has no align_corners)."""
  y = tf.raw_ops.ResizeBilinear(images=x, size=tf.cast(size, tf.int32), align_corners=True,
                                half_pixel_centers=False)
  return tf.cast(y, x.dtype)


def pair(value, name: str) -> tuple[int, int]:
  """Normalises an int or a 2-sequence of positive ints to (h, w) (dpc_tf.utils.sizes)."""
  if value is None:
    raise LayerArgumentError(f"{name} must be an int or [h, w], got None")
  return size_pair(value, name)


class NormConfigMixin:
  """Stores and serialises the batch-norm / weight-decay settings every conv block takes."""

  def _init_norm(self, weight_decay, bn_momentum, bn_epsilon, sync_bn):
    self.weight_decay = weight_decay
    self.bn_momentum = bn_momentum
    self.bn_epsilon = bn_epsilon
    self.sync_bn = sync_bn

  def _norm_config(self) -> dict:
    return {"weight_decay": self.weight_decay, "bn_momentum": self.bn_momentum,
            "bn_epsilon": self.bn_epsilon, "sync_bn": self.sync_bn}

  def _bn(self, name: str) -> keras.layers.BatchNormalization:
    return batch_norm(name, self.bn_momentum, self.bn_epsilon, self.sync_bn)
