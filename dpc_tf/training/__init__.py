"""Full-scale training, evaluation, SavedModel export and inference of DeepLab + DPC models.

  train_and_evaluate(cell, model_dir, num_steps, ...)  train a cell's whole model, get its mIOU
  Trainer(config, model_dir, ...).train()              the tf.distribute custom training loop
  evaluate_checkpoint / evaluate_continuously          mIOU + per-class IoU, JSON in model_dir
  Predictor(model, scales, flip)                       single/multi-scale (+ flip) inference (BN folded)
  export_saved_model / export_checkpoint               SavedModel with a uint8 serving signature
  predict_images(saved_model, glob, output_dir)        label PNGs and colour overlays
  TrainConfig / EvalConfig / ExportConfig              settings; gin names train/evaluate/export
  PolyLearningRate, make_strategy, parse_gin           the parts others may reuse

Command lines: python -m dpc_tf.{train,evaluate,export,predict}.

The training core every loop shares (the proxy trial and backbone pretraining too):
losses.py (the loss; the label rule itself is dpc_tf.data.metrics'), schedule.py,
optimizer.py (build_optimizer), guard.py (the per-step NaN / label guard), modeling.py
(BN settings, initial weights). The names above are imported lazily (PEP 562), so that
importing one core module does not import the trainer, export and gin machinery.
"""

import importlib

_EXPORTS = {
    "train_and_evaluate": "api",
    "EvalConfig": "config", "ExportConfig": "config", "TrainConfig": "config",
    "eval_config": "config", "export_config": "config", "parse_gin": "config",
    "train_config": "config",
    "BadLabelError": "errors", "NonFiniteLossError": "errors",
    "evaluate_checkpoint": "evaluation", "evaluate_continuously": "evaluation",
    "evaluate_model": "evaluation", "format_table": "evaluation",
    "SegmentationModule": "export", "export_checkpoint": "export",
    "export_saved_model": "export",
    "Predictor": "inference",
    "predict_images": "predict",
    "PolyLearningRate": "schedule",
    "make_strategy": "strategy",
    "Trainer": "trainer", "TrainResult": "trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
  target = _EXPORTS.get(name)
  if target is None:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  module, attribute = target if isinstance(target, tuple) else (target, name)
  value = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
  globals()[name] = value
  return value
