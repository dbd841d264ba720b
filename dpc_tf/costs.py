"""Parameter and multiply-add counts of Keras models, split into named parts.

Multiply-adds count convolutions and dense layers only (the MobileNet / DPC paper
convention): conv k_h * k_w * C_in / groups * C_out per output pixel, depthwise k_h * k_w *
C_in * multiplier per output pixel. Batch norm, activations, pooling and resizing are
not counted. Output sizes come from tracing the model once at a fixed input shape, so
strides, dilations and padding are what the graph really does.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

_COUNTED = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


@dataclasses.dataclass
class Cost:
  trainable_params: int = 0
  non_trainable_params: int = 0
  madds: int = 0

  def __add__(self, other: "Cost") -> "Cost":
    return Cost(self.trainable_params + other.trainable_params,
                self.non_trainable_params + other.non_trainable_params,
                self.madds + other.madds)

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


def _count(weights) -> int:
  return int(sum(np.prod(w.shape) for w in weights))


def _leaves(layer: keras.layers.Layer) -> list:
  found = layer._flatten_layers(include_self=True, recursive=True)  # pylint: disable=protected-access
  return [l for l in found if isinstance(l, _COUNTED)]


def _layer_madds(layer, output_shape: Sequence[int]) -> int:
  kernel_size = int(np.prod(layer.kernel.shape))  # conv: kh*kw*Cin/groups*Cout; dense: in*out
  if isinstance(layer, keras.layers.Dense):
    positions = int(np.prod(output_shape[1:-1])) if len(output_shape) > 2 else 1
  else:
    positions = int(output_shape[1]) * int(output_shape[2])
  return kernel_size * positions


def trace_madds(model: keras.Model, input_shape: Sequence[int]) -> dict[int, int]:
  """Multiply-adds of every counted leaf layer (by id) for one example of `input_shape`."""
  leaves = _leaves(model)
  madds = {id(l): 0 for l in leaves}
  for layer in leaves:
    original = layer.call

    def recording_call(*args, _layer=layer, _original=original, **kwargs):
      out = _original(*args, **kwargs)
      madds[id(_layer)] += _layer_madds(_layer, tuple(out.shape))
      return out
    object.__setattr__(layer, "call", recording_call)
  try:
    spec = tf.TensorSpec((1,) + tuple(input_shape), tf.float32)
    tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
  finally:
    for layer in leaves:
      object.__delattr__(layer, "call")
  return madds


def layer_cost(layer: keras.layers.Layer, madds: Mapping[int, int]) -> Cost:
  return Cost(_count(layer.trainable_weights), _count(layer.non_trainable_weights),
              sum(madds.get(id(l), 0) for l in _leaves(layer)))


def conv_cost(layers: Iterable[keras.layers.Layer], madds: Mapping[int, int]) -> Cost:
  """Conv kernels only (no BN, no bias): the paper's Table 1 convention for branches."""
  cost = Cost()
  for layer in layers:
    for leaf in _leaves(layer):
      cost += Cost(_count([leaf.kernel]), 0, madds.get(id(leaf), 0))
  return cost


def model_costs(model: keras.Model, input_shape: Sequence[int],
                parts: Mapping[str, keras.layers.Layer],
                branches: Mapping[str, Sequence[keras.layers.Layer]] = None) -> dict:
  """{"part": {...}, ..., "total": {...}} with branch_params/branch_madds where given.

  Every weight of the model must belong to exactly one part, so the total is the sum.
  """
  madds = trace_madds(model, input_shape)
  report, total = {}, Cost()
  for name, layer in parts.items():
    cost = layer_cost(layer, madds)
    report[name] = cost.as_dict()
    if branches and name in branches:
      branch = conv_cost(branches[name], madds)
      report[name].update(branch_params=branch.trainable_params, branch_madds=branch.madds)
    total += cost
  model_total = Cost(_count(model.trainable_weights), _count(model.non_trainable_weights),
                     sum(madds.values()))
  if model_total != total:
    raise ValueError(f"parts {sorted(parts)} do not cover the model: parts sum to {total}, "
                     f"the model has {model_total}")
  report["total"] = total.as_dict()
  return report
