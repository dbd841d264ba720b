"""In-process entry points: train a whole model and score it, for the search's re-ranking.

The search re-ranks its best cells by training each one's full model (the paper: to
convergence with MobileNet-v2) and scoring it on the validation set. `train_and_evaluate`
does that in one call: the cell and the step budget are explicit arguments (gin state is
global and locked, so per-trial values are never bindings); everything else comes from the
parsed gin recipe if there is one (e.g. gin/train/synthetic.gin), else from the defaults.
"""

from __future__ import annotations

import time
from typing import Callable, Optional, Sequence

import tensorflow as tf

from dpc_tf import models
from dpc_tf.training import evaluation
from dpc_tf.training.config import eval_config, train_config
from dpc_tf.training.trainer import Trainer


def train_and_evaluate(cell, model_dir: str, num_steps: Optional[int] = None,
                       dataset: Optional[str] = None, batch_size: Optional[int] = None,
                       crop_size: Optional[Sequence[int]] = None,
                       eval_split: Optional[str] = None,
                       eval_scales: Optional[Sequence[float]] = None,
                       eval_flip: Optional[bool] = None,
                       max_eval_examples: Optional[int] = None,
                       model_overrides: Optional[dict] = None,
                       train_overrides: Optional[dict] = None,
                       strategy: Optional[tf.distribute.Strategy] = None,
                       step_callback: Optional[Callable[[int, dict], None]] = None) -> dict:
  """Trains `cell`'s DeepLab model in model_dir (resuming if interrupted) and scores it.

  Args:
    cell: a search_space.Cell (or its JSON / text); None keeps the configured cell.
    model_dir: this trial's folder: checkpoints, summaries, eval JSON. Re-running with the
      same folder resumes training, or only re-scores if training had finished.
    num_steps: the step budget (train.num_steps; also the poly schedule's N).
    dataset, batch_size, crop_size: train.* overrides; None keeps gin / defaults.
    eval_split, eval_scales, eval_flip, max_eval_examples: evaluate.* overrides.
    model_overrides: explicit deeplab_model arguments (e.g. {"backbone": "mobilenet_v2"}).
    train_overrides: any other train.* fields (e.g. {"base_learning_rate": 0.02}).
    strategy: a tf.distribute strategy to train with (default: train.strategy).
    step_callback: called after every training step with (step, {"loss", ...}).

  Returns:
    {"miou": float, "per_class_iou": {class: IoU or None}, "pixel_accuracy", "step",
     "cell": text form or None, "model_dir", "train": the trainer's result,
     "eval": the full evaluation result (also written to model_dir/eval_<split>.json),
     "seconds": wall time of the whole call}.
  """
  started = time.monotonic()
  explicit = dict(train_overrides or {})
  for key, value in (("num_steps", num_steps), ("dataset", dataset),
                     ("batch_size", batch_size), ("crop_size", crop_size)):
    if value is not None:
      explicit[key] = value
  train = train_config(**explicit)
  eval_explicit = {}
  for key, value in (("split", eval_split), ("scales", eval_scales), ("flip", eval_flip),
                     ("max_examples", max_eval_examples)):
    if value is not None:
      eval_explicit[key] = value
  evaluate = eval_config(**eval_explicit)
  trainer = Trainer(train, model_dir, strategy=strategy, cell=cell,
                    model_overrides=model_overrides, step_callback=step_callback)
  trained = trainer.train()
  result = evaluation.evaluate_checkpoint(train, evaluate, model_dir, cell=cell,
                                          model_overrides=model_overrides,
                                          strategy=trainer.strategy)
  return {"miou": result["miou"], "per_class_iou": result["per_class_iou"],
          "pixel_accuracy": result["pixel_accuracy"], "step": result["step"],
          "cell": None if cell is None else models.resolve_cell(cell).text, "model_dir": model_dir,
          "train": trained.as_dict(), "eval": result,
          "seconds": round(time.monotonic() - started, 3)}
