"""Backbone conv blocks as the TF1 release builds them: conv/depthwise + BN (+ activation).

The head blocks in dpc_tf.layers always end in ReLU and always pad 'same'; backbones also
need strided convs with DeepLab's explicit symmetric padding, relu6, no activation (the
projections and shortcuts) and Xception's pre-activation separable conv. Sub-layer names
(conv/bn, depthwise/bn, depthwise/depthwise_bn/pointwise/pointwise_bn) match the head blocks
so one checkpoint mapping serves both.
"""

from __future__ import annotations

from typing import Optional

import keras
import tensorflow as tf

from dpc_tf.layers import common
from dpc_tf.layers.conv_blocks import pointwise_conv
from dpc_tf.layers.folding import FoldableMixin, push_bias_through

# Backbones keep the release's BN epsilon 1e-3 (heads use 1e-5), REFERENCE.md section 4.
BACKBONE_BN_EPSILON = 1e-3
ACTIVATIONS = (None, "relu", "relu6")


def _check_activation(activation: Optional[str]) -> Optional[str]:
  if activation not in ACTIVATIONS:
    raise common.LayerArgumentError(f"unknown activation {activation!r}; choose from None, 'relu', 'relu6'")
  return activation


def activate(x, activation: Optional[str]):
  if activation == "relu":
    return keras.ops.relu(x)
  if activation == "relu6":
    return keras.ops.relu6(x)
  return x


def fixed_padding(x: tf.Tensor, kernel_size: int, rate: int = 1) -> tf.Tensor:
  """Pads so a VALID strided conv sees the input centred: pad_total = k_eff - 1, floor/ceil.

  'same' padding pads only bottom/right for even inputs, which shifts every strided feature
  by half a pixel relative to the release (whose weights expect this symmetric padding).
  """
  effective = kernel_size + (kernel_size - 1) * (rate - 1)
  pad_total = effective - 1
  begin = pad_total // 2
  end = pad_total - begin
  return tf.pad(x, [[0, 0], [begin, end], [begin, end], [0, 0]])


