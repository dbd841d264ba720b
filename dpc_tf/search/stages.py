"""The pipeline's stage functions, and where they meet dpc_tf.proxy and dpc_tf.training.

    (a) backbone_stage()                  -> (checkpoint, maker)     search_backbone.*
    (b) cache_stage(search_dir)           -> (cache_dir, builder)    search_cache.*
    (c) trial factory(cache_dir)          -> TrialFn (proxy trial)   proxy_trial.* / fake_trial.*
    (d) rerank factory(checkpoint, dir)   -> TrialFn (end to end)    rerank_trial.*

The functions the stages call in other packages are named by "module:function" strings (gin
settable) and wrapped in LazyFunction, which imports them only where they run: in a worker
or a one-off subprocess, never in the driver, so the driver stays free of TensorFlow and of
the GPU the workers need. A missing function is a one-line SearchError naming it.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from typing import Any, Callable, Optional

import gin

from dpc_tf.search.errors import SearchError


def resolve(target: str, purpose: str) -> Callable:
  """'pkg.module:function' -> the function, or SearchError saying what is missing."""
  module_name, _, name = target.partition(":")
  if not name:
    raise SearchError(f"{purpose}: {target!r} is not 'module:function'")
  try:
    module = importlib.import_module(module_name)
  except ImportError as e:
    raise SearchError(f"{purpose} needs {module_name}.{name}, but {module_name} cannot be "
                      f"imported ({e})") from None
  fn = getattr(module, name, None)
  if not callable(fn):
    raise SearchError(f"{purpose} needs {module_name}.{name}(), which {module_name} does not "
                      f"define")
  return fn


@dataclasses.dataclass(frozen=True)
class LazyFunction:
  """A picklable `module:function` plus keyword arguments, imported when first called."""
  target: str
  kwargs: dict = dataclasses.field(default_factory=dict)
  purpose: str = "the search"

  def __call__(self, *args) -> Any:
    return self.load()(*args, **self.kwargs)

  def load(self) -> Callable:
    """Imports the target (and so registers its gin configurables) without calling it."""
    return resolve(self.target, self.purpose)

  def with_defaults(self, **defaults) -> "LazyFunction":
    """The same call with extra keyword arguments where none is given yet."""
    return dataclasses.replace(self, kwargs={**defaults, **self.kwargs})


# --- (a) the backbone checkpoint ------------------------------------------------------------
@gin.configurable("search_backbone")
def backbone_stage(checkpoint: Optional[str] = None, maker: Optional[str] = None,
                   maker_kwargs: Optional[dict] = None
                   ) -> tuple[Optional[str], Optional[LazyFunction]]:
  """(checkpoint, what returns it, making it if needed, or None).

  checkpoint: an existing checkpoint (refused if missing). maker: 'module:function' that
  returns the checkpoint path and trains it briefly when the config says so, e.g.
  'dpc_tf.search.integrations:proxy_backbone' (feature_cache.checkpoint, or a backbone
  pretrained by pretrain_backbone.* and reused after). Neither: no backbone stage.
  """
  if checkpoint is not None:
    if not checkpoint_exists(checkpoint):
      raise SearchError(f"the backbone checkpoint {checkpoint} does not exist; train or "
                        "convert one, or set search_backbone.maker to make it")
    return checkpoint, None
  if maker:
    return None, LazyFunction(maker, dict(maker_kwargs or {}), "stage (a), the backbone,")
  return None, None


def checkpoint_exists(path: str) -> bool:
  """A file, a SavedModel/Keras folder, or a tf.train.Checkpoint prefix (PREFIX.index)."""
  return os.path.exists(path) or os.path.exists(path + ".index")


# --- (b) the feature cache ------------------------------------------------------------------
@gin.configurable("search_cache")
def cache_stage(search_dir: str = "", cache_dir: Optional[str] = None, build: bool = True,
                builder: str = "dpc_tf.proxy:build_feature_cache",
                builder_kwargs: Optional[dict] = None
                ) -> tuple[Optional[str], Optional[LazyFunction]]:
  """(cache_dir, what builds it or None when it is complete). No cache_dir: no cache stage.

  The builder is called as builder(cache_dir=..., checkpoint=<stage (a)'s>, **builder_kwargs).
  A relative cache_dir is inside the search_dir (a self-contained demo); an absolute one can
  be shared by several searches (one backbone, one cache). With the Ray engine on several
  machines it must be on a filesystem every node mounts at the same path.
  """
  if cache_dir is None:
    return None, None
  cache_dir = os.path.join(search_dir, cache_dir) if search_dir else cache_dir
  if cache_complete(cache_dir):
    return cache_dir, None
  if not build:
    raise SearchError(f"the feature cache {cache_dir} is missing or unfinished and "
                      "search_cache.build is False; build it first (python -m "
                      "dpc_tf.cache_features) or set search_cache.build = True")
  return cache_dir, LazyFunction(builder, {"cache_dir": cache_dir, **(builder_kwargs or {})},
                                 "stage (b), building the feature cache,")


def cache_complete(cache_dir: str, roles: tuple[str, ...] = ("train", "eval")) -> bool:
  """Every role of the cache's manifest is complete (reads JSON only: no TensorFlow)."""
  import json  # pylint: disable=import-outside-toplevel
  path = os.path.join(cache_dir, "manifest.json")
  try:
    with open(path) as f:
      manifest = json.load(f)
  except (OSError, ValueError):
    return False
  entries = manifest.get("roles", {})
  return all(entries.get(r, {}).get("complete") for r in roles)


# --- (c) the proxy trial --------------------------------------------------------------------
@gin.configurable("proxy_trial")
def proxy_trial(cache_dir: Optional[str], target: str = "dpc_tf.proxy.trial:run_proxy_trial",
                **settings) -> LazyFunction:
  """The real proxy: run_proxy_trial(cell, cache_dir, **settings). Any setting is bindable."""
  if cache_dir is None:
    raise SearchError("the proxy trial needs a feature cache: set search_cache.cache_dir")
  return LazyFunction(target, {"cache_dir": cache_dir, **settings},
                      "stage (c), the proxy trial,")


# --- (d) the end-to-end re-rank trial -------------------------------------------------------
@gin.configurable("rerank_trial")
def rerank_trial(checkpoint: Optional[str], work_dir: str,
                 target: str = "dpc_tf.search.integrations:train_and_score",
                 **settings) -> LazyFunction:
  """Whole-model training of one cell: target(cell, model_root=work_dir, checkpoint=...,
  **settings) -> record with 'miou'. Any setting is bindable (num_steps, batch_size, ...)."""
  kwargs = {"model_root": work_dir, **settings}
  if checkpoint is not None:
    kwargs.setdefault("checkpoint", checkpoint)
  return LazyFunction(target, kwargs, "stage (d), end-to-end re-ranking,")
