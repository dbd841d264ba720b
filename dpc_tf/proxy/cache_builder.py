"""The caching pass as configured: backbone + checkpoint + dataset -> a feature cache.

Design: training augmentation and caching. The backbone is frozen, so augmentation has to
happen *before* it and every augmented view must be cached: a flip or crop applied to
cached features is not the features of a flipped or cropped image (strided convs are not
shift- or flip-equivariant). The "train" role therefore holds `train_views` (K) views per
training image, view k drawn by DeepLab's training preprocessing (random scale, pad, random
crop, flip) with seed `seed + k`; the proxy samples batches from all N x K. K = 1 is the
paper's setting (features of the training set cached once) and costs the least disk
(Cityscapes at crop 769: 1.5 MB of float16 features + 0.6 MB of labels per view); larger K
trades disk and one backbone pass per view for less overfitting of long proxy runs. The
"eval" role holds the validation split, unaugmented, padded to the eval crop (a single
scale, as the paper scores the proxy).

Training labels are stored at crop resolution by default: the release upsamples logits to
the label size before the loss, so that is the loss the proxy must train with. Coarse
labels at the feature resolution ("features", the release's upsample_logits=False) make
the proxy step several times cheaper (the upsampled loss dominates it) but drop small
objects from the loss. Evaluation labels are always stored at full resolution: the score
is mIOU at the label resolution whatever the training loss.

Identity of a cache (compared before any work is done): backbone, depth multiplier, output
stride, the checkpoint's fingerprint (hash of the weight values actually loaded), whether
it is random, dataset, classes. Per role: split, crop, views, scales, seed, dtype, label
resolution, shard size.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

from absl import logging
import keras
import tensorflow as tf

from dpc_tf import checkpoints, data
from dpc_tf.backbones import build_backbone
from dpc_tf.errors import DpcError
from dpc_tf.proxy import backbone_weights
from dpc_tf.proxy.cache import ROLES, Manifest
from dpc_tf.proxy.caching import backbone_fingerprint, cache_role, full_settings
from dpc_tf.utils.sizes import size_pair
from dpc_tf.proxy.config import CacheConfig, PretrainConfig


def frozen_backbone(config: CacheConfig, pretrain: PretrainConfig,
                    where: str) -> tuple[keras.Model, dict]:
  """The backbone with its weights loaded, and a record of where the weights came from."""
  checkpoint = config.checkpoint
  if checkpoint is None and config.pretrain:
    from dpc_tf.proxy import pretrain as pretrain_lib  # pylint: disable=import-outside-toplevel
    checkpoint = pretrain_lib.pretrained_checkpoint(config, pretrain)
  if checkpoint is None:
    backbone_weights.refuse_or_warn_random(config.allow_random_init, where)
    keras.utils.set_random_seed(config.seed)  # the same random backbone every time
  backbone = build_backbone(config.backbone, config.output_stride,
                            depth_multiplier=config.depth_multiplier)
  if checkpoint is None:
    return backbone, {"checkpoint": None, "random_init": True}  # BN calibrated by the caller
  checkpoints.load_initial_weights(checkpoints.as_part(backbone), checkpoint, ["backbone"])
  return backbone, {"checkpoint": checkpoint, "random_init": False,
                    "checkpoint_source": backbone_weights.checkpoint_source(checkpoint)}


def _crop(value, default) -> list[int]:
  return list(size_pair(default if value is None else value, "feature_cache crop"))


def role_settings(config: CacheConfig, role: str) -> dict:
  spec = data.get_spec(config.dataset)
  if role == "train":
    return {"split": config.train_split, "crop": _crop(config.train_crop, spec.train_crop),
            "views": config.train_views,
            "scales": list(config.train_scales or spec.train_scales), "seed": config.seed,
            "augment": True}
  return {"split": config.eval_split, "crop": _crop(config.eval_crop, spec.eval_crop),
          "augment": False}


def role_examples(config: CacheConfig, settings: dict) -> tuple[tf.data.Dataset, Optional[int]]:
  """The deterministic, finite stream of (image, label) examples of one role."""
  count = data.open_source(config.dataset, settings["split"], config.data_dir,
                           config.manual_dir).num_examples
  common = dict(name=config.dataset, split=settings["split"], batch_size=config.batch_size,
                crop_size=tuple(settings["crop"]), data_dir=config.data_dir,
                manual_dir=config.manual_dir, deterministic=True, repeat=False,
                drop_remainder=False)
  if not settings["augment"]:
    return data.build_input_pipeline(is_training=False, **common).unbatch(), count
  views = None
  for k in range(settings["views"]):
    view = data.build_input_pipeline(is_training=True, scales=settings["scales"],
                                     seed=settings["seed"] + k, **common).unbatch()
    views = view if views is None else views.concatenate(view)
  return views, None if count is None else count * settings["views"]


def _label_resolution(config: CacheConfig, role: str) -> str:
  """label_resolution applies to training labels; the score is always at full resolution."""
  return config.label_resolution if role == "train" else "crop"


def make_cache(cache_dir: str, config: CacheConfig, pretrain: PretrainConfig,
               roles: Sequence[str] = ROLES) -> dict:
  """Caches `roles` into `cache_dir` (resuming, reusing or refusing as the manifest says).

  Returns the manifest. Settings are checked against an existing manifest before the
  backbone runs, except the checkpoint fingerprint, which needs the weights loaded.
  """
  unknown = [r for r in roles if r not in ROLES]
  if unknown:
    raise DpcError(f"unknown role(s) {', '.join(unknown)}; roles are {', '.join(ROLES)}")
  if config.train_views < 1:
    raise DpcError(f"feature_cache.train_views must be >= 1, got {config.train_views}")
  spec = data.get_spec(config.dataset)
  identity = {"backbone": config.backbone, "depth_multiplier": config.depth_multiplier,
              "output_stride": config.output_stride, "dataset": config.dataset,
              "dataset_version": spec.version, "num_classes": spec.num_classes, "ignore_label": spec.ignore_label}
  settings = {role: role_settings(config, role) for role in roles}
  existing = Manifest.load(cache_dir)
  if existing is not None:  # refuse before spending minutes on a backbone or pretraining
    existing.check_identity(identity, ignore=("checkpoint_fingerprint", "random_init"))
    for role in roles:
      existing.check_role(role, full_settings(settings[role], config.dtype,
                                              _label_resolution(config, role),
                                              config.shard_size))
  backbone, source = frozen_backbone(config, pretrain, f"cache {cache_dir}")
  if source["random_init"]:
    train_images = role_examples(config, role_settings(config, "train"))[0].map(
        lambda image, label: image).batch(config.batch_size)
    source["bn_calibration_batches"] = backbone_weights.calibrate_batch_norm(
        backbone, train_images)
  identity.update(checkpoint_fingerprint=backbone_fingerprint(backbone),
                  random_init=source["random_init"])
  for role in roles:
    examples, count = role_examples(config, settings[role])
    cache_role(cache_dir, identity, role, settings[role], backbone, examples,
               batch_size=config.batch_size, shard_size=config.shard_size, dtype=config.dtype,
               label_resolution=_label_resolution(config, role), num_examples=count,
               extra={"checkpoint": source["checkpoint"],
                      "checkpoint_source": source.get("checkpoint_source"),
                      "config": dataclasses.asdict(config)})
  manifest = Manifest.load(cache_dir)
  logging.info("cache %s ready: %s", cache_dir, ", ".join(
      f"{r} {manifest.role(r)['count']} examples" for r in roles))
  return manifest.data
