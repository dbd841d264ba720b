"""Which TF1 DeepLab checkpoint variable each Keras weight of a dpc_tf model comes from.

The mapping is derived from the same tables that build the models (xception.BLOCKS,
mobilenet_v2.LAYERS, the cell's branches), so it cannot drift from the architecture. Names
follow REFERENCE.md section 6; Keras and TF1 both store kernels HWIO (depthwise
[k, k, C, 1]), so values copy over unchanged.
"""

from __future__ import annotations

from typing import Iterator

import keras

from dpc_tf.backbones import get_backbone, mobilenet_v2, xception
from dpc_tf.layers import ASPP, ConvBNReLU, DensePredictionCell, PyramidPooling, SeparableConvBNReLU

_BN = ("gamma", "beta", "moving_mean", "moving_variance")
PARTS = ("backbone", "head", "decoder", "logits")

Pair = tuple[keras.Variable, str]


def _bn(bn: keras.layers.BatchNormalization, scope: str) -> Iterator[Pair]:
  for name in _BN:
    yield getattr(bn, name), f"{scope}/BatchNorm/{name}"


def conv_bn(layer, scope: str) -> Iterator[Pair]:
  """ConvBN / ConvBNReLU (attributes conv, bn): {scope}/weights, {scope}/BatchNorm/*."""
  yield layer.conv.kernel, f"{scope}/weights"
  yield from _bn(layer.bn, scope)


def depthwise_bn(layer, scope: str) -> Iterator[Pair]:
  """DepthwiseConvBN (depthwise, bn): {scope}/depthwise_weights, {scope}/BatchNorm/*."""
  yield layer.depthwise.kernel, f"{scope}/depthwise_weights"
  yield from _bn(layer.bn, scope)


def separable(layer, scope: str) -> Iterator[Pair]:
  """Split separable conv (depthwise, depthwise_bn, pointwise, pointwise_bn): the release
  stores it as two convs, {scope}_depthwise and {scope}_pointwise."""
  yield layer.depthwise.kernel, f"{scope}_depthwise/depthwise_weights"
  yield from _bn(layer.depthwise_bn, f"{scope}_depthwise")
  yield layer.pointwise.kernel, f"{scope}_pointwise/weights"
  yield from _bn(layer.pointwise_bn, f"{scope}_pointwise")


def _xception(model: keras.Model, variant: str) -> Iterator[Pair]:
  for scope, _, _ in xception.ROOT:
    yield from conv_bn(model.get_layer(xception.root_layer_name(scope)), f"{variant}/{scope}")
  for unit in xception.units(variant):
    scope = unit.tf1_scope(variant)
    for k in range(1, 4):
      yield from separable(model.get_layer(xception.separable_layer_name(unit, k)),
                           f"{scope}/separable_conv{k}")
    if unit.block.skip == "conv":
      yield from conv_bn(model.get_layer(xception.shortcut_layer_name(unit)), f"{scope}/shortcut")


def _mobilenet_v2(model: keras.Model, scope: str) -> Iterator[Pair]:
  del scope  # always "MobilenetV2", which mobilenet_v2.tf1_scope writes
  yield from conv_bn(model.get_layer("layer_1"), mobilenet_v2.tf1_scope(1))
  names = {layer.name for layer in model.layers}
  for number in range(2, len(mobilenet_v2.LAYERS) + 2):
    scope = mobilenet_v2.tf1_scope(number)
    if f"layer_{number}_expand" in names:
      yield from conv_bn(model.get_layer(f"layer_{number}_expand"), f"{scope}/expand")
    yield from depthwise_bn(model.get_layer(f"layer_{number}_depthwise"), f"{scope}/depthwise")
    yield from conv_bn(model.get_layer(f"layer_{number}_project"), f"{scope}/project")


# The TF1 names of each backbone family of the registry (backbones.registry.FAMILIES).
_BACKBONE_PAIRS = {"xception": _xception, "mobilenet_v2": _mobilenet_v2}


def backbone_pairs(model: keras.Model, backbone: str) -> Iterator[Pair]:
  spec = get_backbone(backbone)
  return _BACKBONE_PAIRS[spec.family](model, spec.tf1_scope)


