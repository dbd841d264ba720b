"""The real trials: proxy on cached features, whole-model training, head costs (TensorFlow).

`TfRunner(work_dir, gin_files)` parses the proxy and training gin recipes, finds (or makes)
the proxy's pretrained backbone and caches its features in WORK_DIR/feature_cache (once).
The full task is `dpc_tf.training.train_and_evaluate` of the whole model (backbone + head +
decoder), trained end to end from that same pretrained backbone, as the search's re-ranking
stage does; its model folders live in WORK_DIR/models/<tag>/<key> (an interrupted run resumes).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Optional, Sequence

from dpc_tf import gin_config

DEFAULT_GIN = ("gin/proxy/synthetic.gin", "gin/train/synthetic.gin")
ASPP = "aspp"  # the key of the ASPP baseline's full-task record


class TfRunner:
  """Runs proxy trials, full-task trainings and head-cost counts for the claims."""

  def __init__(self, work_dir: str, gin_files: Sequence[str] = DEFAULT_GIN,
               bindings: Sequence[str] = ()):
    import gin  # pylint: disable=import-outside-toplevel
    from dpc_tf.proxy import config as proxy_config  # pylint: disable=import-outside-toplevel
    from dpc_tf.proxy.trial import TrialConfig  # pylint: disable=import-outside-toplevel
    import dpc_tf.training.config  # pylint: disable=import-outside-toplevel,unused-import
    self.work_dir = work_dir
    gin_config.parse(list(gin_files), list(bindings), modules=proxy_config.MODULES)
    self.cache_config, self.pretrain_config = (proxy_config.feature_cache(),
                                               proxy_config.pretrain_backbone())
    trial = TrialConfig.from_kwargs(**gin.get_bindings("proxy_trial"))
    self.trial_settings = dataclasses.asdict(trial)
    self.proxy_steps = trial.steps
    from dpc_tf.training.config import train_config  # pylint: disable=import-outside-toplevel
    self.full_steps_default = train_config().num_steps
    self._checkpoint: Optional[str] = None
    self._cache_dir: Optional[str] = None

  # --- setup ------------------------------------------------------------------------------
  @property
  def checkpoint(self) -> str:
    if self._checkpoint is None:
      from dpc_tf.proxy import pretrain  # pylint: disable=import-outside-toplevel
      self._checkpoint = pretrain.pretrained_checkpoint(self.cache_config, self.pretrain_config)
    return self._checkpoint

  @property
  def cache_dir(self) -> str:
    if self._cache_dir is None:
      from dpc_tf.proxy import make_cache  # pylint: disable=import-outside-toplevel
      cache_dir = os.path.join(self.work_dir, "feature_cache")
      config = dataclasses.replace(self.cache_config, checkpoint=self.checkpoint)
      make_cache(cache_dir, config, self.pretrain_config)  # reuses a complete cache
      self._cache_dir = cache_dir
    return self._cache_dir

  def model_overrides(self, head: str = "dpc") -> dict:
    """The full model's backbone must be the proxy's (it starts from its weights)."""
    return {"backbone": self.cache_config.backbone,
            "depth_multiplier": self.cache_config.depth_multiplier, "head": head}

  # --- trials -----------------------------------------------------------------------------
  def proxy(self, cell, steps: int, seed: int = 0) -> dict:
    from dpc_tf.proxy import run_proxy_trial  # pylint: disable=import-outside-toplevel
    settings = dict(self.trial_settings, steps=int(steps), seed=int(seed))
    return run_proxy_trial(cell, self.cache_dir, **settings)

  def full(self, cell, key: str, steps: int, seed: int = 0) -> dict:
    """Whole-model training and validation mIOU; cell None: the ASPP head. `key` names the
    model folder (unique per cell and seed); `seed` sets the head's initialisation, the
    data order and dropout (the backbone always starts from the same pretrained weights)."""
    from dpc_tf.training import train_and_evaluate  # pylint: disable=import-outside-toplevel
    head = ASPP if cell is None else "dpc"
    model_dir = os.path.join(self.work_dir, "models", f"full-s{steps}", key)
    started = time.time()
    record = train_and_evaluate(cell, model_dir, num_steps=int(steps),
                                model_overrides=self.model_overrides(head),
                                train_overrides={"init_weights": self.checkpoint,
                                                 "seed": int(seed)})
    trained = record["train"]
    return {"key": key, "head": head, "seed": int(seed), "cell": record["cell"],
            "miou": record["miou"],
            "per_class_iou": record["per_class_iou"],
            "pixel_accuracy": record["pixel_accuracy"], "steps": int(steps),
            "seconds": time.time() - started, "train": trained,
            "step_seconds": (1.0 / trained["steps_per_second"]
                             if trained.get("steps_per_second") else None),
            "resumed": trained.get("resumed_from") is not None}

  def head_costs(self, cell, key: str) -> dict:
    """Params / multiply-adds of the full model's head (and the paper's branch-only count)
    at the full model's evaluation size (the dataset's eval crop)."""
    import keras  # pylint: disable=import-outside-toplevel
    from dpc_tf import costs, data, models  # pylint: disable=import-outside-toplevel
    head = ASPP if key == ASPP else "dpc"
    spec = data.get_spec(self.cache_config.dataset)
    keras.backend.clear_session()
    model = models.deeplab_model(num_classes=spec.num_classes,
                                 cell=None if head == ASPP else cell,
                                 **self.model_overrides(head))
    shape = (*spec.eval_crop, 3)
    report = costs.model_costs(model, shape, *models.model_parts(model))
    result = {"key": key, "head": head, "input_shape": list(shape),
              "head_params": report["head"]["trainable_params"],
              "head_madds": report["head"]["madds"],
              "model_params": report["total"]["trainable_params"],
              "model_madds": report["total"]["madds"]}
    result["branch_params"] = report["head"].get("branch_params")
    result["branch_madds"] = report["head"].get("branch_madds")
    return result
