"""Modified aligned Xception-41/65/71 (DeepLab's), declared as a block table.

Every variant is the same root (3x3/32 stride 2, 3x3/64) followed by a list of blocks, each
`units` x (three separable convs + skip). The table below is the whole architecture; the
builder, the output-stride rule and the TF1 checkpoint names are all derived from it, so a
variant is one table entry and the checkpoint mapping cannot drift from the model.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Optional, Sequence

import keras

from dpc_tf.backbones import atrous
from dpc_tf.backbones.blocks import ConvBN, XceptionSeparableConv
from dpc_tf.layers import common

SKIP_TYPES = ("conv", "sum", "none")


@dataclasses.dataclass(frozen=True)
class Block:
  """One row of the table: `units` identical units of three separable convs + a skip.

  skip: "conv" (1x1 conv + BN to depths[-1] at the unit's stride, on the raw unit input),
  "sum" (identity) or "none". The unit's stride applies to its third conv only.
  activation_inside: exit block 2's separable convs put ReLU between and after their convs
  instead of before (pre-activation). multi_grid: the block's three convs take the unit
  rates multiplied by multi_grid (the last block only).
  """
  scope: str
  depths: tuple[int, int, int]
  skip: str
  units: int
  stride: int
  activation_inside: bool = False
  multi_grid: bool = False

  def __post_init__(self):
    if self.skip not in SKIP_TYPES:
      raise common.LayerArgumentError(f"block {self.scope}: unknown skip {self.skip!r}; choose from "
                       f"{', '.join(SKIP_TYPES)}")


def _entry(index: int, depth: int, stride: int) -> Block:
  return Block(f"entry_flow/block{index}", (depth,) * 3, "conv", 1, stride)


def _middle(units: int) -> Block:
  return Block("middle_flow/block1", (728,) * 3, "sum", units, 1)


_EXIT = (Block("exit_flow/block1", (728, 1024, 1024), "conv", 1, 2),
         Block("exit_flow/block2", (1536, 1536, 2048), "none", 1, 1,
               activation_inside=True, multi_grid=True))

BLOCKS: dict[str, tuple[Block, ...]] = {
    "xception_41": (_entry(1, 128, 2), _entry(2, 256, 2), _entry(3, 728, 2), _middle(8)) + _EXIT,
    "xception_65": (_entry(1, 128, 2), _entry(2, 256, 2), _entry(3, 728, 2),
                    _middle(16)) + _EXIT,
    "xception_71": (_entry(1, 128, 2), _entry(2, 256, 1), _entry(3, 256, 2), _entry(4, 728, 1),
                    _entry(5, 728, 2), _middle(16)) + _EXIT,
}

# The stride-4 decoder tap: (block scope, separable conv index), unit 1; REFERENCE.md 4.
DECODER_TAP = {"xception_41": ("entry_flow/block2", 2), "xception_65": ("entry_flow/block2", 2),
               "xception_71": ("entry_flow/block3", 2)}
ROOT = (("entry_flow/conv1_1", 32, 2), ("entry_flow/conv1_2", 64, 1))  # scope, depth, stride
FEATURE_CHANNELS = 2048


@dataclasses.dataclass(frozen=True)
class Unit:
  """One unit of the table with its Keras layer prefix and its TF1 variable scope."""
  block: Block
  index: int  # 1-based, as in the TF1 scope unit_{index}

  @property
  def prefix(self) -> str:
    return f"{self.block.scope.replace('/', '_')}_unit_{self.index}"

  def tf1_scope(self, variant: str) -> str:
    return f"{variant}/{self.block.scope}/unit_{self.index}/xception_module"


def units(variant: str) -> Iterator[Unit]:
  for block in BLOCKS[variant]:
    for index in range(1, block.units + 1):
      yield Unit(block, index)


def root_layer_name(scope: str) -> str:
  return scope.replace("/", "_")


def separable_layer_name(unit: Unit, k: int) -> str:
  return f"{unit.prefix}_separable_conv{k}"


def shortcut_layer_name(unit: Unit) -> str:
  return f"{unit.prefix}_shortcut"


def build_xception(variant: str, output_stride: int = 16, input_shape=(None, None, 3),
                   multi_grid: Optional[Sequence[int]] = None,
                   weight_decay: float = common.WEIGHT_DECAY, sync_bn: bool = False,
                   name: str = "backbone") -> keras.Model:
  """images in 0..255 -> {"features": stride-`output_stride` 2048-channel map, "decoder_tap":
  the stride-4 256-channel map (post-BN, pre-ReLU)}."""
  if variant not in BLOCKS:
    raise common.LayerArgumentError(f"unknown Xception variant {variant!r}; choose from {', '.join(BLOCKS)}")
  atrous.check_output_stride(output_stride)
  multi_grid = (1, 1, 1) if multi_grid is None else tuple(int(m) for m in multi_grid)
  if len(multi_grid) != 3 or min(multi_grid) < 1:
    raise common.LayerArgumentError(f"multi_grid must be three positive ints (one per separable conv of "
                     f"the last block), got {multi_grid}")
  norm = dict(weight_decay=weight_decay, sync_bn=sync_bn)
  all_units = list(units(variant))
  schedule = atrous.atrous_schedule([u.block.stride for u in all_units], output_stride,
                                    initial_stride=ROOT[0][2])
  tap_scope, tap_conv = DECODER_TAP[variant]

  images = keras.Input(input_shape, name="images")
  # Inputs are 0..255 images; the release scales them to [-1, 1] inside the model.
  x = keras.layers.Rescaling(2.0 / 255.0, offset=-1.0, name="preprocess")(images)
  for scope, depth, stride in ROOT:
    x = ConvBN(depth, 3, strides=stride, activation="relu", explicit_padding=True,
               name=root_layer_name(scope), **norm)(x)
  tap = None
  for unit, (stride, rate) in zip(all_units, schedule):
    block = unit.block
    rates = [rate * m for m in multi_grid] if block.multi_grid else [rate] * 3
    residual = x
    for k in range(1, 4):
      residual = XceptionSeparableConv(
          block.depths[k - 1], strides=stride if k == 3 else 1, rate=rates[k - 1],
          activation_inside=block.activation_inside, name=separable_layer_name(unit, k),
          **norm)(residual)
      if (block.scope, unit.index, k) == (tap_scope, 1, tap_conv):
        tap = residual
    if block.skip == "conv":
      shortcut = ConvBN(block.depths[-1], 1, strides=stride, name=shortcut_layer_name(unit),
                        **norm)(x)
      x = keras.layers.Add(name=f"{unit.prefix}_add")([residual, shortcut])
    elif block.skip == "sum":
      x = keras.layers.Add(name=f"{unit.prefix}_add")([residual, x])
    else:
      x = residual
  model = keras.Model(images, {"features": x, "decoder_tap": tap}, name=name)
  model.feature_channels = FEATURE_CHANNELS
  return model