def _branch(layer, scope: str) -> Iterator[Pair]:
  if isinstance(layer, SeparableConvBNReLU):
    return separable(layer, scope)
  if isinstance(layer, ConvBNReLU):
    return conv_bn(layer, scope)
  if isinstance(layer, PyramidPooling):
    return conv_bn(layer.conv, scope)
  raise TypeError(f"no TF1 mapping for head branch {layer.name} ({type(layer).__name__})")


def head_pairs(layer: keras.layers.Layer) -> Iterator[Pair]:
  """DPC: meta_architecture/branch{i}[_depthwise|_pointwise], .../concat_projection.
  ASPP: image_pooling, aspp0, aspp{i}_{depthwise,pointwise}, concat_projection (top level;
  the Keras sub-layer names already are these scopes)."""
  if isinstance(layer, DensePredictionCell):
    for i, branch in enumerate(layer.branch_layers):
      yield from _branch(branch, f"meta_architecture/branch{i}")
    yield from conv_bn(layer.concat_projection, "meta_architecture/concat_projection")
  elif isinstance(layer, ASPP):
    for branch in layer.branch_layers:
      yield from _branch(branch, branch.name)
    yield from conv_bn(layer.concat_projection, "concat_projection")
  else:
    raise TypeError(f"no TF1 mapping for head {type(layer).__name__}")


def decoder_pairs(layer) -> Iterator[Pair]:
  yield from conv_bn(layer.feature_projection, "decoder/feature_projection0")
  yield from separable(layer.decoder_conv0, "decoder/decoder_conv0")
  yield from separable(layer.decoder_conv1, "decoder/decoder_conv1")


def logits_pairs(layer) -> Iterator[Pair]:
  yield layer.kernel, "logits/semantic/weights"
  yield layer.bias, "logits/semantic/biases"


def weight_keys(model: keras.Model) -> dict[str, keras.Variable]:
  """Stable key of every weight: "<top-level layer>/<path inside it>", e.g.
  "backbone/layer_1/conv/kernel", "head/branch0/depthwise/kernel", "logits/kernel".

  Keys do not depend on how the model was assembled (a backbone's own variable paths do
  not include "backbone/"), so a head converted from a full model loads into a head-only
  model and vice versa.
  """
  keys: dict[str, keras.Variable] = {}
  for layer in model.layers:
    prefix = layer.name + "/"
    for variable in layer.weights:
      path = variable.path
      key = prefix + (path[len(prefix):] if path.startswith(prefix) else path)
      if key in keys and keys[key] is not variable:
        raise ValueError(f"two weights of model {model.name} share the key {key}")
      keys[key] = variable
  covered = {id(v) for v in keys.values()}
  stray = [v.path for v in model.weights if id(v) not in covered]
  if stray:
    raise ValueError(f"weights outside the top-level layers of {model.name}: {', '.join(stray)}")
  return keys


def tf1_mapping(model: keras.Model, backbone: str, parts=PARTS) -> dict[str, str]:
  """{weight key: TF1 variable name} for the given parts of a build_deeplab /
  build_head_model model; every weight of those parts is mapped exactly once."""
  layers = {layer.name: layer for layer in model.layers}
  pairs = []
  for part in parts:
    if part not in layers:
      continue
    layer = layers[part]
    if part == "backbone":
      pairs += backbone_pairs(layer, backbone)
    elif part == "head":
      pairs += head_pairs(layer)
    elif part == "decoder":
      pairs += decoder_pairs(layer)
    elif part == "logits":
      pairs += logits_pairs(layer)
    else:
      raise ValueError(f"unknown part {part!r}; parts are {', '.join(PARTS)}")
  by_id = {id(v): k for k, v in weight_keys(model).items()}
  mapping = {by_id[id(variable)]: name for variable, name in pairs}
  if len(mapping) != len(pairs) or len(set(mapping.values())) != len(pairs):
    raise ValueError("the TF1 mapping maps some weight or variable twice (a mapping bug)")
  expected = {by_id[id(v)] for p in parts if p in layers for v in layers[p].weights}
  unmapped = sorted(expected - set(mapping))
  if unmapped:
    raise ValueError(f"no TF1 name for {len(unmapped)} weight(s): {', '.join(unmapped[:5])}")
  return mapping
