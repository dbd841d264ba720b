"""Several proxy trials in one compiled program: K heads trained side by side.

`run_packed_trials([(cell, head), ...], cache_dir, **config)` trains K heads on the same
cached batches in one compiled step: their losses are summed into one tape (the gradient of
a sum gives each head exactly its own loss's gradients, since no head reads another's
weights), each head has its own optimizer (momentum slots, step count, schedule) and gets
its own score. Small heads on a small feature map leave most of a step to fixed per-step
costs (dispatch, the batch gather, the host round trip, the guard's scalar read); one program
pays them once for K heads, and on a device with spare width the K heads' ops run in
parallel.

Same distribution as one at a time, by construction: each head is built right after seeding
with the config's seed (`TrialTask.build_model`), so its initial weights and its dropout
generator are those of `run_proxy_trial` with that seed, and it sees the same batch sequence
(the sampler is seeded the same way). What differs is float summation order at most; the
tests check that a head's result does not change when its pack-mates change.

Failures stay with their head: a head whose loss goes non-finite (or whose cell cannot be
built) gets that error as its result and leaves the pack (the step is retraced without it);
the others go on. Errors that concern the data (bad labels, a corrupt shard, too few
examples) fail the whole pack, as they would fail each trial alone. A head whose held-out
score stops improving (`patience`) leaves the pack the same way, with its record.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Optional, Sequence

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from dpc_tf import search_space
from dpc_tf.data import metrics
from dpc_tf.errors import DpcError
from dpc_tf.proxy import feeding
from dpc_tf.proxy.cache import FeatureCache
from dpc_tf.proxy.trial import (TrialConfig, TrialTask, cache_fields, eval_batches,
                                head_costs, miou_standard_error, subject_fields)
from dpc_tf.training import guard, losses
from dpc_tf.training.errors import NonFiniteLossError
from dpc_tf.training.optimizer import build_optimizer
from dpc_tf.training.schedule import PolyLearningRate


@dataclasses.dataclass
class _Head:
  """One member of the pack and where it stands."""
  cell: Optional[search_space.Cell]
  head: str
  model: Optional[keras.Model] = None
  optimizer: Optional[keras.optimizers.Optimizer] = None
  record: dict = dataclasses.field(default_factory=dict)
  error: Optional[Exception] = None
  losses: list = dataclasses.field(default_factory=list)
  holdout_history: list = dataclasses.field(default_factory=list)
  best: float = -1.0
  since_best: int = 0
  steps: int = 0
  stopped_early: bool = False
  training: bool = True

  @property
  def name(self) -> str:
    return f"cell {self.cell.text}" if self.cell is not None else self.head


def _subject(cell, head: str) -> Optional[search_space.Cell]:
  """The member's cell, refused as run_proxy_trial refuses it."""
  if head not in ("dpc", "aspp"):
    raise DpcError(f"proxy trial head must be 'dpc' or 'aspp', got {head!r}")
  if head == "aspp" and cell is not None:
    raise DpcError("the proxy trial's ASPP head takes no cell (cell must be None)")
  return search_space.as_cell(cell) if head == "dpc" else None


