"""The converted-weights folder, and the one loader of starting weights (`load_initial_weights`:
full training's init_weights, the proxy's frozen backbone) and backbone saver.

A converted folder DIR holds:
  DIR/weights.h5        one float32 dataset per Keras weight, at its weight key
                        ("backbone/layer_1/conv/kernel", "head/branch0/depthwise/kernel",
                        "logits/bias", ...: see tf1_names.weight_keys), each with attribute
                        tf1_name; root attributes format and version.
  DIR/model_config.json {"format": ..., "version": 1, "build_args": build_deeplab kwargs
                        (backbone, head, cell, decoder_output_stride, num_classes,
                        depth_multiplier), "parts": parts stored, "source": {...}}
  DIR/mapping.json      {"weights": {key: TF1 name}, "skipped": {TF1 name: reason},
                        "unused": [TF1 names in the checkpoint the model has no use for]}
Keys, not Keras' own .weights.h5 layout, so that a part (e.g. the backbone, or the head for
a proxy model) loads into any model that has that part, and logits can be left out when
num_classes differs. Output stride, crop size and multi_grid do not change any weight:
build with whatever the run needs.
"""

from __future__ import annotations

import os
import shutil
from typing import Iterable, Optional

import h5py
import keras
import numpy as np

from dpc_tf.checkpoints.tf1_names import PARTS, weight_keys
from dpc_tf.errors import DpcError
from dpc_tf.utils import files
from dpc_tf.utils.files import read_json, write_json_atomic

WEIGHTS_FILE = "weights.h5"
CONFIG_FILE = "model_config.json"
MAPPING_FILE = "mapping.json"
FORMAT = "dpc_tf-converted-weights"
VERSION = 1


class ConvertedWeightsError(DpcError):
  """A converted folder does not fit the model; the message names the weights."""


def _part(key: str) -> str:
  return key.split("/", 1)[0]


def write_weights(path: str, arrays: dict[str, np.ndarray], tf1_names: dict[str, str]) -> None:
  """Writes weights.h5 (not atomically by itself: the converter writes a whole temporary
  folder and renames it)."""
  with h5py.File(path, "w") as f:
    f.attrs["format"] = FORMAT
    f.attrs["version"] = VERSION
    for key, value in arrays.items():
      dataset = f.create_dataset(key, data=np.asarray(value, np.float32))
      dataset.attrs["tf1_name"] = tf1_names.get(key, "")


def read_weights(directory: str) -> dict[str, np.ndarray]:
  path = os.path.join(directory, WEIGHTS_FILE)
  if not os.path.isfile(path):
    raise ConvertedWeightsError(f"no {WEIGHTS_FILE} in {directory}: not a converted-weights "
                                f"folder (see python -m dpc_tf.convert_checkpoint)")
  arrays = {}
  with h5py.File(path, "r") as f:
    if f.attrs.get("format") != FORMAT or int(f.attrs.get("version", -1)) != VERSION:
      raise ConvertedWeightsError(f"{path} is not a version-{VERSION} {FORMAT} file")
    f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()])
                 if isinstance(obj, h5py.Dataset) else None)
  return arrays


def read_model_config(directory: str) -> dict:
  """The model_config.json of a converted folder: `build_deeplab(**cfg["build_args"])`
  rebuilds the converted model (add crop_size / output_stride as the run needs)."""
  config = read_json(os.path.join(directory, CONFIG_FILE), "converted checkpoint config")
  if not isinstance(config, dict):
    raise DpcError(f"{os.path.join(directory, CONFIG_FILE)}: expected a JSON object")
  return config


def _names(keys: Iterable[str], limit: int = 5) -> str:
  keys = sorted(keys)
  more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
  return ", ".join(keys[:limit]) + more


