"""Average spatial pyramid pooling exactly as released (REFERENCE.md section 3)."""

from __future__ import annotations

from typing import Optional

import keras
import tensorflow as tf

from dpc_tf.layers import common
from dpc_tf.layers.conv_blocks import ConvBNReLU


def pooling_kernel(crop_size, output_stride: int, grid) -> tuple[int, int]:
  """Kernel of the stride-1 VALID average pool: scale_dimension(crop, 1 / (os * g)) per side."""
  crop_h, crop_w = common.pair(crop_size, "crop_size")
  grid_h, grid_w = common.pair(grid, "grid")
  return (common.scale_dimension(crop_h, 1.0 / (output_stride * grid_h)),
          common.scale_dimension(crop_w, 1.0 / (output_stride * grid_w)))


def _average_pool_axis(x: tf.Tensor, kernel: int, axis: int) -> tf.Tensor:
  """Stride-1 VALID average along one spatial axis; a kernel longer than the axis (inference
  on an input smaller than the crop) falls back to the mean over that axis."""
  ksize = [1, kernel, 1, 1] if axis == 1 else [1, 1, kernel, 1]
  pool = lambda: tf.nn.avg_pool2d(x, ksize, strides=1, padding="VALID")
  mean = lambda: tf.reduce_mean(x, axis=axis, keepdims=True)
  size = x.shape[axis]
  if size is not None:
    return pool() if size >= kernel else mean()
  return tf.cond(tf.shape(x)[axis] >= kernel, pool, mean)


@keras.saving.register_keras_serializable(package="dpc_tf")
class PyramidPooling(common.NormConfigMixin, keras.layers.Layer):
  """Stride-1 average pool (kernel from the crop) -> 1x1 conv + BN + ReLU -> resize back.

  The kernel depends on the crop size, not the runtime feature size, as in DeepLab: at the
  training crop a 1x1 grid is global pooling and a g x g grid an overlapping sliding
  average with about g x g outputs. Without `crop_size` the static feature size at build
  time stands in for the crop's (the same kernel when the crop is DeepLab-shaped).
  """

  def __init__(self, grid=1, filters: int = 256, crop_size=None, output_stride: int = 16,
               weight_decay: float = common.WEIGHT_DECAY, bn_momentum: float = common.BN_MOMENTUM,
               bn_epsilon: float = common.BN_EPSILON, sync_bn: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.grid = common.pair(grid, "grid")
    self.filters = filters
    self.crop_size = None if crop_size is None else common.pair(crop_size, "crop_size")
    self.output_stride = output_stride
    self._init_norm(weight_decay, bn_momentum, bn_epsilon, sync_bn)
    self.conv = ConvBNReLU(filters, 1, weight_decay=weight_decay, bn_momentum=bn_momentum,
                           bn_epsilon=bn_epsilon, sync_bn=sync_bn, name="conv")
    self.kernel: Optional[tuple[int, int]] = None

  def build(self, input_shape):
    if self.crop_size is not None:
      self.kernel = pooling_kernel(self.crop_size, self.output_stride, self.grid)
    elif input_shape[1] is not None and input_shape[2] is not None:
      self.kernel = pooling_kernel(input_shape[1:3], 1, self.grid)
    else:
      raise common.LayerArgumentError(f"{self.name}: pyramid pooling needs crop_size when the feature size "
                       f"is not static (got input shape {tuple(input_shape)})")
    self.conv.build(tuple(input_shape[:1]) + (None, None, input_shape[-1]))

  def call(self, x, training=None):
    size = tf.shape(x)[1:3]
    y = _average_pool_axis(x, self.kernel[0], axis=1)
    y = _average_pool_axis(y, self.kernel[1], axis=2)
    y = self.conv(y, training=training)
    return common.resize_bilinear(y, size)

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[:-1]) + (self.filters,)

  def get_config(self):
    return {**super().get_config(), "grid": list(self.grid), "filters": self.filters,
            "crop_size": None if self.crop_size is None else list(self.crop_size),
            "output_stride": self.output_stride, **self._norm_config()}
