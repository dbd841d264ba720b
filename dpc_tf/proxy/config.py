"""Settings of the proxy task and their gin names.

Three frozen dataclasses, each registered with gin as an external configurable, so that
`feature_cache.backbone = "mobilenet_v2"` in a gin file sets the field, while direct
constructor calls (tests, worker processes) never see global bindings:

  feature_cache      CacheConfig      what `python -m dpc_tf.cache_features` caches
  pretrain_backbone  PretrainConfig   how a backbone checkpoint is made on the way
  proxy_trial        TrialConfig      how `run_proxy_trial` trains and scores (trial.py),
                                      in `python -m dpc_tf.proxy` and in the search alike

`configured()` returns the three as bound by the parsed gin files.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

import gin

from dpc_tf.proxy.trial import TrialConfig
from dpc_tf.utils import typecheck


def _default_pretrain_root() -> str:
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "dpc_tf", "pretrained_backbones")


@dataclasses.dataclass(frozen=True)
class CacheConfig:
  """What the caching pass computes. Every field that changes the cached values is part of
  the cache's identity or of a role's settings, and a mismatch refuses the cache.

  checkpoint: backbone weights, a converted-weights folder (dpc_tf.checkpoints; its
    "backbone" part is loaded) or a Keras `.weights.h5` file of the backbone model.
  pretrain: make the checkpoint with `pretrain_backbone` settings (cached by them) when
    `checkpoint` is unset.
  allow_random_init: with neither, cache features of a randomly initialised backbone (a
    meaningless proxy; refused unless set).
  train_views: augmented views (DeepLab's random scale, crop and flip, each with its own
    seed) cached per training image; the proxy samples from all of them.
  label_resolution: training labels. "crop" stores them at the crop and the loss upsamples
    logits to them (the release's loss); "features" stores nearest-downsampled labels
    (a several times cheaper step, a coarser loss). Evaluation labels are always full size.
  """
  backbone: str = "mobilenet_v2"
  depth_multiplier: float = 1.0
  output_stride: int = 16
  checkpoint: Optional[str] = None
  pretrain: bool = False
  allow_random_init: bool = False
  dataset: str = "cityscapes"
  data_dir: Optional[str] = None
  manual_dir: Optional[str] = None
  train_split: str = "train"
  eval_split: str = "validation"
  train_crop: Optional[Sequence[int]] = None      # None: the dataset spec's train_crop
  eval_crop: Optional[Sequence[int]] = None       # None: the dataset spec's eval_crop
  train_views: int = 1
  train_scales: Optional[Sequence[float]] = None  # None: the dataset spec's train_scales
  label_resolution: str = "crop"
  dtype: str = "float16"
  shard_size: int = 64
  batch_size: int = 8
  seed: int = 0

  def __post_init__(self):  # a wrong type is one line naming the binding
    typecheck.check_fields("feature_cache", self, skip=("train_crop", "eval_crop"))


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
  """A short pretraining of the backbone with a linear (1x1 conv) head on the dataset.

  A random backbone gives features the proxy can barely use; this makes a usable one when
  no trained checkpoint exists (the synthetic config). The result is stored under
  `output_root/<backbone>-<hash of every setting>` and reused while the settings match.
  bn_momentum replaces the backbone's 0.9997 during pretraining, so that its moving
  statistics (what the frozen backbone uses when caching) converge in a short run.
  """
  steps: int = 1000
  batch_size: int = 8
  learning_rate: float = 0.02
  momentum: float = 0.9
  weight_decay: float = 4e-5
  bn_momentum: float = 0.99
  crop: Optional[Sequence[int]] = None    # None: the dataset spec's train_crop
  split: str = "train"
  seed: int = 0
  output_root: Optional[str] = None       # None: $XDG_CACHE_HOME/dpc_tf/pretrained_backbones

  def __post_init__(self):
    typecheck.check_fields("pretrain_backbone", self, skip=("crop",))

  def root(self) -> str:
    return self.output_root or _default_pretrain_root()


MODULES = ("dpc_tf.proxy.config",)
"""The modules whose configurables proxy configs bind (registered before parsing)."""

feature_cache = gin.external_configurable(CacheConfig, "feature_cache", module="dpc_tf.proxy")
pretrain_backbone = gin.external_configurable(PretrainConfig, "pretrain_backbone",
                                              module="dpc_tf.proxy")
proxy_trial = gin.external_configurable(TrialConfig, "proxy_trial", module="dpc_tf.proxy")


def configured() -> tuple[CacheConfig, PretrainConfig, TrialConfig]:
  """The three configs as the parsed gin bindings make them."""
  trial = proxy_trial()
  typecheck.check_fields("proxy_trial", trial)
  return feature_cache(), pretrain_backbone(), trial
