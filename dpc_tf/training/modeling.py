"""Building the DeepLab model a run trains, evaluates or exports, and initialising it.

The model's architecture comes from the gin bindings of `deeplab_model` (dpc_tf.models);
the number of classes and the crop (which fixes pyramid-pooling kernels) come from the
dataset and the training config, and a per-trial cell can be forced explicitly. Training,
evaluation and export all call `build_model` with the same training config, so they build
the same model.
"""

from __future__ import annotations

import inspect
from typing import Optional, Sequence

import keras
from absl import logging

from dpc_tf import checkpoints, models
from dpc_tf.errors import DpcError, one_line


def build_model(num_classes: int, crop_size: Sequence[int], cell=None,
                overrides: Optional[dict] = None) -> keras.Model:
  """`deeplab_model(num_classes, crop_size, [cell], **overrides)` with gin bindings applied.

  cell: a search_space.Cell, its JSON or text, or None for the configured (or released)
  cell. Explicit arguments win over gin bindings.
  """
  kwargs = {"num_classes": int(num_classes), "crop_size": tuple(crop_size)}
  if cell is not None:
    kwargs["cell"] = cell
  kwargs.update(overrides or {})
  unknown = sorted(set(kwargs) - set(inspect.signature(models.build_deeplab).parameters))
  if unknown:
    raise DpcError(f"cannot build the model: no setting(s) {', '.join(unknown)} (see "
                   "dpc_tf.models.build_deeplab)")
  try:
    return models.deeplab_model(**kwargs)
  except DpcError as e:  # a bad value: say what was being built
    raise DpcError(f"cannot build the model: {one_line(e)}") from None


def batch_norm_layers(model: keras.Model) -> list:
  """Every BatchNormalization layer of `model`, nested ones included."""
  # pylint: disable-next=protected-access
  found = model._flatten_layers(include_self=False, recursive=True)
  return [l for l in found if isinstance(l, keras.layers.BatchNormalization)]


def configure_batch_norm(model: keras.Model, trainable: bool = True,
                         momentum: Optional[float] = None) -> int:
  """Freezes (trainable=False: inference-mode BN) or re-momentums every BN layer of model;
  returns how many there are. Call before the optimizer collects trainable variables."""
  layers = batch_norm_layers(model)
  for layer in layers:
    if not trainable:
      layer.trainable = False
    if momentum is not None:
      layer.momentum = float(momentum)
  return len(layers)


def initialize_from_converted(model: keras.Model, path: str, initialize_last_layer: bool,
                              parts: Optional[Sequence[str]] = None) -> list[str]:
  """Loads initial weights (checkpoints.load_initial_weights: a converted folder, every part
  it holds or `parts`, logits only with initialize_last_layer; or a backbone .weights.h5);
  logs and returns the parts loaded."""
  loaded = checkpoints.load_initial_weights(
      model, path, None if parts is None else list(parts), skip_logits=not initialize_last_layer)
  logging.info("Initialised %s from %s%s", ", ".join(loaded), path,
               "" if initialize_last_layer else " (logits left fresh)")
  return loaded