def load_converted_weights(model: keras.Model, directory: str, skip_logits: bool = False,
                           parts: Optional[Iterable[str]] = None) -> list[str]:
  """Loads a converted folder into `model` part by part; returns the parts loaded.

  parts: which of backbone/head/decoder/logits to load; default every part the folder
  holds (a --backbone_only conversion holds only "backbone", leaving the heads fresh).
  skip_logits: leave the logits fresh (a model with a different num_classes). A part is
  loaded only whole: its weights in the model and in the folder must match key for key
  and shape for shape, or nothing is loaded and ConvertedWeightsError names the weights.
  """
  arrays = read_weights(directory)
  stored = sorted({_part(k) for k in arrays})
  if parts is None:
    wanted = [p for p in stored if not (skip_logits and p == "logits")]
  else:
    wanted = [p for p in parts if not (skip_logits and p == "logits")]
    unknown = [p for p in wanted if p not in PARTS]
    if unknown:
      raise ConvertedWeightsError(f"unknown part(s) {', '.join(unknown)}; parts are "
                                  f"{', '.join(PARTS)}")
    absent = [p for p in wanted if p not in stored]
    if absent:
      raise ConvertedWeightsError(f"{directory} holds no {', '.join(absent)} weights "
                                  f"(it holds {', '.join(stored)})")
  model_keys = weight_keys(model)
  assignments = []
  for part in wanted:
    mine = {k for k in model_keys if _part(k) == part}
    theirs = {k for k in arrays if _part(k) == part}
    if not mine:
      raise ConvertedWeightsError(f"model {model.name} has no '{part}' part to load "
                                  f"{directory} into; pass parts=[...] to choose")
    if mine != theirs:
      raise ConvertedWeightsError(
          f"'{part}' weights differ between model {model.name} and {directory}: only in the "
          f"model: {_names(mine - theirs) or '-'}; only converted: {_names(theirs - mine) or '-'}")
    for key in sorted(mine):
      variable, value = model_keys[key], arrays[key]
      if tuple(variable.shape) != value.shape:
        hint = " (pass skip_logits=True for another num_classes)" if part == "logits" else ""
        raise ConvertedWeightsError(f"shape mismatch for {key}: model {tuple(variable.shape)} "
                                    f"vs converted {value.shape}{hint}")
      assignments.append((variable, value))
  for variable, value in assignments:
    variable.assign(value.astype(variable.dtype))
  return wanted


def load_initial_weights(model: keras.Model, path: str, parts: Optional[Iterable[str]] = None,
                         skip_logits: bool = False) -> list[str]:
  """Loads starting weights into `model` (top-level parts; a bare backbone via `as_part`).

  path: a converted folder (`load_converted_weights` with parts / skip_logits: released
  TF1 checkpoints, a --backbone_only conversion, a folder `save_backbone` wrote) or a Keras
  `.weights.h5` file of the backbone model alone. Returns the parts loaded; any failure is
  one ConvertedWeightsError naming the path.
  """
  try:
    if path.endswith(".weights.h5") and os.path.isfile(path):
      try:
        model.get_layer("backbone").load_weights(path)
      except ValueError as e:  # Keras' report of a file made for another backbone
        raise ConvertedWeightsError(str(e)) from None
      return ["backbone"]
    return load_converted_weights(model, path, skip_logits, parts)
  except (ConvertedWeightsError, OSError) as e:
    raise ConvertedWeightsError(f"cannot initialise from {path}: "
                                f"{' '.join(str(e).split())}") from None


def as_part(backbone: keras.Model) -> keras.Model:
  """A model whose one top-level layer is the backbone, so weight keys read "backbone/...".

  Converted folders key weights by top-level part; a bare backbone's own top-level layers
  are its blocks.
  """
  images = keras.Input(backbone.input_shape[1:], name="images")
  return keras.Model(images, backbone(images), name="backbone_part")


def save_backbone(backbone: keras.Model, directory: str, build_args: dict,
                  source: dict) -> None:
  """Writes `backbone` as a backbone-only converted folder, atomically (a whole temporary
  folder renamed into place): the same format released checkpoints convert to."""
  keys = weight_keys(as_part(backbone))
  arrays = {key: keras.ops.convert_to_numpy(variable) for key, variable in keys.items()}
  parent = os.path.dirname(os.path.abspath(directory))
  tmp = files.make_temp_dir(parent, f".{os.path.basename(directory)}.tmp-")
  try:
    write_weights(os.path.join(tmp, WEIGHTS_FILE), arrays, {})
    write_json_atomic(os.path.join(tmp, CONFIG_FILE), {
        "format": FORMAT, "version": VERSION, "build_args": build_args,
        "parts": ["backbone"], "source": source})
    if os.path.isdir(directory):  # made meanwhile by another process with the same settings
      shutil.rmtree(tmp)
      return
    os.rename(tmp, directory)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
