"""Backbones: aligned Xception-41/65/71 and MobileNet-v2, atrous to output stride 8/16/32.

Every backbone is a keras.Model named "backbone" taking float images in 0..255 (it scales
them to [-1, 1] itself) and returning {"features": the output-stride map, "decoder_tap": the
stride-4 map the DeepLabv3+ decoder reads}. `model.feature_channels` and
`backbone_channels(name)` give the features' channel count.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras

from dpc_tf.backbones import mobilenet_v2, xception
from dpc_tf.backbones.atrous import OUTPUT_STRIDES, atrous_schedule
from dpc_tf.backbones.blocks import ConvBN, DepthwiseConvBN, XceptionSeparableConv, fixed_padding
from dpc_tf.layers import common

BACKBONES = ("xception_41", "xception_65", "xception_71", "mobilenet_v2")


def check_backbone(name: str) -> str:
  if name not in BACKBONES:
    raise ValueError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}")
  return name


def backbone_channels(name: str, depth_multiplier: float = 1.0) -> int:
  """Channels of the backbone's "features" output: 2048 (Xception), 320 x multiplier."""
  check_backbone(name)
  if name == "mobilenet_v2":
    return mobilenet_v2.feature_channels(depth_multiplier)
  return xception.FEATURE_CHANNELS


def build_backbone(name: str, output_stride: int = 16, input_shape=(None, None, 3),
                   multi_grid: Optional[Sequence[int]] = None, depth_multiplier: float = 1.0,
                   weight_decay: float = common.WEIGHT_DECAY, sync_bn: bool = False,
                   model_name: str = "backbone") -> keras.Model:
  """Builds backbone `name`. multi_grid (Xception only) multiplies the last block's three
  rates; depth_multiplier applies to MobileNet-v2 only.

  The Keras model is called `model_name` ("backbone": DeepLab assembly, dpc_tf.costs parts
  and converted-weight keys rely on it). It cannot also be called `name`: that keyword is
  the backbone's name.
  """
  check_backbone(name)
  if name == "mobilenet_v2":
    if multi_grid is not None:
      raise ValueError("multi_grid applies to the Xception backbones only, not mobilenet_v2")
    return mobilenet_v2.build_mobilenet_v2(output_stride, input_shape, depth_multiplier,
                                           weight_decay, sync_bn, name=model_name)
  if depth_multiplier != 1.0:
    raise ValueError(f"depth_multiplier applies to mobilenet_v2 only, not {name}")
  return xception.build_xception(name, output_stride, input_shape, multi_grid, weight_decay,
                                 sync_bn, name=model_name)
