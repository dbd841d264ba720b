"""Conv + BN + ReLU blocks as DeepLab builds them (no bias, slim L2, BN after each conv)."""

from __future__ import annotations

import keras

from dpc_tf.layers import common
from dpc_tf.layers.folding import FoldableMixin


def padding_only_taps(conv: keras.layers.Layer, shape) -> tuple[bool, bool]:
  """Whether conv's off-centre taps read only padding in (height, width) at input `shape`."""
  return tuple(size is not None and k > 1 and k % 2 == 1 and rate >= size
               for size, k, rate in zip(shape[1:3], conv.kernel_size, conv.dilation_rate))


def pointwise_conv(conv: keras.layers.Layer, x, training=None):
  """Calls a stride-1, bias-free 1x1 Conv2D; when training, as a matmul over the channels.

  Same numbers (the conv is that matmul), cheaper gradients: TensorFlow's CPU kernels for a
  1x1 conv's input and filter gradients took several times its forward on the search's small
  feature maps (profiled), while a matmul's gradients are two matmuls: with fused batch norm,
  proxy steps took 0.81-0.85x and a full MobileNet-v2 step 0.93x the time on 2 CPU cores
  (`python -m dpc_tf.benchmark training_kernels`, docs/BENCHMARKS.md). Inference keeps the
  Conv2D op, so served and converted models run exactly the graph they ran before.
  """
  if not (training and not isinstance(conv, keras.layers.DepthwiseConv2D)
          and tuple(conv.kernel_size) == (1, 1) and tuple(conv.strides) == (1, 1)
          and not conv.use_bias and conv.data_format == "channels_last"):
    return conv(x)
  return keras.ops.einsum("bhwc,cd->bhwd", x, keras.ops.cast(conv.kernel[0, 0], x.dtype))


def atrous_conv(conv: keras.layers.Layer, x, training=None):
  """Calls a 'same'-padded Conv2D / DepthwiseConv2D, leaving out the taps that only read
  padding: with an odd kernel and a rate at least the (static) feature size in a dimension,
  every off-centre tap in that dimension falls outside the map for every output pixel, so the
  kernel's centre row (column) alone gives the same result. The search's small feature maps
  hit this often (rates up to 21, 9x9 or 17x17 features): TensorFlow would otherwise pad the
  map to a multiple of the rate and convolve mostly zeros (the released cell's proxy step
  took 70 ms instead of 40, docs/BENCHMARKS.md). Sizes it cannot see run the layer as is.
  """
  trim_h, trim_w = padding_only_taps(conv, x.shape)
  if not (trim_h or trim_w):
    return pointwise_conv(conv, x, training)
  (kh, kw), (rh, rw) = conv.kernel_size, conv.dilation_rate
  kernel = keras.ops.cast(conv.kernel, x.dtype)
  if trim_h:
    kernel, rh = kernel[kh // 2:kh // 2 + 1], 1
  if trim_w:
    kernel, rw = kernel[:, kw // 2:kw // 2 + 1], 1
  op = (keras.ops.depthwise_conv if isinstance(conv, keras.layers.DepthwiseConv2D)
        else keras.ops.conv)
  return op(x, kernel, strides=1, padding="same", dilation_rate=(rh, rw))


@keras.saving.register_keras_serializable(package="dpc_tf")
class ConvBNReLU(FoldableMixin, common.NormConfigMixin, keras.layers.Layer):
  """k x k conv (no bias, 'same') -> BN -> ReLU. The 1x1 conv operator and projections."""

  CONV_BN = (("conv", "bn"),)

  def __init__(self, filters: int, kernel_size: int = 1, rate=1, activation: bool = True,
               weight_decay: float = common.WEIGHT_DECAY, bn_momentum: float = common.BN_MOMENTUM,
               bn_epsilon: float = common.BN_EPSILON, sync_bn: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.filters = filters
    self.kernel_size = kernel_size
    self.rate = common.pair(rate, "rate")
    self.activation = activation
    self._init_norm(weight_decay, bn_momentum, bn_epsilon, sync_bn)
    self.conv = keras.layers.Conv2D(
        filters, kernel_size, padding="same", dilation_rate=self.rate, use_bias=False,
        kernel_regularizer=common.l2(weight_decay), name="conv")
    self.bn = self._bn("bn")

  def build(self, input_shape):
    self.conv.build(input_shape)
    self.bn.build(self.conv.compute_output_shape(input_shape))

  def call(self, x, training=None):
    x = self._normalize(self.bn, atrous_conv(self.conv, x, training), training)
    return keras.ops.relu(x) if self.activation else x

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[:-1]) + (self.filters,)

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
            "rate": list(self.rate), "activation": self.activation, **self._norm_config()}


@keras.saving.register_keras_serializable(package="dpc_tf")
class SeparableConvBNReLU(FoldableMixin, common.NormConfigMixin, keras.layers.Layer):
  """Atrous separable conv: depthwise (rate r_h x r_w) -> BN -> ReLU -> 1x1 -> BN -> ReLU.

  Not keras.layers.SeparableConv2D, which has no BN/ReLU between its two convs. Only the
  pointwise kernel is regularised, as in the release.
  """

  CONV_BN = (("depthwise", "depthwise_bn"), ("pointwise", "pointwise_bn"))

  def __init__(self, filters: int, rate=1, kernel_size: int = 3,
               weight_decay: float = common.WEIGHT_DECAY, bn_momentum: float = common.BN_MOMENTUM,
               bn_epsilon: float = common.BN_EPSILON, sync_bn: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.filters = filters
    self.rate = common.pair(rate, "rate")
    self.kernel_size = kernel_size
    self._init_norm(weight_decay, bn_momentum, bn_epsilon, sync_bn)
    self.depthwise = keras.layers.DepthwiseConv2D(
        kernel_size, padding="same", dilation_rate=self.rate, use_bias=False, name="depthwise")
    self.depthwise_bn = self._bn("depthwise_bn")
    self.pointwise = keras.layers.Conv2D(
        filters, 1, use_bias=False, kernel_regularizer=common.l2(weight_decay), name="pointwise")
    self.pointwise_bn = self._bn("pointwise_bn")

  def build(self, input_shape):
    self.depthwise.build(input_shape)
    self.depthwise_bn.build(input_shape)
    self.pointwise.build(input_shape)
    self.pointwise_bn.build(self.compute_output_shape(input_shape))

  def call(self, x, training=None):
    x = atrous_conv(self.depthwise, x)
    x = keras.ops.relu(self._normalize(self.depthwise_bn, x, training))
    x = pointwise_conv(self.pointwise, x, training)
    return keras.ops.relu(self._normalize(self.pointwise_bn, x, training))

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[:-1]) + (self.filters,)

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "rate": list(self.rate),
            "kernel_size": self.kernel_size, **self._norm_config()}
