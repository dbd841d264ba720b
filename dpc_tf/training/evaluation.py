"""Evaluation: mIOU and per-class IoU of a model or a checkpoint, once or continuously.

Predictions come from inference.Predictor (single- or multi-scale, optional flip); counts
and scores from dpc_tf.data.metrics (the label rule every loss and score shares; classes
never labelled nor predicted left out of the mean, as TF1's mean_iou). Results are printed as a
table and written atomically as JSON beside the checkpoints.

Evaluation runs under the training strategy (strategy.evaluation_strategy: train.strategy,
or the trainer's own in train_and_evaluate): the model is built in its scope, each replica
scores its share of every batch (an uneven last batch leaves some replicas empty) and the
counts are summed over replicas, so mirrored on N devices gives one device's confusion matrix.
"""

from __future__ import annotations

import os
import time
from typing import Optional

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from dpc_tf import data
from dpc_tf.data import metrics
from dpc_tf.training import checkpointing, guard, inputs, modeling, summaries
from dpc_tf.training import strategy as strategy_lib
from dpc_tf.training.config import EvalConfig, TrainConfig
from dpc_tf.training.inference import Predictor
from dpc_tf.utils.files import write_json_atomic


def _suffix(config: EvalConfig) -> str:
  return "_multiscale" if config.scales != (1.0,) or config.flip else ""


def results_path(model_dir: str, config: EvalConfig) -> str:
  """model_dir/eval_<split>[_multiscale].json: single- and multi-scale results side by side."""
  return os.path.join(model_dir, f"eval_{config.split.split('[')[0]}{_suffix(config)}.json")


def confusion_matrix(model: keras.Model, dataset: tf.data.Dataset, num_classes: int,
                     scales=(1.0,), flip: bool = False,
                     strategy: Optional[tf.distribute.Strategy] = None) -> tuple[np.ndarray, int]:
  """(int64 [C, C] counts, row = label and column = prediction; number of images).

  strategy: the one the model was built under (default: the current one); the batches are
  split over its replicas. Labels breaking the label rule (neither a class nor 255) raise
  BadLabelError."""
  strategy = strategy or tf.distribute.get_strategy()
  predictor = Predictor(model, scales, flip)

  def replica_step(images, labels):
    def counts():
      predictions, _ = predictor(images)
      # float64: a batch of full-size images can pass float32's 2^24 exact counts per cell.
      return metrics.confusion_counts(labels, predictions, num_classes, tf.float64)
    # An uneven last batch leaves replicas without images: TF's CPU convolution returns
    # wrongly shaped empty outputs for those, so an empty share is not run through the model.
    batch = tf.shape(images)[0]
    return (tf.cond(batch > 0, counts, lambda: tf.zeros([num_classes] * 2, tf.float64)),
            metrics.count_bad_labels(labels, num_classes), batch)

  @tf.function(reduce_retracing=True)
  def step(images, labels):
    per_replica = strategy.run(replica_step, args=(images, labels))
    return tuple(strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                 for value in per_replica)

  confusion = np.zeros((num_classes, num_classes), np.int64)
  num_images = 0
  for images, labels in strategy.experimental_distribute_dataset(dataset):
    counts, bad_labels, batch = step(images, labels)
    guard.check_labels(float(bad_labels), num_classes, f"evaluation, image {num_images}")
    confusion += np.rint(counts.numpy()).astype(np.int64)
    num_images += int(batch)
  return confusion, num_images


def result_dict(confusion: np.ndarray, spec: data.DatasetSpec, **extra) -> dict:
  """The JSON-able result: mIOU, per-class IoU (None where undefined), pixel accuracy."""
  iou = metrics.iou_from_confusion(confusion)
  return {
      "miou": iou.miou,
      "per_class_iou": {name: (None if np.isnan(v) else float(v))
                        for name, v in zip(spec.class_names, iou.per_class)},
      "pixel_accuracy": iou.pixel_accuracy,
      "num_classes": spec.num_classes, "dataset": spec.name, **extra,
      "confusion_matrix": confusion.tolist(),
  }