def conv_output_size(size: Optional[int], stride: int) -> Optional[int]:
  """Spatial output size of one conv: ceil(size / stride) for 'same' and for the explicit
  padding alike ((size + k_eff - 1 - k_eff) // stride + 1), which is also DeepLab's
  scale_dimension(size, 1 / stride). None (a dynamic size) stays None."""
  return None if size is None else -(-size // stride)


class _BackboneBlock(FoldableMixin, common.NormConfigMixin, keras.layers.Layer):
  """Stride / rate / padding / activation handling shared by the backbone blocks."""

  def _init_block(self, kernel_size, strides, rate, activation, explicit_padding):
    if strides > 1 and rate > 1:
      raise common.LayerArgumentError(f"{self.name}: a conv cannot have both stride {strides} and rate {rate}")
    self.kernel_size = int(kernel_size)
    self.strides = int(strides)
    self.rate = int(rate)
    self.activation = _check_activation(activation)
    self.explicit_padding = bool(explicit_padding)
    # The release pads explicitly only for strided convs; stride-1 convs are 'SAME'.
    self._pad = self.explicit_padding and self.strides > 1 and self.kernel_size > 1
    self._padding = "valid" if self._pad else "same"

  def _maybe_pad(self, x):
    return fixed_padding(x, self.kernel_size, self.rate) if self._pad else x

  def _output_shape(self, input_shape, channels):
    h, w = (conv_output_size(s, self.strides) for s in input_shape[1:3])
    return (input_shape[0], h, w, channels)

  def _block_config(self) -> dict:
    return {"kernel_size": self.kernel_size, "strides": self.strides, "rate": self.rate,
            "activation": self.activation, "explicit_padding": self.explicit_padding,
            **self._norm_config()}


@keras.saving.register_keras_serializable(package="dpc_tf")
class ConvBN(_BackboneBlock):
  """k x k conv (no bias) -> BN -> optional relu/relu6: roots, expansions, projections,
  shortcuts. TF1 scope layout: {scope}/weights, {scope}/BatchNorm/*."""

  CONV_BN = (("conv", "bn"),)

  def __init__(self, filters: int, kernel_size: int = 1, strides: int = 1, rate: int = 1,
               activation: Optional[str] = None, explicit_padding: bool = False,
               weight_decay: float = common.WEIGHT_DECAY, bn_momentum: float = common.BN_MOMENTUM,
               bn_epsilon: float = BACKBONE_BN_EPSILON, sync_bn: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.filters = int(filters)
    self._init_norm(weight_decay, bn_momentum, bn_epsilon, sync_bn)
    self._init_block(kernel_size, strides, rate, activation, explicit_padding)
    self.conv = keras.layers.Conv2D(
        self.filters, self.kernel_size, strides=self.strides, padding=self._padding,
        dilation_rate=self.rate, use_bias=False, kernel_regularizer=common.l2(weight_decay),
        name="conv")
    self.bn = self._bn("bn")

  def build(self, input_shape):
    self.conv.build(input_shape)
    self.bn.build(self.compute_output_shape(input_shape))

  def call(self, x, training=None):
    x = pointwise_conv(self.conv, self._maybe_pad(x), training)
    return activate(self._normalize(self.bn, x, training), self.activation)

  def compute_output_shape(self, input_shape):
    return self._output_shape(input_shape, self.filters)

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, **self._block_config()}


@keras.saving.register_keras_serializable(package="dpc_tf")
class DepthwiseConvBN(_BackboneBlock):
  """Depthwise k x k (no bias, not regularised, as released) -> BN -> optional activation.
  MobileNet-v2's middle op; TF1 layout {scope}/depthwise_weights, {scope}/BatchNorm/*."""

  CONV_BN = (("depthwise", "bn"),)

  def __init__(self, kernel_size: int = 3, strides: int = 1, rate: int = 1,
               activation: Optional[str] = "relu6", explicit_padding: bool = False,
               weight_decay: float = common.WEIGHT_DECAY, bn_momentum: float = common.BN_MOMENTUM,
               bn_epsilon: float = BACKBONE_BN_EPSILON, sync_bn: bool = False, **kwargs):
    super().__init__(**kwargs)
    self._init_norm(weight_decay, bn_momentum, bn_epsilon, sync_bn)
    self._init_block(kernel_size, strides, rate, activation, explicit_padding)
    self.depthwise = keras.layers.DepthwiseConv2D(
        self.kernel_size, strides=self.strides, padding=self._padding,
        dilation_rate=self.rate, use_bias=False, name="depthwise")
    self.bn = self._bn("bn")

  def build(self, input_shape):
    self.depthwise.build(input_shape)
    self.bn.build(self.compute_output_shape(input_shape))

  def call(self, x, training=None):
    x = self.depthwise(self._maybe_pad(x))
    return activate(self._normalize(self.bn, x, training), self.activation)

  def compute_output_shape(self, input_shape):
    return self._output_shape(input_shape, input_shape[-1])

  def get_config(self):
    return {**super().get_config(), **self._block_config()}


@keras.saving.register_keras_serializable(package="dpc_tf")
class XceptionSeparableConv(_BackboneBlock):
  """One separable conv of an aligned-Xception unit.

  activation_inside=False (all blocks but the last, "pre-activation"):
    ReLU -> depthwise -> BN -> pointwise -> BN        (output is post-BN, pre-ReLU)
  activation_inside=True (exit block 2):
    depthwise -> BN -> ReLU -> pointwise -> BN -> ReLU
  The stride applies to the depthwise conv; strided convs pad explicitly. The pre-activation
  output is what DeepLab taps for the decoder ("after BN, before the next ReLU").
  """

  CONV_BN = (("depthwise", "depthwise_bn"), ("pointwise", "pointwise_bn"))

  def __init__(self, filters: int, kernel_size: int = 3, strides: int = 1, rate: int = 1,
               activation_inside: bool = False, explicit_padding: bool = True,
               weight_decay: float = common.WEIGHT_DECAY, bn_momentum: float = common.BN_MOMENTUM,
               bn_epsilon: float = BACKBONE_BN_EPSILON, sync_bn: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.filters = int(filters)
    self.activation_inside = bool(activation_inside)
    self._init_norm(weight_decay, bn_momentum, bn_epsilon, sync_bn)
    self._init_block(kernel_size, strides, rate, "relu" if activation_inside else None,
                     explicit_padding)
    self.depthwise = keras.layers.DepthwiseConv2D(
        self.kernel_size, strides=self.strides, padding=self._padding,
        dilation_rate=self.rate, use_bias=False, name="depthwise")
    self.depthwise_bn = self._bn("depthwise_bn")
    self.pointwise = keras.layers.Conv2D(
        self.filters, 1, use_bias=False, kernel_regularizer=common.l2(weight_decay),
        name="pointwise")
    self.pointwise_bn = self._bn("pointwise_bn")

  def build(self, input_shape):
    mid_shape = self._output_shape(input_shape, input_shape[-1])
    self.depthwise.build(input_shape)
    self.depthwise_bn.build(mid_shape)
    self.pointwise.build(mid_shape)
    self.pointwise_bn.build(self.compute_output_shape(input_shape))

  def _fold_more(self, values) -> None:
    if not self.activation_inside:  # nothing between the two convs: one bias suffices
      push_bias_through(self.depthwise_bn, self.pointwise, self.pointwise_bn, values)

  def call(self, x, training=None):
    if not self.activation_inside:
      x = keras.ops.relu(x)
    x = self.depthwise(self._maybe_pad(x))
    if not (self.folded and not self.activation_inside):  # else its bias is in pointwise_bn's
      x = self._normalize(self.depthwise_bn, x, training)
    x = activate(x, self.activation)
    x = pointwise_conv(self.pointwise, x, training)
    x = self._normalize(self.pointwise_bn, x, training)
    return activate(x, self.activation)

  def compute_output_shape(self, input_shape):
    return self._output_shape(input_shape, self.filters)

  def get_config(self):
    config = {**super().get_config(), "filters": self.filters,
              "activation_inside": self.activation_inside, **self._block_config()}
    del config["activation"]  # derived from activation_inside
    return config
