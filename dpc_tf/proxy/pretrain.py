"""Making a backbone checkpoint on the way: a short pretraining with a linear head.

The paper's proxy caches a COCO-pretrained MobileNet-v2. Where no such checkpoint exists
(the synthetic config, or before the trainer exists) this trains the configured backbone
plus a 1x1-conv linear head at the output stride on the dataset itself for a few hundred
steps (the training core's loss, poly LR, momentum SGD and guard; DeepLab's augmentation),
then keeps the backbone only.
The linear head is thrown away: it is deliberately too weak to solve the task alone, so
the backbone has to learn features, and the proxy heads start from scratch on them.

Results are cached by every setting that changes them: `<root>/<backbone>-<hash>/` is a
backbone-only converted-weights folder (dpc_tf.checkpoints format) whose model_config.json
records the settings, the final loss and the time taken.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from dpc_tf import data
from dpc_tf.backbones import build_backbone
from dpc_tf.checkpoints import converted
from dpc_tf.data import metrics
from dpc_tf.layers import common
from dpc_tf.proxy.config import CacheConfig, PretrainConfig
from dpc_tf.training import guard, losses, modeling
from dpc_tf.training.optimizer import build_optimizer
from dpc_tf.training.schedule import PolyLearningRate


def pretrain_settings(cache: CacheConfig, pretrain: PretrainConfig) -> dict:
  """Every setting the pretrained weights depend on (the cache key)."""
  spec = data.get_spec(cache.dataset)
  return {"backbone": cache.backbone, "depth_multiplier": cache.depth_multiplier,
          "output_stride": cache.output_stride, "dataset": cache.dataset,
          "dataset_version": spec.version, "split": pretrain.split,
          "crop": list(pretrain.crop or spec.train_crop),
          "scales": list(cache.train_scales or spec.train_scales), "steps": pretrain.steps,
          "batch_size": pretrain.batch_size, "learning_rate": pretrain.learning_rate,
          "momentum": pretrain.momentum, "weight_decay": pretrain.weight_decay,
          "bn_momentum": pretrain.bn_momentum, "seed": pretrain.seed}


def checkpoint_dir(cache: CacheConfig, pretrain: PretrainConfig) -> str:
  settings = pretrain_settings(cache, pretrain)
  key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
  return os.path.join(pretrain.root(), f"{cache.backbone}-{key}")


def pretrained_checkpoint(cache: CacheConfig, pretrain: PretrainConfig) -> str:
  """The checkpoint folder for these settings, pretraining first if it does not exist."""
  directory = checkpoint_dir(cache, pretrain)
  if os.path.isfile(os.path.join(directory, converted.WEIGHTS_FILE)):
    logging.info("pretrained backbone: reusing %s", directory)
    return directory
  logging.info("pretrained backbone: none for these settings, pretraining into %s", directory)
  run_pretraining(pretrain_settings(cache, pretrain), directory, cache.data_dir,
                  cache.manual_dir)
  return directory


def run_pretraining(settings: dict, directory: str, data_dir=None, manual_dir=None) -> dict:
  """Trains backbone + linear head as `settings` say and saves the backbone to `directory`."""
  start = time.time()
  keras.utils.set_random_seed(settings["seed"])
  tf.config.experimental.enable_op_determinism()  # same settings, same weights (on one machine)
  spec = data.get_spec(settings["dataset"])
  backbone = build_backbone(settings["backbone"], settings["output_stride"],
                            depth_multiplier=settings["depth_multiplier"],
                            weight_decay=settings["weight_decay"])
  modeling.configure_batch_norm(backbone, momentum=settings["bn_momentum"])
  head = keras.layers.Conv2D(spec.num_classes, 1, name="linear_head",
                             kernel_regularizer=common.l2(settings["weight_decay"]))
  head.build((None, None, None, backbone.output["features"].shape[-1]))
  variables = backbone.trainable_variables + head.trainable_variables
  optimizer = build_optimizer(PolyLearningRate(settings["learning_rate"], settings["steps"]),
                              settings["momentum"], variables)
  stream = data.build_input_pipeline(
      settings["dataset"], settings["split"], settings["batch_size"],
      crop_size=tuple(settings["crop"]), is_training=True, data_dir=data_dir,
      manual_dir=manual_dir, scales=settings["scales"], seed=settings["seed"],
      deterministic=True)

  @tf.function
  def step(images, labels):
    with tf.GradientTape() as tape:
      logits = head(backbone(images, training=True)["features"])
      loss = losses.mean_cross_entropy(labels, logits)
      total = loss + losses.regularization_loss(backbone.losses + head.losses)
    optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
    return loss, metrics.count_bad_labels(labels, spec.num_classes)

  seen, last_log = [], time.time()
  for index, (images, labels) in enumerate(stream.take(settings["steps"])):
    loss, bad_labels = step(images, labels)
    seen.append(float(loss))
    guard.check_step(index + 1, seen[-1], num_classes=spec.num_classes,
                     bad_labels=float(bad_labels), where="backbone pretraining",
                     advice="nothing was saved; lower pretrain_backbone.learning_rate")
    if time.time() - last_log > 10 or index + 1 == settings["steps"]:
      last_log = time.time()
      logging.info("pretraining %s: step %d/%d, loss %.4f (mean of last 20 %.4f)",
                   settings["backbone"], index + 1, settings["steps"], seen[-1],
                   np.mean(seen[-20:]))
  source = {"pretrain": settings, "final_loss": float(np.mean(seen[-20:])),
            "initial_loss": seen[0], "seconds": time.time() - start}
  build_args = {"backbone": settings["backbone"], "depth_multiplier":
                settings["depth_multiplier"]}
  converted.save_backbone(backbone, directory, build_args, source)
  logging.info("pretrained backbone saved to %s (%.0fs, final loss %.4f)", directory,
               source["seconds"], source["final_loss"])
  return source
