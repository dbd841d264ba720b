"""The DeepLabv3+ decoder and the align-corners resize layer of the model's output."""

from __future__ import annotations

import keras
import tensorflow as tf

from dpc_tf.layers import common
from dpc_tf.layers.conv_blocks import ConvBNReLU, SeparableConvBNReLU


@keras.saving.register_keras_serializable(package="dpc_tf")
class Decoder(common.NormConfigMixin, keras.layers.Layer):
  """[head output, stride-4 tap] -> 256 channels at the tap's resolution.

  tap -> 1x1 conv to 48 + BN + ReLU ("feature_projection0"); head output resized
  (bilinear, align corners) to the tap's size; concat [head, tap] (304 channels, in this
  order, which the converted depthwise weights rely on); two 3x3 separable convs to 256
  ("decoder_conv0", "decoder_conv1"). The release resizes to scale_dimension(crop, 1/4),
  which is exactly the stride-4 tap's size for any input, so the tap's runtime size is used
  and the decoder works at any input size.
  """

  def __init__(self, filters: int = 256, projection_filters: int = 48,
               weight_decay: float = common.WEIGHT_DECAY, bn_momentum: float = common.BN_MOMENTUM,
               bn_epsilon: float = common.BN_EPSILON, sync_bn: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.filters = int(filters)
    self.projection_filters = int(projection_filters)
    self._init_norm(weight_decay, bn_momentum, bn_epsilon, sync_bn)
    norm = self._norm_config()
    self.feature_projection = ConvBNReLU(self.projection_filters, 1, name="feature_projection0",
                                         **norm)
    self.decoder_conv0 = SeparableConvBNReLU(self.filters, 1, name="decoder_conv0", **norm)
    self.decoder_conv1 = SeparableConvBNReLU(self.filters, 1, name="decoder_conv1", **norm)

  def build(self, input_shape):
    features_shape, tap_shape = input_shape
    self.feature_projection.build(tap_shape)
    concat = tuple(tap_shape[:-1]) + (features_shape[-1] + self.projection_filters,)
    self.decoder_conv0.build(concat)
    self.decoder_conv1.build(tuple(tap_shape[:-1]) + (self.filters,))

  def call(self, inputs, training=None):
    features, tap = inputs
    tap = self.feature_projection(tap, training=training)
    features = common.resize_bilinear(features, tf.shape(tap)[1:3])
    x = keras.ops.concatenate([features, tap], axis=-1)
    x = self.decoder_conv0(x, training=training)
    return self.decoder_conv1(x, training=training)

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[1][:-1]) + (self.filters,)

  def get_config(self):
    return {**super().get_config(), "filters": self.filters,
            "projection_filters": self.projection_filters, **self._norm_config()}


@keras.saving.register_keras_serializable(package="dpc_tf")
class ResizeLike(keras.layers.Layer):
  """[x, reference] -> x resized bilinearly (align corners) to reference's spatial size.

  DeepLab upsamples logits to the input image this way; a layer (not a raw op) so that the
  functional model stays serialisable and keeps dynamic input sizes.
  """

  def call(self, inputs):
    x, reference = inputs
    return common.resize_bilinear(x, tf.shape(reference)[1:3])

  def compute_output_shape(self, input_shape):
    x_shape, reference_shape = input_shape
    return (x_shape[0],) + tuple(reference_shape[1:3]) + (x_shape[-1],)
