"""The frozen backbone without a checkpoint: its refusal, and BN calibration when allowed.

Backbone checkpoints (a converted folder, e.g. a TF1 COCO/ImageNet MobileNet-v2 converted
with `python -m dpc_tf.convert_checkpoint --backbone_only` or one pretrain.py saved, or a
Keras `.weights.h5` of the backbone) load through dpc_tf.checkpoints.load_initial_weights,
as full training's init_weights do. With none, the proxy would rank cells on features of a
random network, which says little about the real task: that needs an explicit
allow_random_init and is logged loudly.
"""

from __future__ import annotations

import os
from typing import Optional

from absl import logging
import keras
import tensorflow as tf

from dpc_tf.checkpoints import converted
from dpc_tf.errors import DpcError
from dpc_tf.training.modeling import batch_norm_layers


class BackboneWeightsError(DpcError):
  """No usable backbone weights; the message says which setting to change."""


def checkpoint_source(checkpoint: str) -> Optional[dict]:
  """The "source" record of a converted folder (how it was made), if it has one."""
  if not os.path.isfile(os.path.join(checkpoint, converted.CONFIG_FILE)):
    return None
  return converted.read_model_config(checkpoint).get("source")


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
