"""The ASPP head of DeepLabv3+, the baseline the DPC is measured against."""

from __future__ import annotations

import keras

from dpc_tf.layers import common
from dpc_tf.layers.conv_blocks import ConvBNReLU, SeparableConvBNReLU
from dpc_tf.layers.pyramid_pooling import PyramidPooling


@keras.saving.register_keras_serializable(package="dpc_tf")
class ASPP(common.NormConfigMixin, keras.layers.Layer):
  """image pooling + 1x1 conv + separable atrous convs -> concat -> 1x1 projection -> dropout.

  Branch order and names follow the release (image_pooling, aspp0, aspp1..3). Rates are
  written for output stride 16 and multiplied by 16 // output_stride (`rate_multiplier`,
  derived; old configs that carry it are accepted if consistent). Note the dropout sits
  after the projection here, unlike the DPC's.
  """

  def __init__(self, filters: int = 256, rates=(6, 12, 18), image_pooling: bool = True,
               dropout: float = 0.1, crop_size=None, output_stride: int = 16,
               weight_decay: float = common.WEIGHT_DECAY, bn_momentum: float = common.BN_MOMENTUM,
               bn_epsilon: float = common.BN_EPSILON, sync_bn: bool = False, **kwargs):
    old_multiplier = kwargs.pop("rate_multiplier", None)
    super().__init__(**kwargs)
    self.filters = filters
    self.rates = tuple(int(r) for r in rates)
    common.rate_multiplier(output_stride, old_multiplier)  # validates both
    self.image_pooling = image_pooling
    self.dropout_rate = dropout
    self.crop_size = None if crop_size is None else common.pair(crop_size, "crop_size")
    self.output_stride = output_stride
    self._init_norm(weight_decay, bn_momentum, bn_epsilon, sync_bn)
    norm = self._norm_config()
    # Named attributes, not a list: tf.train.Checkpoint does not see layers held in a
    # Keras-tracked list (see DensePredictionCell).
    self._branch_names = (["image_pooling"] if image_pooling else []) + [
        f"aspp{i}" for i in range(len(self.rates) + 1)]
    if image_pooling:
      self.image_pooling_branch = PyramidPooling(1, filters, crop_size=self.crop_size,
                                                 output_stride=output_stride,
                                                 name="image_pooling", **norm)
    self.aspp0 = ConvBNReLU(filters, 1, name="aspp0", **norm)
    for i, rate in enumerate(self.rates, start=1):
      setattr(self, f"aspp{i}", SeparableConvBNReLU(filters, rate * self.rate_multiplier,
                                                    name=f"aspp{i}", **norm))
    self.concat_projection = ConvBNReLU(filters, 1, name="concat_projection", **norm)
    self.dropout = keras.layers.Dropout(dropout, name="dropout")

  @property
  def rate_multiplier(self) -> int:
    return common.rate_multiplier(self.output_stride)

  @property
  def branch_layers(self) -> list:
    return [getattr(self, "image_pooling_branch" if n == "image_pooling" else n)
            for n in self._branch_names]

  def build(self, input_shape):
    for layer in self.branch_layers:
      layer.build(input_shape)
    width = self.filters * len(self.branch_layers)
    self.concat_projection.build(tuple(input_shape[:-1]) + (width,))

  def call(self, features, training=None):
    x = keras.ops.concatenate([layer(features, training=training)
                               for layer in self.branch_layers], axis=-1)
    x = self.concat_projection(x, training=training)
    return self.dropout(x, training=training)

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[:-1]) + (self.filters,)

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "rates": list(self.rates),
            "image_pooling": self.image_pooling,
            "dropout": self.dropout_rate,
            "crop_size": None if self.crop_size is None else list(self.crop_size),
            "output_stride": self.output_stride, **self._norm_config()}
