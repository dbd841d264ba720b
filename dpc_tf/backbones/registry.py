"""Every backbone as one row of `REGISTRY`, with timm-style feature info for its endpoints.

Everything that needs to know about backbones reads this table: `build_backbone`,
`models.build_deeplab` (which endpoint the decoder reads), `dpc_tf/model_stats.py` (the
choices of --backbone) and the checkpoint converter (the TF1 mapping family and scope). So
adding a backbone is one row here, plus its architecture in a family module (an Xception
variant: one row of xception.BLOCKS and its decoder tap).

Endpoints are declared, not measured: `tests/backbones` builds every registered backbone
and checks that the channels and strides of its outputs are the declared ones.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import keras

from dpc_tf.backbones import atrous, mobilenet_v2, xception
from dpc_tf.errors import DpcError
from dpc_tf.layers import common

FEATURES = "features"        # the output-stride map the head reads
DECODER_TAP = "decoder_tap"  # the low-level map the DeepLabv3+ decoder reads


class BackboneError(DpcError):
  """A backbone name or argument that cannot work."""


@dataclasses.dataclass(frozen=True)
class FeatureInfo:
  """One endpoint, as timm's feature_info: output dict key, channels, stride (reduction)."""
  name: str
  channels: int
  stride: int


@dataclasses.dataclass(frozen=True)
class Family:
  """How a family of backbones is built and how its channels scale with a multiplier.

  build(variant, output_stride, input_shape, multi_grid, depth_multiplier, weight_decay,
  sync_bn, name) -> keras.Model with outputs {FEATURES, DECODER_TAP}.
  channels(endpoint, depth_multiplier) -> channels at a multiplier other than 1 (None for
  families without a multiplier).
  """
  build: Callable[..., keras.Model]
  channels: Optional[Callable[[str, float], int]] = None


def _build_xception(variant, output_stride, input_shape, multi_grid, depth_multiplier,
                    weight_decay, sync_bn, name):
  del depth_multiplier  # refused before the call
  return xception.build_xception(variant, output_stride, input_shape, multi_grid, weight_decay,
                                 sync_bn, name=name)


def _build_mobilenet_v2(variant, output_stride, input_shape, multi_grid, depth_multiplier,
                        weight_decay, sync_bn, name):
  del variant, multi_grid  # one variant; multi_grid refused before the call
  return mobilenet_v2.build_mobilenet_v2(output_stride, input_shape, depth_multiplier,
                                         weight_decay, sync_bn, name=name)


FAMILIES = {
    "xception": Family(_build_xception),
    "mobilenet_v2": Family(_build_mobilenet_v2, mobilenet_v2.endpoint_channels),
}


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
  """One registered backbone.

  family: a key of FAMILIES (its builder and, in dpc_tf.checkpoints, its TF1 mapping).
  tf1_scope: the variable scope of its released checkpoints ("xception_71", "MobilenetV2").
  feature_channels: FEATURES' channels at depth multiplier 1; its stride is the output
    stride the backbone is built at (8, 16 or 32).
  decoder_tap_channels / decoder_tap_stride: DECODER_TAP's, at depth multiplier 1.
  multi_grid / depth_multiplier: whether the backbone takes these arguments.
  """
  name: str
  family: str
  tf1_scope: str
  feature_channels: int
  decoder_tap_channels: int
  decoder_tap_stride: int = 4
  multi_grid: bool = False
  depth_multiplier: bool = False

  def channels(self, endpoint: str, depth_multiplier: float = 1.0) -> int:
    declared = {FEATURES: self.feature_channels, DECODER_TAP: self.decoder_tap_channels}
    if endpoint not in declared:
      raise BackboneError(f"backbone {self.name} has no endpoint {endpoint!r}; endpoints are "
                          f"{', '.join(declared)}")
    if depth_multiplier == 1.0:
      return declared[endpoint]
    self._check_depth_multiplier(depth_multiplier)
    return FAMILIES[self.family].channels(endpoint, depth_multiplier)

  def feature_info(self, output_stride: int = 16,
                   depth_multiplier: float = 1.0) -> tuple[FeatureInfo, ...]:
    """The endpoints a model built with these arguments outputs, shallowest first."""
    atrous.check_output_stride(output_stride)
    return (FeatureInfo(DECODER_TAP, self.channels(DECODER_TAP, depth_multiplier),
                        self.decoder_tap_stride),
            FeatureInfo(FEATURES, self.channels(FEATURES, depth_multiplier), output_stride))

  def _check_depth_multiplier(self, depth_multiplier: float) -> None:
    if not self.depth_multiplier:
      raise BackboneError(f"depth_multiplier applies to "
                          f"{', '.join(n for n, s in REGISTRY.items() if s.depth_multiplier)} "
                          f"only, not {self.name}")
    if not depth_multiplier > 0:
      raise BackboneError(f"depth_multiplier must be positive, got {depth_multiplier!r}")

  def build(self, output_stride: int = 16, input_shape=(None, None, 3),
            multi_grid: Optional[Sequence[int]] = None, depth_multiplier: float = 1.0,
            weight_decay: float = common.WEIGHT_DECAY, sync_bn: bool = False,
            name: str = "backbone") -> keras.Model:
    atrous.check_output_stride(output_stride)
    if multi_grid is not None and not self.multi_grid:
      raise BackboneError(f"multi_grid applies to "
                          f"{', '.join(n for n, s in REGISTRY.items() if s.multi_grid)} only, "
                          f"not {self.name}")
    if depth_multiplier != 1.0:
      self._check_depth_multiplier(depth_multiplier)
    return FAMILIES[self.family].build(self.name, output_stride, input_shape, multi_grid,
                                       depth_multiplier, weight_decay, sync_bn, name)


def _xception(name: str, decoder_tap_channels: int) -> BackboneSpec:
  return BackboneSpec(name, "xception", name, 2048, decoder_tap_channels, multi_grid=True)


# The table (REFERENCE.md section 4). Decoder taps: X-41/65 entry block 2's and X-71 entry
# block 3's second separable conv (256 channels); MobileNet-v2 layer_4's depthwise (144).
REGISTRY: dict[str, BackboneSpec] = {spec.name: spec for spec in (
    _xception("xception_41", 256),
    _xception("xception_65", 256),
    _xception("xception_71", 256),
    BackboneSpec("mobilenet_v2", "mobilenet_v2", "MobilenetV2", 320, 144, depth_multiplier=True),
)}
BACKBONES = tuple(REGISTRY)


def get_backbone(name: str) -> BackboneSpec:
  """The registry row of `name`; BackboneError naming the choices otherwise."""
  try:
    return REGISTRY[name]
  except (KeyError, TypeError):
    raise BackboneError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}") \
        from None