class _PackedSteps:
  """The compiled train and predict steps of the heads still training."""

  def __init__(self, heads: Sequence[_Head], cfg: TrialConfig, num_classes: int):
    self.heads, self.num_classes, self.jit = list(heads), num_classes, cfg.jit_compile
    self.train_on = tf.function(self._train_on, jit_compile=self.jit)
    self.predict_on = tf.function(self._predict_on, jit_compile=self.jit,
                                  reduce_retracing=True)

  def _train_on(self, features, labels):
    """One step of every head; returns (per-head mean cross-entropy, bad label pixels)."""
    features = tf.cast(features, tf.float32)
    with tf.GradientTape() as tape:
      per_head, totals = [], []
      for head in self.heads:
        loss = losses.mean_cross_entropy(labels, head.model(features, training=True))
        per_head.append(loss)
        totals.append(loss + losses.regularization_loss(head.model.losses))
      total = tf.add_n(totals)
    variables = [head.model.trainable_variables for head in self.heads]
    gradients = tape.gradient(total, [v for vs in variables for v in vs])
    start = 0
    for head, head_variables in zip(self.heads, variables):
      head_gradients = gradients[start:start + len(head_variables)]
      start += len(head_variables)
      head.optimizer.apply_gradients(zip(head_gradients, head_variables))
    return tf.stack(per_head), metrics.count_bad_labels(labels, self.num_classes)

  def _predict_on(self, features, labels):
    """(per-head confusion counts [K, C, C], bad label pixels) of one batch."""
    features = tf.cast(features, tf.float32)
    counts = []
    for head in self.heads:
      logits = losses.logits_at_label_size(head.model(features, training=False), labels)
      predicted = tf.argmax(logits, -1, output_type=tf.int32)
      counts.append(metrics.confusion_counts(labels, predicted, self.num_classes))
    return tf.stack(counts), metrics.count_bad_labels(labels, self.num_classes)

  def in_memory_step(self, features: tf.Tensor, labels: tf.Tensor):
    def step(indices):
      return self._train_on(tf.gather(features, indices), tf.gather(labels, indices))
    return tf.function(step, jit_compile=self.jit)

  def score(self, batches) -> tuple[list, int]:
    """Each head's IOU over the batches, in self.heads order; plus examples scored."""
    k, c = len(self.heads), self.num_classes
    per_batch, count = [], 0
    for features, labels in batches:
      counts, bad_labels = self.predict_on(features, labels)
      guard.check_labels(float(bad_labels), c, f"proxy scoring, example {count}")
      per_batch.append(np.rint(counts.numpy()).astype(np.int64))
      count += len(features)
    matrices = np.sum(per_batch, axis=0) if per_batch else np.zeros((k, c, c), np.int64)
    self.standard_errors = [miou_standard_error([b[i] for b in per_batch]) for i in range(k)]
    return [metrics.iou_from_confusion(m) for m in matrices], count


def _describe(iou) -> dict:
  return dict(miou=iou.miou, pixel_accuracy=iou.pixel_accuracy,
              class_iou=[None if np.isnan(v) else float(v) for v in iou.per_class])


