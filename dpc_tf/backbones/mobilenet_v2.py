"""MobileNet-v2 as DeepLab uses it: up to the 320-channel layer, any output stride.

keras.applications.MobileNetV2 cannot run atrous (its output stride is fixed at 32) and
carries the 1280-channel conv, so this is written from the slim layer table. Layer numbers
follow slim's endpoints: layer_1 is the 3x3 stem conv, layer_2..layer_18 the inverted
residuals (TF1 scopes MobilenetV2/Conv, MobilenetV2/expanded_conv, expanded_conv_1..16).
Padding is 'SAME' everywhere, as in the release (it does not pad explicitly for MobileNet).
"""

from __future__ import annotations

import dataclasses

import keras

from dpc_tf.backbones import atrous
from dpc_tf.backbones.blocks import ConvBN, DepthwiseConvBN
from dpc_tf.layers import common


@dataclasses.dataclass(frozen=True)
class InvertedResidual:
  """expand 1x1 (x expansion, relu6) -> depthwise 3x3 (relu6) -> project 1x1 (linear)."""
  expansion: int
  channels: int
  stride: int


STEM = (32, 2)  # layer_1: 3x3 conv, channels, stride
LAYERS = (InvertedResidual(1, 16, 1),
          InvertedResidual(6, 24, 2), InvertedResidual(6, 24, 1),
          InvertedResidual(6, 32, 2), InvertedResidual(6, 32, 1), InvertedResidual(6, 32, 1),
          InvertedResidual(6, 64, 2), InvertedResidual(6, 64, 1), InvertedResidual(6, 64, 1),
          InvertedResidual(6, 64, 1),
          InvertedResidual(6, 96, 1), InvertedResidual(6, 96, 1), InvertedResidual(6, 96, 1),
          InvertedResidual(6, 160, 2), InvertedResidual(6, 160, 1), InvertedResidual(6, 160, 1),
          InvertedResidual(6, 320, 1))
DECODER_TAP_LAYER = 4  # layer_4/depthwise_output: stride 4, 144 channels at multiplier 1


def make_divisible(value: float, divisor: int, min_value: int = None) -> int:
  """slim's rounding of channel counts: nearest multiple of divisor, never 10% below."""
  min_value = divisor if min_value is None else min_value
  rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
  return rounded + divisor if rounded < 0.9 * value else rounded


def depth_fn(depth_multiplier: float):
  """DeepLab rounds to multiples of 8 only at multiplier 1.0 (divisible_by = min_depth = 1
  otherwise), so a 0.5 model has exactly half the channels."""
  divisor = 8 if depth_multiplier == 1.0 else 1
  return lambda channels: make_divisible(channels * depth_multiplier, divisor, divisor)


def expanded_channels(in_channels: int, expansion: int) -> int:
  """slim's expand_input_by_factor: rounded to 8 whatever the multiplier; layer_2's
  expansion 1 is expand_input(1, divisible_by=1), i.e. no expansion conv at all."""
  return in_channels if expansion == 1 else make_divisible(in_channels * expansion, 8)


def feature_channels(depth_multiplier: float = 1.0) -> int:
  return depth_fn(depth_multiplier)(LAYERS[-1].channels)


def endpoint_channels(endpoint: str, depth_multiplier: float = 1.0) -> int:
  """Channels of "features" or "decoder_tap" (layer_4's depthwise output: the expansion of
  layer_3's output, which does not scale linearly with the multiplier) from the table."""
  if endpoint == "features":
    return feature_channels(depth_multiplier)
  if endpoint == "decoder_tap":
    tap_input = depth_fn(depth_multiplier)(LAYERS[DECODER_TAP_LAYER - 3].channels)
    return expanded_channels(tap_input, LAYERS[DECODER_TAP_LAYER - 2].expansion)
  raise common.LayerArgumentError(f"mobilenet_v2 has no endpoint {endpoint!r}")


def tf1_scope(layer: int) -> str:
  """TF1 variable scope of layer_{layer} (1-based, as slim's endpoints)."""
  if layer == 1:
    return "MobilenetV2/Conv"
  return "MobilenetV2/expanded_conv" + ("" if layer == 2 else f"_{layer - 2}")


def build_mobilenet_v2(output_stride: int = 16, input_shape=(None, None, 3),
                       depth_multiplier: float = 1.0, weight_decay: float = common.WEIGHT_DECAY,
                       sync_bn: bool = False, name: str = "backbone") -> keras.Model:
  """images in 0..255 -> {"features": 320 x multiplier channels at `output_stride`,
  "decoder_tap": layer_4's depthwise output (stride 4, after BN + relu6)}."""
  atrous.check_output_stride(output_stride)
  if not depth_multiplier > 0:
    raise common.LayerArgumentError(f"depth_multiplier must be positive, got {depth_multiplier!r}")
  depth = depth_fn(depth_multiplier)
  norm = dict(weight_decay=weight_decay, sync_bn=sync_bn)
  schedule = atrous.atrous_schedule([STEM[1]] + [l.stride for l in LAYERS], output_stride)

  images = keras.Input(input_shape, name="images")
  x = keras.layers.Rescaling(2.0 / 255.0, offset=-1.0, name="preprocess")(images)
  stride, rate = schedule[0]
  x = ConvBN(depth(STEM[0]), 3, strides=stride, rate=rate, activation="relu6", name="layer_1",
             **norm)(x)
  tap = None
  for number, (spec, (stride, rate)) in enumerate(zip(LAYERS, schedule[1:]), start=2):
    inputs, in_channels = x, x.shape[-1]
    inner = expanded_channels(in_channels, spec.expansion)
    if inner > in_channels:
      x = ConvBN(inner, 1, activation="relu6", name=f"layer_{number}_expand", **norm)(x)
    x = DepthwiseConvBN(3, strides=stride, rate=rate, activation="relu6",
                        name=f"layer_{number}_depthwise", **norm)(x)
    if number == DECODER_TAP_LAYER:
      tap = x
    out_channels = depth(spec.channels)
    x = ConvBN(out_channels, 1, activation=None, name=f"layer_{number}_project", **norm)(x)
    # slim adds the residual when the layer *runs* at stride 1 and the depth is unchanged.
    if stride == 1 and in_channels == out_channels:
      x = keras.layers.Add(name=f"layer_{number}_add")([inputs, x])
  model = keras.Model(images, {"features": x, "decoder_tap": tap}, name=name)
  model.feature_channels = feature_channels(depth_multiplier)
  return model
