"""Keras 3 layers: the DPC operators, the cell, the ASPP baseline."""

from dpc_tf.layers.aspp import ASPP
from dpc_tf.layers.common import (LayerArgumentError, rate_multiplier, resize_bilinear,
                                  scale_dimension)
from dpc_tf.layers.conv_blocks import ConvBNReLU, SeparableConvBNReLU
from dpc_tf.layers.dense_prediction_cell import DensePredictionCell, operator_layer
from dpc_tf.layers.pyramid_pooling import PyramidPooling, pooling_kernel