def run_packed_trials(subjects: Sequence[tuple], cache_dir: str, **config) -> list:
  """Trains every (cell, head) of `subjects` side by side; one result per subject, in order:
  its score record (run_proxy_trial's keys, plus pack_size / pack_index / pack_seconds) or
  the exception that failed it. Raises only what fails every member (cache, data, settings).

  A record's `seconds` is the pack's wall time divided by the pack size (the compute it
  used); `step_seconds` is the median time of a step of the whole pack.
  """
  start = time.time()
  cfg = TrialConfig.from_kwargs(**config)
  cache = FeatureCache(cache_dir)
  train, evaluation = cache.role("train"), cache.role("eval")
  task = TrialTask.of(cache, cache_dir)
  train_count = train.count - cfg.holdout_examples
  if train_count < cfg.batch_size:
    raise DpcError(f"cache {cache_dir}: {train.count} train examples minus "
                   f"{cfg.holdout_examples} held out leave fewer than a batch of "
                   f"{cfg.batch_size}")

  keras.backend.clear_session()  # a worker runs pack after pack: drop the last one's graphs
  heads = []
  for index, (cell, head_name) in enumerate(subjects):
    member = _Head(None, head_name)
    heads.append(member)
    try:
      member.cell = _subject(cell, head_name)
      member.model = task.build_model(member.cell, head_name, cfg, name=f"proxy_head_{index}")
      member.record = head_costs(member.model, evaluation.feature_shape)
      member.optimizer = build_optimizer(
          PolyLearningRate(cfg.learning_rate, cfg.steps, cfg.lr_power), cfg.momentum,
          member.model.trainable_variables)
    except DpcError as e:
      member.error, member.training = e, False
  build_seconds = time.time() - start

  holdout = feeding.kept_tensors(train, train_count) if cfg.holdout_examples else None
  in_memory = train.nbytes * train_count / train.count <= cfg.memory_limit_bytes
  if in_memory:
    features, labels = feeding.kept_tensors(train, 0, train_count)
    sampler = feeding.IndexSampler(train_count, cfg.batch_size, cfg.seed)
  else:
    stream = feeding.StreamIterator(feeding.streaming_dataset(
        train, cfg.batch_size, cfg.seed, cfg.shuffle_buffer, stop=train_count))
  eval_batch = cfg.eval_batch_size or cfg.batch_size

  def compile_live():
    live = [h for h in heads if h.training]
    steps = _PackedSteps(live, cfg, task.num_classes)
    if in_memory:
      step_fn = steps.in_memory_step(features, labels)
      return live, steps, lambda: step_fn(sampler.next())
    return live, steps, lambda: steps.train_on(*next(stream))

  train_start = time.time()
  live, steps, next_step = compile_live()
  step_times, step = [], 0
  while live and step < cfg.steps:
    t = time.time()
    head_losses, bad_labels = next_step()
    head_losses = head_losses.numpy()
    step += 1
    step_times.append(time.time() - t)
    guard.check_labels(float(bad_labels), task.num_classes, f"proxy trial pack, step {step}")
    for head, loss in zip(live, head_losses):
      head.losses.append(float(loss))
      head.steps = step
      try:
        guard.check_step(step, float(loss), num_classes=task.num_classes,
                         where=f"proxy trial of {head.name}",
                         advice="lower proxy_trial.learning_rate")
      except NonFiniteLossError as e:
        head.error, head.training = e, False
    if cfg.log_every_steps and step % cfg.log_every_steps == 0:
      logging.info("proxy trial pack of %d: step %d/%d, losses %s", len(live), step, cfg.steps,
                   np.round(head_losses, 4).tolist())
    if holdout is not None and cfg.eval_every and step % cfg.eval_every == 0:
      scored = [h for h in live if h.training]
      if scored:
        ious, _ = _PackedSteps(scored, cfg, task.num_classes).score(
            feeding.batches_of(*holdout, eval_batch))
        for head, iou in zip(scored, ious):
          head.holdout_history.append([step, iou.miou])
          head.best, head.since_best = ((iou.miou, 0) if iou.miou > head.best
                                        else (head.best, head.since_best + 1))
          if cfg.patience and head.since_best >= cfg.patience:
            head.stopped_early, head.training = True, False
    if any(not h.training for h in live):
      live, steps, next_step = compile_live()  # a head left: retrace without it
  train_seconds = time.time() - train_start

  eval_start = time.time()
  finished = [h for h in heads if h.error is None]
  if finished:
    scorer = _PackedSteps(finished, cfg, task.num_classes)
    ious, eval_count = scorer.score(eval_batches(evaluation, cfg))
    for head, iou, error in zip(finished, ious, scorer.standard_errors):
      head.record.update(_describe(iou), eval_examples=eval_count, miou_standard_error=error)
  eval_seconds = time.time() - eval_start

  pack_seconds, k = time.time() - start, len(heads)
  results = []
  for index, head in enumerate(heads):
    if head.error is not None:
      results.append(head.error)
      continue
    tail = head.losses[-max(1, min(20, len(head.losses) // 10)):]
    head.record.update(
        steps=head.steps, seconds=pack_seconds / k, train_seconds=train_seconds / k,
        eval_seconds=eval_seconds / k,
        step_seconds=float(np.median(step_times[1:] or step_times)),
        final_loss=float(np.mean(tail)), initial_loss=head.losses[0],
        stopped_early=head.stopped_early, holdout_miou=head.holdout_history,
        in_memory=in_memory, jit_compile=cfg.jit_compile, seed=cfg.seed,
        train_examples=train_count, pack_size=k, pack_index=index, pack_seconds=pack_seconds,
        phase_seconds={"build": build_seconds, "train": train_seconds, "eval": eval_seconds,
                       "first_step": step_times[0] if step_times else 0.0},
        **subject_fields(head.cell, head.head), cache=cache_fields(cache))
    logging.info("proxy trial %s (pack of %d): mIOU %.4f after %d steps", head.record["cell_text"],
                 k, head.record["miou"], head.steps)
    results.append(head.record)
  return results
