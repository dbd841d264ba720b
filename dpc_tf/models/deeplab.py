"""DeepLab assembly: backbone -> DPC or ASPP head -> optional decoder -> logits -> resize.

The model is functional with four top-level named layers, "backbone" (a keras.Model with
dict outputs), "head", "decoder" (when present) and "logits", so that dpc_tf.costs can split
its parameters and multiply-adds into parts (see `model_parts`) and converted checkpoints can
be loaded part by part (dpc_tf.checkpoints).
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import gin
import keras

from dpc_tf import search_space
from dpc_tf.backbones import FEATURES, get_backbone
from dpc_tf.errors import DpcError
from dpc_tf.layers import ASPP, DensePredictionCell, common
from dpc_tf.models.decoder import Decoder, ResizeLike

HEADS = ("dpc", "aspp")
DECODER_OUTPUT_STRIDES = (4,)  # every registered backbone's DECODER_TAP stride


def parse_decoder_output_stride(text: str) -> Optional[int]:
  """A --decoder_output_stride flag value: an integer, or "none" / "" for no decoder."""
  if text.strip().lower() in ("none", ""):
    return None
  try:
    return int(text)
  except ValueError:
    raise DpcError(f"--decoder_output_stride must be 4 or none, got {text}") from None
HEAD_OUTPUT_STRIDES = (8, 16)


def resolve_cell(cell) -> search_space.Cell:
  """None (the released Cityscapes cell), a Cell, a cell JSON path, JSON text/list or text."""
  if cell is None:
    return search_space.CITYSCAPES_CELL
  if isinstance(cell, (str, os.PathLike)) and (str(cell).endswith(".json")
                                               or os.path.isfile(cell)):
    return search_space.Cell.load(os.fspath(cell))
  return search_space.as_cell(cell)


def _check_head_args(head: str, output_stride: int) -> None:
  if head not in HEADS:
    raise common.LayerArgumentError(f"unknown head {head!r}; choose from {', '.join(HEADS)}")
  if output_stride not in HEAD_OUTPUT_STRIDES:
    # Rates are written for output stride 16 and scaled by 16 // output_stride: 0 at 32.
    raise common.LayerArgumentError(f"a head needs output_stride 8 or 16 (its rates are multiplied by 16 // "
                     f"output_stride), got {output_stride!r}")


def build_head(head: str = "dpc", cell=None, crop_size=(513, 513), output_stride: int = 16,
               weight_decay: float = common.WEIGHT_DECAY, sync_bn: bool = False,
               dropout: float = 0.1, aspp_rates: Sequence[int] = (6, 12, 18),
               name: str = "head", **options) -> keras.layers.Layer:
  """The multi-scale context layer alone: DensePredictionCell (`cell`) or ASPP.

  Rates are scaled by 16 // output_stride; `crop_size` (the training crop) fixes the
  pyramid-pooling kernels as in the release. The layer maps features [B, h, w, C] to
  [B, h, w, 256]; put it on cached features with `build_head_model`. options: further
  layer arguments (filters, projection_filters, bn_momentum, bn_epsilon).
  """
  _check_head_args(head, output_stride)
  kwargs = dict(crop_size=common.pair(crop_size, "crop_size"), output_stride=output_stride,
                dropout=dropout, weight_decay=weight_decay, sync_bn=sync_bn, name=name,
                **options)
  if head == "aspp":
    if cell is not None:
      raise common.LayerArgumentError("cell applies to head='dpc' only; drop it or use head='dpc'")
    return ASPP(rates=aspp_rates, **kwargs)
  return DensePredictionCell(resolve_cell(cell), **kwargs)


def logits_layer(num_classes: int, weight_decay: float = common.WEIGHT_DECAY) -> keras.layers.Layer:
  """1x1 conv with bias, no BN, as released; float32 even under mixed precision so the
  softmax cross-entropy sees full-precision logits."""
  if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
    raise common.LayerArgumentError(f"num_classes must be a positive int, got {num_classes!r}")
  return keras.layers.Conv2D(
      num_classes, 1, use_bias=True, dtype="float32", name="logits",
      kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.01),
      kernel_regularizer=common.l2(weight_decay))


def build_head_model(num_classes: int, feature_channels: int, head: str = "dpc", cell=None,
                     crop_size=(513, 513), output_stride: int = 16,
                     weight_decay: float = common.WEIGHT_DECAY, sync_bn: bool = False,
                     dropout: float = 0.1, name: str = "head_model",
                     **head_options) -> keras.Model:
  """features [B, h, w, feature_channels] -> logits [B, h, w, num_classes] (no decoder).

  The one model of a head on cached backbone features (the proxy trial trains it): top-level
  layers "head" and "logits" carry the same names as in `build_deeplab`, so
  `dpc_tf.costs.model_costs(m, shape, *model_parts(m))` works and
  `load_converted_weights(m, dir, parts=["head"])` can start it from a released model.
  Logits stay at the feature resolution; upsample them to the labels in the loss.
  head_options: the head layer's width and BN settings (`build_head`), which a short proxy
  run changes (e.g. filters=64, bn_momentum=0.9).
  """
  features = keras.Input((None, None, feature_channels), name="features")
  head_layer = build_head(head, cell, crop_size, output_stride, weight_decay, sync_bn, dropout,
                          **head_options)
  logits = logits_layer(num_classes, weight_decay)(head_layer(features))
  return keras.Model(features, logits, name=name)


def build_deeplab(num_classes: int, backbone: str = "xception_71", head: str = "dpc", cell=None,
                  crop_size=(513, 513), output_stride: int = 16,
                  decoder_output_stride: Optional[int] = 4, input_shape=(None, None, 3),
                  weight_decay: float = common.WEIGHT_DECAY, sync_bn: bool = False,
                  dropout: float = 0.1, multi_grid: Optional[Sequence[int]] = None,
                  depth_multiplier: float = 1.0, aspp_rates: Sequence[int] = (6, 12, 18),
                  name: str = "deeplab") -> keras.Model:
  """images [B, H, W, 3] in 0..255 -> logits [B, H, W, num_classes] (float32).

  backbone: xception_41/65/71 or mobilenet_v2. head: "dpc" (cell: a Cell, a cell JSON path,
  JSON or text; default the released Cityscapes cell) or "aspp". decoder_output_stride: 4
  (DeepLabv3+ decoder on the stride-4 tap) or None (no decoder). crop_size is the training
  crop, used only for pyramid-pooling kernels; any input size works at inference.
  """
  spec = get_backbone(backbone)
  _check_head_args(head, output_stride)
  # The decoder reads the endpoint the registry declares at its stride (timm's feature_info).
  taps = {info.stride: info.name for info in spec.feature_info(output_stride, depth_multiplier)
          if info.name != FEATURES}
  if decoder_output_stride is not None and decoder_output_stride not in taps:
    raise common.LayerArgumentError(f"decoder_output_stride must be "
                     f"{' or '.join(str(s) for s in sorted(taps))} or None (the strides of "
                     f"{backbone}'s decoder taps), got {decoder_output_stride!r}")
  backbone_model = spec.build(output_stride, input_shape, multi_grid, depth_multiplier,
                              weight_decay, sync_bn)
  head_layer = build_head(head, cell, crop_size, output_stride, weight_decay, sync_bn, dropout,
                          aspp_rates)
  images = keras.Input(input_shape, name="images")
  endpoints = backbone_model(images)
  x = head_layer(endpoints[FEATURES])
  if decoder_output_stride is not None:
    x = Decoder(weight_decay=weight_decay, sync_bn=sync_bn, name="decoder")(
        [x, endpoints[taps[decoder_output_stride]]])
  logits = logits_layer(num_classes, weight_decay)(x)
  outputs = ResizeLike(dtype="float32", name="upsample")([logits, images])
  return keras.Model(images, outputs, name=name)


# gin entry point: `deeplab_model.backbone = "mobilenet_v2"` etc. A configurable *function*
# (gin 0.5's @configurable on a Keras 3 Layer subclass crashes); gin validates bindings
# against build_deeplab's own signature, and explicit arguments win over bindings.
# build_deeplab itself stays unconfigured so that direct calls never see global bindings.
deeplab_model = gin.configurable("deeplab_model")(build_deeplab)


def model_parts(model: keras.Model) -> tuple[dict, dict]:
  """(parts, branches) for dpc_tf.costs.model_costs: every top-level part that exists."""
  names = [n for n in ("backbone", "head", "decoder", "logits")
           if any(l.name == n for l in model.layers)]
  parts = {n: model.get_layer(n) for n in names}
  branches = {"head": parts["head"].branch_layers} if "head" in parts else {}
  return parts, branches
