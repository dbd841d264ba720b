"""Building the DeepLab model a run trains, evaluates or exports, and initialising it.

The model's architecture comes from the gin bindings of `deeplab_model` (dpc_tf.models);
the number of classes and the crop (which fixes pyramid-pooling kernels) come from the
dataset and the training config, and a per-trial cell can be forced explicitly. Training,
evaluation and export all call `build_model` with the same training config, so they build
the same model.
"""

from __future__ import annotations

import inspect
import os
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


def configure_batch_norm(model: keras.Model, trainable: bool = True,
                         momentum: Optional[float] = None) -> int:
  """Freezes (trainable=False: inference-mode BN) or re-momentums every BN layer of model;
  returns how many there are. Call before the optimizer collects trainable variables."""
  layers = [layer for layer in model._flatten_layers(include_self=False, recursive=True)  # pylint: disable=protected-access
            if isinstance(layer, keras.layers.BatchNormalization)]
  for layer in layers:
    if not trainable:
      layer.trainable = False
    if momentum is not None:
      layer.momentum = float(momentum)
  return len(layers)


def initialize_from_converted(model: keras.Model, path: str, initialize_last_layer: bool,
                              parts: Optional[Sequence[str]] = None) -> list[str]:
  """Loads initial weights; logs and returns the parts loaded.

  path: a converted-weights folder (dpc_tf.checkpoints: released TF1 checkpoints, or a
  backbone the proxy pretrained and saved), every part it holds (or `parts`) loaded, the
  logits only with initialize_last_layer; or a Keras `.weights.h5` file of the backbone
  model alone (what dpc_tf.proxy may also hand over).
  """
  try:
    if path.endswith(".weights.h5") and os.path.isfile(path):
      model.get_layer("backbone").load_weights(path)
      loaded = ["backbone"]
    else:
      loaded = checkpoints.load_converted_weights(
          model, path, skip_logits=not initialize_last_layer,
          parts=None if parts is None else list(parts))
  except (checkpoints.ConvertedWeightsError, OSError, ValueError) as e:
    message = " ".join(str(e).split())
    raise DpcError(f"cannot initialise from {path}: {message}") from None
  logging.info("Initialised %s from %s%s", ", ".join(loaded), path,
               "" if initialize_last_layer else " (logits left fresh)")
  return loaded