def format_table(result: dict) -> str:
  """Per-class IoU and the mean, in percent, as an aligned text table."""
  names = list(result["per_class_iou"])
  width = max([len(n) for n in names] + [len("mean IoU")])
  lines = [f"{'class':<{width}}  IoU (%)"]
  for name in names:
    value = result["per_class_iou"][name]
    lines.append(f"{name:<{width}}  {'   n/a' if value is None else f'{100 * value:6.2f}'}")
  lines.append(f"{'mean IoU':<{width}}  {100 * result['miou']:6.2f}")
  details = [f"{result.get('num_images', '?')} images", f"split {result.get('split', '?')}",
             f"scales {result.get('scales', [1.0])}", f"flip {result.get('flip', False)}"]
  if result.get("step") is not None:
    details.insert(0, f"step {result['step']}")
  lines.append("(" + ", ".join(details) + ")")
  return "\n".join(lines)


def evaluate_model(model: keras.Model, train: TrainConfig, config: EvalConfig,
                   strategy: Optional[tf.distribute.Strategy] = None, **extra) -> dict:
  """Scores an in-memory model (built under `strategy`) on config.split (no file written)."""
  spec = inputs.get_spec(train.dataset)
  dataset = inputs.eval_dataset(train, config)
  started = time.monotonic()
  confusion, num_images = confusion_matrix(model, dataset, spec.num_classes, config.scales,
                                           config.flip, strategy)
  return result_dict(confusion, spec, split=config.split, scales=list(config.scales),
                     flip=config.flip, num_images=num_images,
                     seconds=round(time.monotonic() - started, 3), **extra)


def build_eval_model(train: TrainConfig, cell=None,
                     model_overrides: Optional[dict] = None,
                     strategy: Optional[tf.distribute.Strategy] = None) -> keras.Model:
  """The model to score, its variables made under `strategy` (default: the current one)."""
  spec = inputs.get_spec(train.dataset)
  with (strategy or tf.distribute.get_strategy()).scope():
    return modeling.build_model(spec.num_classes, inputs.train_crop(train), cell,
                                model_overrides)


def evaluate_checkpoint(train: TrainConfig, config: EvalConfig, model_dir: str,
                        checkpoint: Optional[str] = None, cell=None,
                        model_overrides: Optional[dict] = None,
                        model: Optional[keras.Model] = None, write: bool = True,
                        strategy: Optional[tf.distribute.Strategy] = None) -> dict:
  """Scores a checkpoint (model_dir's newest by default); writes the JSON and a summary.

  strategy: default train.strategy's (a given `model` must have been built under it)."""
  path = checkpointing.require_checkpoint(model_dir, checkpoint)
  strategy = strategy or strategy_lib.evaluation_strategy(train.strategy, train.tpu)
  model = model or build_eval_model(train, cell, model_overrides, strategy)
  step = checkpointing.restore_for_inference(model, path)
  result = evaluate_model(model, train, config, strategy, step=step, checkpoint=path)
  if write:
    write_json_atomic(results_path(model_dir, config), result)
    writer = summaries.writer(model_dir, "eval")
    with writer.as_default():
      summaries.write_scalars(step, {f"miou{_suffix(config)}": result["miou"]})
    writer.flush()
  return result


def evaluate_continuously(train: TrainConfig, config: EvalConfig, model_dir: str, cell=None,
                          model_overrides: Optional[dict] = None,
                          callback=None) -> Optional[dict]:
  """Scores every new checkpoint of model_dir as it appears; returns the last result.

  Stops when the checkpoint of train.num_steps has been scored or when config.timeout_s
  passes without a new checkpoint (tf.train.checkpoints_iterator).
  """
  strategy = strategy_lib.evaluation_strategy(train.strategy, train.tpu)
  model = build_eval_model(train, cell, model_overrides, strategy)
  last = None
  for path in tf.train.checkpoints_iterator(model_dir, timeout=config.timeout_s):
    try:
      last = evaluate_checkpoint(train, config, model_dir, path, model=model, strategy=strategy)
    except tf.errors.NotFoundError:
      # The trainer's CheckpointManager deleted it (max_to_keep) before we read it.
      logging.warning("checkpoint %s disappeared before it was evaluated; skipped", path)
      continue
    if callback is not None:
      callback(last)
    if last["step"] >= train.num_steps:
      break
  if last is None:
    logging.warning("no checkpoint appeared in %s within %.0f s", model_dir, config.timeout_s)
  return last
