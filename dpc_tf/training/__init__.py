"""Full-scale training, evaluation, SavedModel export and inference of DeepLab + DPC models.

  train_and_evaluate(cell, model_dir, num_steps, ...)  train a cell's whole model, get its mIOU
  Trainer(config, model_dir, ...).train()              the tf.distribute custom training loop
  evaluate_checkpoint / evaluate_continuously          mIOU + per-class IoU, JSON in model_dir
  Predictor(model, scales, flip)                       single/multi-scale (+ flip) inference
  export_saved_model / export_checkpoint               SavedModel with a uint8 serving signature
  predict_images(saved_model, glob, output_dir)        label PNGs and colour overlays
  TrainConfig / EvalConfig / ExportConfig              settings; gin names train/evaluate/export
  PolyLearningRate, make_strategy, parse_gin           the parts others may reuse

Command lines: python -m dpc_tf.{train,evaluate,export,predict}.
"""

from dpc_tf.training.api import train_and_evaluate
from dpc_tf.training.config import (EvalConfig, ExportConfig, TrainConfig, eval_config,
                                    export_config, parse_gin, train_config)
from dpc_tf.training.errors import NonFiniteLossError
from dpc_tf.training.evaluation import (evaluate_checkpoint, evaluate_continuously,
                                        evaluate_model, format_table)
from dpc_tf.training.export import SegmentationModule, export_checkpoint, export_saved_model
from dpc_tf.training.inference import Predictor
from dpc_tf.training.predict import predict_images
from dpc_tf.training.schedule import PolyLearningRate
from dpc_tf.training.strategy import make_strategy
from dpc_tf.training.trainer import Trainer, TrainResult

__all__ = [
    "EvalConfig", "ExportConfig", "NonFiniteLossError", "PolyLearningRate", "Predictor",
    "SegmentationModule", "TrainConfig", "TrainResult", "Trainer",
    "eval_config", "evaluate_checkpoint", "evaluate_continuously", "evaluate_model",
    "export_checkpoint", "export_config", "export_saved_model", "format_table",
    "make_strategy", "parse_gin", "predict_images", "train_and_evaluate", "train_config",
]
