"""Backbones: aligned Xception-41/65/71 and MobileNet-v2, atrous to output stride 8/16/32.

Every backbone is a keras.Model named "backbone" taking float images in 0..255 (it scales
them to [-1, 1] itself) and returning {"features": the output-stride map, "decoder_tap": the
stride-4 map the DeepLabv3+ decoder reads}. Which backbones exist, their endpoints'
channels and strides and how to build them is one table, `registry.REGISTRY`;
`get_backbone(name).feature_info(output_stride, depth_multiplier)` describes the endpoints.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras

from dpc_tf.backbones import mobilenet_v2, xception
from dpc_tf.backbones.atrous import OUTPUT_STRIDES, atrous_schedule
from dpc_tf.backbones.blocks import ConvBN, DepthwiseConvBN, XceptionSeparableConv, fixed_padding
from dpc_tf.backbones.registry import (BACKBONES, DECODER_TAP, FEATURES, REGISTRY, BackboneError,
                                       BackboneSpec, FeatureInfo, get_backbone)
from dpc_tf.layers import common


def check_backbone(name: str) -> str:
  return get_backbone(name).name


def backbone_channels(name: str, depth_multiplier: float = 1.0) -> int:
  """Channels of the backbone's "features" output: 2048 (Xception), 320 x multiplier."""
  return get_backbone(name).channels(FEATURES, depth_multiplier)


def build_backbone(name: str, output_stride: int = 16, input_shape=(None, None, 3),
                   multi_grid: Optional[Sequence[int]] = None, depth_multiplier: float = 1.0,
                   weight_decay: float = common.WEIGHT_DECAY, sync_bn: bool = False,
                   model_name: str = "backbone") -> keras.Model:
  """Builds backbone `name` (a key of REGISTRY). multi_grid (Xception only) multiplies the
  last block's three rates; depth_multiplier applies to MobileNet-v2 only.

  The Keras model is called `model_name` ("backbone": DeepLab assembly, dpc_tf.costs parts
  and converted-weight keys rely on it). It cannot also be called `name`: that keyword is
  the backbone's name.
  """
  return get_backbone(name).build(output_stride, input_shape, multi_grid, depth_multiplier,
                                  weight_decay, sync_bn, model_name)
