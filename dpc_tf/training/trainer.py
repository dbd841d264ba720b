"""The custom training loop on tf.distribute: build, resume, step, log, checkpoint, guard.

One `train_step` call is one optimizer step on the global batch:

  replica r:  n = all-reduced valid pixels (labels only)  ->  forward + backward of
              sum_r(CE) / n + L2 / R  (losses.py)  ->  gradient multipliers  ->
              optimizer.apply_gradients (Keras all-reduces, i.e. sums, over replicas)
  host:       step += 1; loss, confusion counts and the finiteness of the gradients are
              reduced over replicas and read back.

With train.steps_per_call = K > 1, `train_steps` runs up to K of them in one tf.function (a
while loop reading the distributed iterator), stacks the per-step values, sums the
confusion counts on the device and stops after the first step the guard would refuse; the
host reads everything once per call, runs the guard and the step callback for each step,
and logs, writes summaries and checkpoints at call ends only. Calls are cut so that every
checkpoint and summary step (and the last step) ends a call: checkpoints land on exactly
the configured steps whatever K is.

A NaN/Inf loss (or, without loss scaling, a non-finite gradient) or a label that is neither
a class nor 255 stops the run *before* anything is saved (guard.py), naming the step and the
last good checkpoint; the weights in memory are discarded with the process. Under float16
loss scaling, non-finite gradients are expected now and then: the LossScaleOptimizer skips
them itself.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from dpc_tf import models
from dpc_tf.data import metrics
from dpc_tf.gin_config import save_operative_config
from dpc_tf.training import checkpointing, guard, inputs, losses, modeling, optimizer as optim
from dpc_tf.training import strategy as strategy_lib, summaries
from dpc_tf.training.config import TrainConfig
from dpc_tf.training.schedule import PolyLearningRate
from dpc_tf.training.progress import ProgressMeter
from dpc_tf.utils import locks

ModelFn = Callable[[], keras.Model]

# The per-step values a call returns (besides the summed confusion counts) and the guard reads.
_PER_STEP = ("loss", "data_loss", "regularization", "bad_labels", "all_finite")


@dataclasses.dataclass
class TrainResult:
  """What a finished (or already complete) run reports."""
  step: int
  loss: Optional[float]
  train_miou: Optional[float]
  seconds: float
  steps_per_second: Optional[float]
  checkpoint: Optional[str]
  resumed_from: Optional[int]

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


class Trainer:
  """Trains the model of `config` in `model_dir` (see the module docstring).

  Args:
    config: the run's TrainConfig.
    model_dir: checkpoints, summaries and the operative gin config go here; a checkpoint
      already there is resumed.
    strategy: a tf.distribute strategy; built from config.strategy when None.
    cell: forces the DPC cell (a search trial); otherwise gin / the released cell.
    model_overrides: extra explicit `deeplab_model` arguments.
    model_fn: builds the model instead of dpc_tf.models (tests, custom models); called
      inside strategy.scope() and the dtype policy.
    step_callback: called after every step with (step, {"loss", "cross_entropy",
      "regularization", "learning_rate"}) as Python floats (progress reporting, tests).
  """

  def __init__(self, config: TrainConfig, model_dir: str,
               strategy: Optional[tf.distribute.Strategy] = None, cell=None,
               model_overrides: Optional[dict] = None, model_fn: Optional[ModelFn] = None,
               step_callback: Optional[Callable[[int, dict], None]] = None):
    self.config = config
    self.step_callback = step_callback
    self.model_dir = model_dir
    # The strategy first: a multi-worker strategy must be created before any TF op runs.
    self.strategy = strategy or strategy_lib.make_strategy(config.strategy, config.tpu)
    self.spec = inputs.get_spec(config.dataset)
    self.crop = inputs.train_crop(config)
    inputs.check_train_data(config)
    self.chief = strategy_lib.is_chief(self.strategy)
    self.cell = cell
    self.model_overrides = dict(model_overrides or {})
    self.custom_model = model_fn is not None
    self.num_classes = self.spec.num_classes
    os.makedirs(model_dir, exist_ok=True)
    if config.seed is not None:  # the head's initialisation and dropout, not only the data
      keras.utils.set_random_seed(config.seed)
    with optim.dtype_policy(config.mixed_precision), self.strategy.scope():
      self.model = model_fn() if model_fn else modeling.build_model(
          self.num_classes, self.crop, cell, model_overrides)
      modeling.configure_batch_norm(self.model, config.fine_tune_batch_norm, config.bn_momentum)
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                              aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
      self.schedule = PolyLearningRate(
          config.base_learning_rate, config.num_steps, config.learning_rate_power,
          config.end_learning_rate, config.warmup_steps, config.warmup_learning_rate)
      self.variables = list(self.model.trainable_variables)
      self.optimizer = optim.build_optimizer(self.schedule, config.momentum, self.variables,
                                             config.mixed_precision, step=self.step)
    self.loss_scaling = isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
    self.multipliers = optim.gradient_multipliers(
        self.variables, config.last_layers, config.last_layer_gradient_multiplier,
        config.bias_gradient_multiplier)
    self.keeper = checkpointing.CheckpointKeeper(
        model_dir, self.strategy, config.keep_checkpoints, model=self.model,
        optimizer=self.optimizer, step=self.step)
    self._train_step, self._train_steps = self._make_train_step()
    self._predict_step = tf.function(self._predict_replica)

  # ---- the step functions ----------------------------------------------------------------

  def _gradients(self, images, labels, global_valid):
    """Forward + backward of this replica's share of the loss (no collectives here)."""
    with tf.GradientTape() as tape:
      logits = self.model(images, training=True)
      regularization = losses.regularization_loss(self.model.losses)
      total, data_loss = losses.replica_loss(labels, logits, regularization, global_valid,
                                             self.strategy.num_replicas_in_sync)
      scaled = self.optimizer.scale_loss(total) if self.loss_scaling else total
    gradients = tape.gradient(scaled, self.variables)
    predictions = tf.argmax(losses.logits_at_label_size(logits, labels), -1,
                            output_type=tf.int32)
    confusion = metrics.confusion_counts(labels, predictions, self.num_classes)
    norm = tf.linalg.global_norm([g for g in gradients if g is not None])
    return (gradients, data_loss,
            regularization / float(self.strategy.num_replicas_in_sync), confusion, norm)

  def _make_train_step(self):
    gradients_fn = (tf.function(self._gradients, jit_compile=True) if self.config.jit_compile
                    else self._gradients)

    def replica_step(images, labels):
      global_valid = losses.global_valid_pixels(labels, self.num_classes)
      gradients, data_loss, regularization, confusion, norm = gradients_fn(
          images, labels, global_valid)
      gradients = optim.apply_multipliers(gradients, self.multipliers)
      self.optimizer.apply_gradients(zip(gradients, self.variables))
      finite = tf.cast(tf.math.is_finite(norm), tf.float32)
      bad_labels = metrics.count_bad_labels(labels, self.num_classes)
      return data_loss, regularization, confusion, finite, bad_labels

    def train_step(batch):
      images, labels = batch
      per_replica = self.strategy.run(replica_step, args=(images, labels))
      reduce = lambda x: self.strategy.reduce(tf.distribute.ReduceOp.SUM, x, axis=None)
      data_loss, regularization, confusion, finite, bad_labels = (
          reduce(x) for x in per_replica)
      self.step.assign_add(1)
      return {"data_loss": data_loss, "regularization": regularization,
              "loss": data_loss + regularization, "confusion": confusion,
              "bad_labels": bad_labels,
              "all_finite": tf.equal(finite, float(self.strategy.num_replicas_in_sync))}

    def train_steps(iterator, count):
      """Up to `count` steps on batches read inside the function; stops after the first step
      the guard would refuse (so the host names it and nothing after it runs). Per-step
      scalars come back stacked [done], the confusion counts summed."""
      stacked = {k: tf.TensorArray(tf.float32, size=count) for k in _PER_STEP}
      # int64: float32 counts are exact only up to 2^24 per cell, one batch but not K.
      confusion = tf.zeros((self.num_classes, self.num_classes), tf.int64)
      done, good = tf.constant(0), tf.constant(True)
      while done < count and good:
        values = train_step(next(iterator))
        finite = tf.cast(values["all_finite"], tf.float32)
        stacked = {k: stacked[k].write(done, values[k] if k != "all_finite" else finite)
                   for k in _PER_STEP}
        confusion += tf.cast(values["confusion"], tf.int64)
        good = tf.logical_and(
            tf.math.is_finite(values["loss"]), values["bad_labels"] == 0.0)
        if not self.loss_scaling:
          good = tf.logical_and(good, values["all_finite"])
        done += 1
      out = {k: v.stack()[:done] for k, v in stacked.items()}
      out["confusion"] = confusion
      return out

    return tf.function(train_step), tf.function(train_steps)

  def _predict_replica(self, images):
    def predict(x):
      return tf.argmax(self.model(x, training=False), -1, output_type=tf.int32)
    return self.strategy.run(predict, args=(images,))

  # ---- the loop ------------------------------------------------------------------------

  def _restore_or_initialize(self) -> Optional[int]:
    path = self.keeper.restore_latest()
    if path is not None:
      resumed = int(self.step.numpy())
      logging.info("Resuming from step %d (%s)", resumed, path)
      return resumed
    if self.config.init_weights:
      modeling.initialize_from_converted(self.model, self.config.init_weights,
                                         self.config.initialize_last_layer,
                                         self.config.init_parts)
    return None

  def _write_images(self, step: int, batch) -> None:
    local = lambda x: self.strategy.experimental_local_results(x)[0].numpy()
    images, labels = batch
    predictions = local(self._predict_step(images))
    n = self.config.num_summary_images
    strips = summaries.comparison_strip(local(images)[:n], local(labels)[:n], predictions[:n],
                                        self.spec.palette_array())
    summaries.write_images(step, "image | label | prediction", strips)

  def _check_step(self, step: int, values: dict, i: int) -> None:
    def advice() -> str:
      last = checkpointing.latest_checkpoint(self.model_dir)
      return (f"cross-entropy {values['data_loss'][i]}, regularization "
              f"{values['regularization'][i]}; training stopped without saving: the last "
              f"good checkpoint {last or '(none)'} is untouched. Lower "
              f"train.base_learning_rate or check the data")
    guard.check_step(
        step, float(values["loss"][i]), num_classes=self.num_classes, where="training",
        bad_labels=float(values["bad_labels"][i]),
        gradients_finite=self.loss_scaling or bool(values["all_finite"][i]), advice=advice)

  def _call_length(self, step: int, first: bool) -> int:
    """Steps of the next call: at most steps_per_call, cut so that the call ends on the
    last step and on every checkpoint and summary step. The first call of a run is one
    step: it carries the tracing, and speed is measured from its end."""
    config = self.config
    length = 1 if first else min(config.steps_per_call, config.num_steps - step)
    for every in (config.checkpoint_every, config.summary_every, config.image_summary_every):
      if every:
        length = min(length, every - step % every)
    return length

  def _run_steps(self, iterator, count: int, keep_batch: bool):
    """Runs `count` steps; returns their values as NumPy (per-step arrays, summed confusion)
    and, with keep_batch (image summaries; count 1), the batch of that step. With
    steps_per_call 1 every step is one call on a batch fetched here, as before K existed."""
    if keep_batch or self.config.steps_per_call == 1:
      batch = next(iterator)
      out = self._train_step(batch)
      values = {k: np.asarray([out[k].numpy()], np.float64) for k in _PER_STEP}
      values["confusion"] = out["confusion"].numpy().astype(np.int64)
      return values, (batch if keep_batch else None)
    out = self._train_steps(iterator, tf.constant(count, tf.int32))
    values = {k: out[k].numpy().astype(np.float64) for k in _PER_STEP}
    values["confusion"] = out["confusion"].numpy()
    return values, None

  @locks.locks_folder(lambda self: self.model_dir if self.chief else None,
                      "is being trained by another process", ".train.lock")
  def train(self) -> TrainResult:
    """Trains up to config.num_steps (resuming from model_dir); returns the final state."""
    config = self.config
    started = time.monotonic()
    resumed = self._restore_or_initialize()
    step = int(self.step.numpy())
    if step >= config.num_steps:
      logging.info("model_dir %s is already trained to step %d (num_steps %d)",
                   self.model_dir, step, config.num_steps)
      return TrainResult(step, None, None, 0.0, None,
                         checkpointing.latest_checkpoint(self.model_dir), resumed)
    logging.info("Training %s with %s on %d replica(s), global batch %d, steps %d..%d, "
                 "%d step(s) per call", self.model.name, type(self.strategy).__name__,
                 self.strategy.num_replicas_in_sync, config.batch_size, step,
                 config.num_steps, config.steps_per_call)
    writer = summaries.writer(self.model_dir, "train", self.chief)
    iterator = iter(inputs.distributed_train_dataset(config, self.strategy, step))
    meter = ProgressMeter(config.num_steps, step, config.batch_size)
    confusion = np.zeros((self.num_classes, self.num_classes), np.int64)
    first_step, timed_from = step, None
    loss, train_miou, saved = None, None, None
    while step < config.num_steps:
      count = self._call_length(step, first=step == first_step)
      end = step + count
      images_due = bool(config.image_summary_every) and end % config.image_summary_every == 0
      # An image summary needs the batch of its step on the host: that step runs alone.
      parts = [count - 1, 1] if images_due and count > 1 else [count]
      batch = None
      for part in parts:
        last_part = step + part == end
        if end >= config.num_steps and last_part:
          # Stop the input pipeline's background threads before the final save: generated
          # data (Python map functions) would keep prefetching and compete for the GIL.
          iterator, run_on = None, iterator
        else:
          run_on = iterator
        values, batch = self._run_steps(run_on, part, keep_batch=images_due and last_part)
        del run_on
        for i in range(len(values["loss"])):
          step += 1
          loss = float(values["loss"][i])
          self._check_step(step, values, i)
          if self.step_callback is not None:
            self.step_callback(step, {
                "loss": loss, "cross_entropy": float(values["data_loss"][i]),
                "regularization": float(values["regularization"][i]),
                "learning_rate": float(self.schedule(step - 1))})
        confusion += values["confusion"]
      if step == first_step + count and timed_from is None:
        timed_from = (time.monotonic(), step)
        meter.start()
        if self.chief:
          save_operative_config(self.model_dir, f"dpc_tf training run in {self.model_dir}",
                                self._run_bindings())
      learning_rate = float(self.schedule(step - 1))  # the rate the last step was taken with
      if step // config.log_every > (step - count) // config.log_every or \
          step == config.num_steps:
        train_miou = metrics.iou_from_confusion(confusion).miou
        logging.info("%s", meter.line(step, loss, learning_rate, f"train mIOU {train_miou:.3f}"))
      with writer.as_default():
        if step % config.summary_every == 0 or step == config.num_steps:
          train_miou = metrics.iou_from_confusion(confusion).miou
          summaries.write_scalars(step, {
              "loss/total": loss, "loss/cross_entropy": float(values["data_loss"][-1]),
              "loss/regularization": float(values["regularization"][-1]),
              "learning_rate": learning_rate, "train_miou": train_miou})
          confusion[:] = 0
        if images_due:
          self._write_images(step, batch)
      if step % config.checkpoint_every == 0 or step == config.num_steps:
        saved = self.keeper.save(step) or saved
    writer.flush()
    rate = None
    if timed_from is not None and step > timed_from[1]:
      rate = (step - timed_from[1]) / max(time.monotonic() - timed_from[0], 1e-9)
    return TrainResult(step, loss, train_miou, time.monotonic() - started, rate,
                       saved or checkpointing.latest_checkpoint(self.model_dir), resumed)

  def _run_bindings(self) -> dict:
    """Every train.* value and the explicit model arguments, as gin bindings."""
    bindings = {f"train.{k}": v for k, v in dataclasses.asdict(self.config).items()}
    if not self.custom_model:
      if self.cell is not None:
        bindings["deeplab_model.cell"] = models.resolve_cell(self.cell).text
      bindings.update({f"deeplab_model.{k}": v for k, v in self.model_overrides.items()})
    return bindings
