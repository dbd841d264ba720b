"""The Dense Prediction Cell as a Keras layer, built from a search_space.Cell."""

from __future__ import annotations

import keras

from dpc_tf import search_space
from dpc_tf.layers import common
from dpc_tf.layers.conv_blocks import ConvBNReLU, SeparableConvBNReLU
from dpc_tf.layers.pyramid_pooling import PyramidPooling


def operator_layer(op: search_space.Operator, name: str, filters: int = 256, crop_size=None,
                   output_stride: int = 16, **norm) -> keras.layers.Layer:
  """The Keras layer for one of the 81 operators. Rates (written for output stride 16) are
  multiplied by 16 // output_stride."""
  multiplier = common.rate_multiplier(output_stride)
  if isinstance(op, search_space.Conv1x1):
    return ConvBNReLU(filters, 1, name=name, **norm)
  if isinstance(op, search_space.SeparableConv3x3):
    rate = (op.rate_h * multiplier, op.rate_w * multiplier)
    return SeparableConvBNReLU(filters, rate=rate, name=name, **norm)
  if isinstance(op, search_space.PyramidPooling):
    return PyramidPooling(op.grid, filters, crop_size=crop_size, output_stride=output_stride,
                          name=name, **norm)
  raise search_space.CellError(f"unknown operator {op!r}")


@keras.saving.register_keras_serializable(package="dpc_tf")
class DensePredictionCell(common.NormConfigMixin, keras.layers.Layer):
  """Branches as the cell says -> concat of every branch -> dropout -> 1x1 projection.

  Args:
    cell: a search_space.Cell, its released JSON (list or string) or its compact text.
    filters: width of every branch (256 in the paper).
    projection_filters: width of the concat projection (256).
    dropout: rate applied to the concat, in training only (0.1).
    crop_size: the training crop; with output_stride it fixes the pyramid pooling kernels
      (see PyramidPooling).
    output_stride: the backbone's; rates in a cell are written for output stride 16 and
      multiplied by 16 // output_stride (`rate_multiplier`, derived, read-only). Configs
      saved before it was derived carry `rate_multiplier` too: accepted if consistent.
  """

  def __init__(self, cell, filters: int = 256, projection_filters: int = 256,
               dropout: float = 0.1, crop_size=None, output_stride: int = 16,
               weight_decay: float = common.WEIGHT_DECAY, bn_momentum: float = common.BN_MOMENTUM,
               bn_epsilon: float = common.BN_EPSILON, sync_bn: bool = False, **kwargs):
    old_multiplier = kwargs.pop("rate_multiplier", None)
    super().__init__(**kwargs)
    self.cell = search_space.as_cell(cell)
    self.filters = filters
    self.projection_filters = projection_filters
    self.dropout_rate = dropout
    common.rate_multiplier(output_stride, old_multiplier)  # validates both
    self.crop_size = None if crop_size is None else common.pair(crop_size, "crop_size")
    self.output_stride = output_stride
    self._init_norm(weight_decay, bn_momentum, bn_epsilon, sync_bn)
    norm = self._norm_config()
    # Named attributes, not a list: tf.train.Checkpoint does not see layers held in a
    # Keras-tracked list, so list-held branches would silently be left out of checkpoints.
    for i, branch in enumerate(self.cell):
      setattr(self, f"branch{i}", operator_layer(branch.op, f"branch{i}", filters,
                                                 self.crop_size, output_stride, **norm))
    self.dropout = keras.layers.Dropout(dropout, name="dropout")
    self.concat_projection = ConvBNReLU(projection_filters, 1, name="concat_projection", **norm)

  @property
  def rate_multiplier(self) -> int:
    return common.rate_multiplier(self.output_stride)

  @property
  def branch_layers(self) -> list:
    return [getattr(self, f"branch{i}") for i in range(len(self.cell))]

  def build(self, input_shape):
    branch_shape = tuple(input_shape[:-1]) + (self.filters,)
    for branch, layer in zip(self.cell, self.branch_layers):
      layer.build(input_shape if branch.input == search_space.FEATURES else branch_shape)
    self.concat_projection.build(tuple(input_shape[:-1]) + (self.filters * len(self.cell),))

  def call(self, features, training=None):
    outputs = []
    for branch, layer in zip(self.cell, self.branch_layers):
      x = features if branch.input == search_space.FEATURES else outputs[branch.input]
      outputs.append(layer(x, training=training))
    x = keras.ops.concatenate(outputs, axis=-1)
    x = self.dropout(x, training=training)
    return self.concat_projection(x, training=training)

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[:-1]) + (self.projection_filters,)

  def get_config(self):
    return {**super().get_config(), "cell": self.cell.to_json(), "filters": self.filters,
            "projection_filters": self.projection_filters, "dropout": self.dropout_rate,
            "crop_size": None if self.crop_size is None else list(self.crop_size),
            "output_stride": self.output_stride, **self._norm_config()}
