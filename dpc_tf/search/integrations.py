"""Adapters from the pipeline's stage interfaces to dpc_tf.proxy and dpc_tf.training.

Called only through stages.LazyFunction, i.e. in a stage subprocess or an engine worker
(they import TensorFlow there, never in the driver). Each takes explicit arguments and
reads the rest of its settings from the gin config the worker re-applied:

  proxy_backbone()           stage (a): the proxy config's backbone checkpoint
                             (feature_cache.checkpoint, or pretrain_backbone's, made once)
  train_and_score(cell, ...) stage (d): dpc_tf.training.train_and_evaluate of the cell's
                             whole model, initialised from the stage (a) checkpoint
"""

from __future__ import annotations

import os
from typing import Optional

from dpc_tf.search.errors import SearchError
from dpc_tf.search_space import Cell


def proxy_backbone() -> Optional[str]:
  """The backbone checkpoint the proxy config names, pretraining it first if it says so."""
  from dpc_tf.proxy import config as proxy_config  # pylint: disable=import-outside-toplevel
  cache, pretrain = proxy_config.feature_cache(), proxy_config.pretrain_backbone()
  if cache.checkpoint:
    if not os.path.exists(cache.checkpoint):
      raise SearchError(f"feature_cache.checkpoint {cache.checkpoint} does not exist")
    return cache.checkpoint
  if cache.pretrain:
    from dpc_tf.proxy import pretrain as pretrain_lib  # pylint: disable=import-outside-toplevel
    return pretrain_lib.pretrained_checkpoint(cache, pretrain)
  return None  # a random backbone, if feature_cache.allow_random_init says so


def train_and_score(cell: Cell, model_root: str, checkpoint: Optional[str] = None,
                    num_steps: Optional[int] = None, init_from_checkpoint: bool = True,
                    train_overrides: Optional[dict] = None, **kwargs) -> dict:
  """End-to-end training of `cell` in model_root/<fingerprint> (so a retry resumes it).

  kwargs go to dpc_tf.training.train_and_evaluate (dataset, batch_size, crop_size,
  eval_split, max_eval_examples, model_overrides, ...); the record's 'miou' is the score.
  """
  from dpc_tf.training import train_and_evaluate  # pylint: disable=import-outside-toplevel
  overrides = dict(train_overrides or {})
  if checkpoint and init_from_checkpoint:
    overrides.setdefault("init_weights", checkpoint)
  model_dir = os.path.join(model_root, cell.fingerprint())
  record = train_and_evaluate(cell, model_dir, num_steps=num_steps, train_overrides=overrides,
                              **kwargs)
  return dict(record, model_dir=model_dir)
