"""Where the frozen backbone's weights come from, and the refusal of a random one.

A backbone checkpoint is either a converted-weights folder (dpc_tf.checkpoints: its
"backbone" part is loaded, e.g. a TF1 COCO/ImageNet MobileNet-v2 converted with
`python -m dpc_tf.convert_checkpoint --backbone_only`, or a folder `save_backbone` wrote)
or a Keras `.weights.h5` file of the backbone model. With none, the proxy would rank cells
on features of a random network, which says little about the real task: that needs an
explicit allow_random_init and is logged loudly.
"""

from __future__ import annotations

import os
import shutil
from typing import Optional

from absl import logging
import keras
import tensorflow as tf

from dpc_tf.checkpoints import converted
from dpc_tf.checkpoints.tf1_names import weight_keys
from dpc_tf.errors import DpcError
from dpc_tf.utils import files
from dpc_tf.utils.files import write_json_atomic


class BackboneWeightsError(DpcError):
  """No usable backbone weights; the message says which setting to change."""


def as_part(backbone: keras.Model) -> keras.Model:
  """A model whose one top-level layer is the backbone, so weight keys read "backbone/...".

  Converted folders key weights by top-level part; a bare backbone's own top-level layers
  are its blocks.
  """
  images = keras.Input(backbone.input_shape[1:], name="images")
  return keras.Model(images, backbone(images), name="backbone_part")


def load_backbone_weights(backbone: keras.Model, checkpoint: str) -> None:
  """Loads `checkpoint` (converted folder or .weights.h5) into `backbone`; errors are one line."""
  if os.path.isdir(checkpoint):
    try:
      converted.load_converted_weights(as_part(backbone), checkpoint, parts=["backbone"])
    except converted.ConvertedWeightsError as e:
      raise BackboneWeightsError(f"backbone checkpoint {checkpoint}: {e}") from None
  elif checkpoint.endswith(".weights.h5") and os.path.isfile(checkpoint):
    try:
      backbone.load_weights(checkpoint)
    except ValueError as e:
      raise BackboneWeightsError(f"backbone checkpoint {checkpoint}: "
                                 f"{str(e).splitlines()[0]}") from None
  else:
    raise BackboneWeightsError(
        f"backbone checkpoint {checkpoint}: not a converted-weights folder (weights.h5 + "
        f"model_config.json) nor a Keras .weights.h5 file")


def save_backbone(backbone: keras.Model, directory: str, build_args: dict,
                  source: dict) -> None:
  """Writes `backbone` as a backbone-only converted-weights folder, atomically (a whole
  temporary folder renamed into place): the same format released checkpoints convert to."""
  keys = weight_keys(as_part(backbone))
  arrays = {key: keras.ops.convert_to_numpy(variable) for key, variable in keys.items()}
  parent = os.path.dirname(os.path.abspath(directory))
  tmp = files.make_temp_dir(parent, f".{os.path.basename(directory)}.tmp-")
  try:
    converted.write_weights(os.path.join(tmp, converted.WEIGHTS_FILE), arrays, {})
    write_json_atomic(os.path.join(tmp, converted.CONFIG_FILE), {
        "format": converted.FORMAT, "version": converted.VERSION, "build_args": build_args,
        "parts": ["backbone"], "source": source})
    if os.path.isdir(directory):  # made meanwhile by another process with the same settings
      shutil.rmtree(tmp)
      return
    os.rename(tmp, directory)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def checkpoint_source(checkpoint: str) -> Optional[dict]:
  """The "source" record of a converted folder (how it was made), if it has one."""
  path = os.path.join(checkpoint, converted.CONFIG_FILE)
  if not os.path.isfile(path):
    return None
  config = converted.read_model_config(checkpoint)
  return config.get("source")


def refuse_or_warn_random(allow_random_init: bool, where: str) -> None:
  """Refuses a random backbone unless explicitly allowed; warns loudly when allowed."""
  if not allow_random_init:
    raise BackboneWeightsError(
        f"{where}: no backbone checkpoint configured (feature_cache.checkpoint). Features of "
        f"a random backbone make a meaningless proxy: set feature_cache.checkpoint to a "
        f"converted folder or .weights.h5, or feature_cache.pretrain = True to make one, or "
        f"feature_cache.allow_random_init = True to cache random features anyway")
  logging.warning("=" * 78)
  logging.warning("%s: NO BACKBONE CHECKPOINT: caching features of a RANDOMLY INITIALISED "
                  "backbone (allow_random_init). Proxy scores on them are nearly meaningless.",
                  where)
  logging.warning("=" * 78)


def batch_norm_layers(model: keras.Model) -> list:
  # pylint: disable-next=protected-access
  found = model._flatten_layers(include_self=False, recursive=True)
  return [l for l in found if isinstance(l, keras.layers.BatchNormalization)]


def calibrate_batch_norm(backbone: keras.Model, images: tf.data.Dataset, batches: int = 20,
                         momentum: float = 0.8) -> int:
  """Sets the BN moving statistics of a *random* backbone from `batches` batches of images.

  A freshly initialised network run in inference mode normalises with mean 0 / variance 1,
  so its activations shrink layer after layer (MobileNet-v2's features end near 1e-10, zero
  in float16): the random baseline would be a constant. With calibrated statistics it is
  what "random features" should mean. Weights are untouched. Returns the batches used.
  """
  norms = batch_norm_layers(backbone)
  saved = [l.momentum for l in norms]
  for layer in norms:
    layer.momentum = momentum
  step = tf.function(lambda x: backbone(x, training=True))
  used = 0
  try:
    for batch in images.take(batches):
      step(tf.cast(batch, tf.float32))
      used += 1
  finally:
    for layer, value in zip(norms, saved):
      layer.momentum = value
  return used
