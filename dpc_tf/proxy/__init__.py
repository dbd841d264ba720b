"""The proxy task: cache a frozen backbone's features once, train candidate cells on them.

  python -m dpc_tf.cache_features --gin_file=gin/proxy/synthetic.gin --cache_dir=DIR
  python -m dpc_tf.proxy --gin_file=gin/proxy/synthetic.gin --cache_dir=DIR --cell=CELL.json

  make_cache(cache_dir, CacheConfig, PretrainConfig)   the caching pass (cache_builder.py)
  build_feature_cache(cache_dir, checkpoint=None, ...)  the same with gin-bound settings
  run_proxy_trial(cell, cache_dir, **settings) -> dict  one trial's score record (trial.py)
  FeatureCache(cache_dir).role("train"|"eval")           reading a cache (cache.py)
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from dpc_tf.errors import DpcError
from dpc_tf.proxy.cache import (CacheError, CacheMismatchError, CachedRole, CorruptShardError,
                                FeatureCache, IncompleteCacheError)
from dpc_tf.proxy.caching import backbone_fingerprint, cache_role
from dpc_tf.proxy.config import CacheConfig, PretrainConfig, feature_cache, pretrain_backbone
from dpc_tf.proxy.cache_builder import make_cache
from dpc_tf.proxy.trial import TrialConfig, run_proxy_trial


def build_feature_cache(cache_dir: str, checkpoint: Optional[str] = None, **overrides) -> dict:
  """make_cache with the gin-bound `feature_cache` / `pretrain_backbone` settings.

  For the search pipeline's cache stage (run where the search's gin config was parsed):
  `checkpoint` (stage (a)'s result) and any CacheConfig field given here win over bindings.
  Returns the manifest.
  """
  config = feature_cache()
  known = {f.name for f in dataclasses.fields(CacheConfig)}
  unknown = sorted(set(overrides) - known)
  if unknown:
    raise DpcError(f"unknown feature_cache setting(s) {', '.join(unknown)}")
  if checkpoint is not None:
    overrides["checkpoint"] = checkpoint
  config = dataclasses.replace(config, **overrides)
  return make_cache(cache_dir, config, pretrain_backbone())
