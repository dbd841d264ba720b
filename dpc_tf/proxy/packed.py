"""Several proxy trials in one compiled program: K heads trained side by side.

`run_packed_trials([(cell, head) or Member, ...], cache_dir, **config)` trains K heads in
one compiled step: their losses are summed into one tape (the gradient of a sum gives each
head exactly its own loss's gradients, since no head reads another's weights), each head has
its own optimizer (momentum slots, step count, schedule) and gets its own score. Small
heads on a small feature map leave most of a step to fixed per-step costs (dispatch, the
batch gather, the host round trip, the guard's scalar read); one program pays them once for
K heads, and on a device with spare width the K heads' ops run in parallel.

Same distribution as one at a time, by construction: each head is built right after seeding
with its seed (`TrialTask.build_model`), so its initial weights and its dropout generator
are those of `run_proxy_trial` with that seed, and it sees the same batch sequence (the
sampler is seeded the same way). What differs is float summation order at most; the tests
check that a head's result does not change when its pack-mates change.

Each head has its own work order (`Member`: steps, schedule_steps, seed, start_from,
save_to: run_proxy_trial's continuation, successive halving's rungs), so fresh first-rung
heads and continued heads share one program. Heads read their batches through lanes: one
seeded batch sequence per (seed, step the head started at), advanced once per step, so a
head continued from step 100 sees batches 101, 102, ... of its seed exactly as it would
alone, while fresh heads of the same seed share one lane (one gather, as before). A head
that reaches its steps leaves the program (the step is retraced without it) and is saved to
its save_to after training; exact, since a head that left is never updated again. Chosen
over masking the finished heads' optimizer steps (one trace, but their forward and backward
passes spent until the last head stops) and over packing only equal-step jobs (a worker call
under successive halving mixes first-rung cells and promotions, which would then run as
several programs).

Failures stay with their head: a head whose loss goes non-finite (or whose cell cannot be
built, or whose start_from cannot be continued, or whose save fails) gets that error as its
result and leaves the pack (the step is retraced without it); the others go on. Errors that
concern the data (bad labels, a corrupt shard, too few examples) fail the whole pack, as they
would fail each trial alone. A head whose held-out score stops improving (`patience`) leaves
the pack the same way, with its record.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional, Sequence, Union

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from dpc_tf import search_space
from dpc_tf.data import metrics
from dpc_tf.errors import DpcError, one_line
from dpc_tf.proxy import feeding, head_state
from dpc_tf.proxy.cache import FeatureCache
from dpc_tf.proxy.trial import (TrialConfig, TrialTask, cache_fields, eval_batches,
                                head_costs, head_identity, head_optimizer,
                                miou_standard_error, subject_fields, training_examples,
                                trial_subject)
from dpc_tf.training import guard, losses
from dpc_tf.training.errors import NonFiniteLossError
from dpc_tf.utils import threads


@dataclasses.dataclass(frozen=True)
class Member:
  """One head of a pack and its own work order; None: the pack's setting. steps, schedule_steps,
  start_from and save_to mean what they mean to run_proxy_trial (steps is the total to reach)."""
  cell: object = None  # a Cell, its text or JSON; None for the ASPP head
  head: str = "dpc"
  steps: Optional[int] = None
  schedule_steps: Optional[int] = None
  seed: Optional[int] = None
  start_from: Optional[str] = None
  save_to: Optional[str] = None

  def config(self, pack: dict) -> TrialConfig:
    """The pack's settings with this member's overrides, checked as run_proxy_trial's are."""
    overrides = {k: getattr(self, k) for k in ("steps", "schedule_steps", "seed")
                 if getattr(self, k) is not None}
    return TrialConfig.from_kwargs(**{**pack, **overrides})


@dataclasses.dataclass
class _Head:
  """One member of the pack and where it stands."""
  member: Member
  cfg: Optional[TrialConfig] = None
  cell: Optional[search_space.Cell] = None
  model: Optional[keras.Model] = None
  optimizer: Optional[keras.optimizers.Optimizer] = None
  checkpoint: Optional[tf.train.Checkpoint] = None
  state: dict = dataclasses.field(default_factory=dict)  # head_state.identity
  start: int = 0  # steps reached before this pack (a continuation's start_from)
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
    return f"cell {self.cell.text}" if self.cell is not None else self.member.head

  @property
  def lane(self) -> tuple[int, int]:
    """Heads of one lane see the same batches: same seed, started at the same step."""
    return self.cfg.seed, self.start

  def set_up(self, task: TrialTask, index: int, feature_shape) -> None:
    """Checks the work order, builds the head (seeded), its optimizer, and restores
    start_from; raises what fails this head alone (DpcError)."""
    member, cfg = self.member, self.cfg
    self.cell = trial_subject(member.cell, member.head)
    self.state = head_identity(member.head, self.cell, cfg)
    if member.start_from:
      self.start = head_state.check(member.start_from, self.state, cfg.steps)
    self.steps = self.start
    self.model = task.build_model(self.cell, member.head, cfg, name=f"proxy_head_{index}")
    self.record = head_costs(self.model, feature_shape)
    self.optimizer = head_optimizer(cfg, self.model.trainable_variables)
    self.checkpoint = head_state.checkpoint_of(self.model, self.optimizer)
    if member.start_from:
      try:
        head_state.restore(self.checkpoint, member.start_from)
      except Exception as e:  # pylint: disable=broad-except  (a bad folder is this head's)
        raise head_state.ContinuationError(
            f"cannot continue from {member.start_from}: {one_line(e)}") from None


def configure_worker() -> None:
  """Sets up a process that trains packs, before its first op: one thread per op
  (utils/threads.py) and no grappler rewriting of its graphs. A pack's step is one graph of
  small ops (about 1,400 per head); grappler spent seconds on it per pack for no faster step:
  packs of the demo's 8 heads, 60 steps, three A/B pairs on 2 cores (2026-12-01): first step
  9-12 s instead of 13-16 s, step medians 0.18-0.19 s both, about 5 s less per pack."""
  threads.configure_for_packs()
  tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})


def _as_member(subject: Union[Member, tuple]) -> Member:
  return subject if isinstance(subject, Member) else Member(*subject)


class _PackedSteps:
  """The compiled train and predict steps of the heads still training; heads read the batch
  of their lane (`lanes[i]`: the index of head i's lane in the step's batches)."""

  def __init__(self, heads: Sequence[_Head], lanes: Sequence[int], cfg: TrialConfig,
               num_classes: int):
    self.heads, self.lanes = list(heads), list(lanes)
    self.num_classes, self.jit = num_classes, cfg.jit_compile
    self.train_on = tf.function(self._train_on, jit_compile=self.jit)
    self.predict_on = tf.function(self._predict_on, jit_compile=self.jit,
                                  reduce_retracing=True)

  def _train_on(self, batches):
    """One step of every head on its lane's (features, labels); returns (per-head mean
    cross-entropy, bad label pixels of every lane's batch)."""
    inputs = [tf.cast(features, tf.float32) for features, _ in batches]
    with tf.GradientTape() as tape:
      per_head, totals = [], []
      for head, lane in zip(self.heads, self.lanes):
        logits = head.model(inputs[lane], training=True)
        loss = losses.mean_cross_entropy(batches[lane][1], logits)
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
    bad_labels = tf.add_n([metrics.count_bad_labels(labels, self.num_classes)
                           for _, labels in batches])
    return tf.stack(per_head), bad_labels

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
    """A compiled step taking one batch of example indices per lane."""
    def step(lane_indices):
      return self._train_on(tuple((tf.gather(features, indices), tf.gather(labels, indices))
                                  for indices in lane_indices))
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


def run_packed_trials(subjects: Sequence[Union[Member, tuple]], cache_dir: str,
                      **config) -> list:
  """Trains every member of `subjects` (a Member, or a (cell, head) tuple: the pack's
  settings) side by side; one result per subject, in order: its score record
  (run_proxy_trial's keys, plus pack_size / pack_index / pack_seconds) or the exception that
  failed it. Raises only what fails every member (cache, data, the pack's settings).

  A record's `seconds` is its share of the pack's wall time (the compute it used: fixed costs
  equally, training by the steps it trained here); `step_seconds` is the median time of a
  step of the whole pack.
  """
  start = time.time()
  cfg = TrialConfig.from_kwargs(**config)
  cache = FeatureCache(cache_dir)
  train, evaluation = cache.role("train"), cache.role("eval")
  task = TrialTask.of(cache, cache_dir)
  train_count = training_examples(train.count, cfg, cache_dir)

  keras.backend.clear_session()  # a worker runs pack after pack: drop the last one's graphs
  heads = [_Head(_as_member(subject)) for subject in subjects]
  for index, head in enumerate(heads):
    try:
      head.cfg = head.member.config(config)
      head.set_up(task, index, evaluation.feature_shape)
    except DpcError as e:
      head.error, head.training = e, False
  build_seconds = time.time() - start

  holdout = feeding.kept_tensors(train, train_count) if cfg.holdout_examples else None
  in_memory = train.nbytes * train_count / train.count <= cfg.memory_limit_bytes
  if in_memory:
    features, labels = feeding.kept_tensors(train, 0, train_count)
  lanes: dict[tuple[int, int], Callable] = {}

  def lane(key: tuple[int, int]) -> Callable:
    """Draws the next batch (in memory: its indices) of the lane (seed, first step)."""
    if key not in lanes:
      seed, skip = key
      if in_memory:
        sampler = feeding.IndexSampler(train_count, cfg.batch_size, seed)
        draw = sampler.next
      else:
        stream = feeding.StreamIterator(feeding.streaming_dataset(
            train, cfg.batch_size, seed, cfg.shuffle_buffer, stop=train_count))
        draw = lambda: next(stream)
      for _ in range(skip):  # a continuation sees the batches an unbroken run would
        draw()
      lanes[key] = draw
    return lanes[key]

  eval_batch = cfg.eval_batch_size or cfg.batch_size

  def compile_live():
    live = [h for h in heads if h.training]
    keys = list(dict.fromkeys(h.lane for h in live))
    steps = _PackedSteps(live, [keys.index(h.lane) for h in live], cfg, task.num_classes)
    draws = [lane(key) for key in keys]
    if in_memory:
      step_fn = steps.in_memory_step(features, labels)
      return live, steps, lambda: step_fn(tuple(draw() for draw in draws))
    return live, steps, lambda: steps.train_on(tuple(draw() for draw in draws))

  train_start = time.time()
  live, steps, next_step = compile_live()
  step_times, step = [], 0
  while live:
    t = time.time()
    head_losses, bad_labels = next_step()
    head_losses = head_losses.numpy()
    step += 1
    step_times.append(time.time() - t)
    guard.check_labels(float(bad_labels), task.num_classes, f"proxy trial pack, step {step}")
    for head, loss in zip(live, head_losses):
      head.losses.append(float(loss))
      head.steps += 1
      try:
        guard.check_step(head.steps, float(loss), num_classes=task.num_classes,
                         where=f"proxy trial of {head.name}",
                         advice="lower proxy_trial.learning_rate")
      except NonFiniteLossError as e:
        head.error, head.training = e, False
    if cfg.log_every_steps and step % cfg.log_every_steps == 0:
      logging.info("proxy trial pack of %d: step %d, losses %s", len(live), step,
                   np.round(head_losses, 4).tolist())
    if holdout is not None and cfg.eval_every:
      scored = [h for h in live if h.training and h.steps % cfg.eval_every == 0]
      if scored:
        ious, _ = _PackedSteps(scored, [], cfg, task.num_classes).score(
            feeding.batches_of(*holdout, eval_batch))
        for head, iou in zip(scored, ious):
          head.holdout_history.append([head.steps, iou.miou])
          head.best, head.since_best = ((iou.miou, 0) if iou.miou > head.best
                                        else (head.best, head.since_best + 1))
          if cfg.patience and head.since_best >= cfg.patience:
            head.stopped_early, head.training = True, False
    for head in live:
      if head.steps >= head.cfg.steps:
        head.training = False  # reached its work order's steps
    if any(not h.training for h in live):
      live, steps, next_step = compile_live()  # a head left: retrace without it
  train_seconds = time.time() - train_start
  for head in heads:
    if head.error is None and head.member.save_to:
      try:
        head_state.save(head.checkpoint, head.member.save_to, dict(head.state, steps=head.steps))
      except DpcError as e:  # a full disk: this head's rung is not saved, so it failed
        head.error = e

  eval_start = time.time()
  finished = [h for h in heads if h.error is None]
  if finished:
    scorer = _PackedSteps(finished, [], cfg, task.num_classes)
    ious, eval_count = scorer.score(eval_batches(evaluation, cfg))
    for head, iou, error in zip(finished, ious, scorer.standard_errors):
      head.record.update(_describe(iou), eval_examples=eval_count, miou_standard_error=error)
  eval_seconds = time.time() - eval_start

  pack_seconds, k = time.time() - start, len(heads)
  # Each head's share: the pack's fixed costs (build, tracing, evaluation) equally, its
  # training in proportion to the steps the head trained here (a continued head or one that
  # left early trained fewer).
  trained = [max(h.steps - h.start, 0) for h in heads]
  train_shares = ([train_seconds * n / sum(trained) for n in trained] if sum(trained)
                  else [train_seconds / k] * k)
  results = []
  for index, head in enumerate(heads):
    if head.error is not None:
      results.append(head.error)
      continue
    tail = head.losses[-max(1, min(20, len(head.losses) // 10)):]
    head.record.update(
        steps=head.steps, seconds=(pack_seconds - train_seconds) / k + train_shares[index],
        train_seconds=train_shares[index],
        eval_seconds=eval_seconds / k,
        step_seconds=float(np.median(step_times[1:] or step_times)),
        final_loss=float(np.mean(tail)), initial_loss=head.losses[0],
        stopped_early=head.stopped_early, holdout_miou=head.holdout_history,
        in_memory=in_memory, jit_compile=cfg.jit_compile, seed=head.cfg.seed,
        schedule_steps=head.state["schedule_steps"], resumed_from_steps=head.start or None,
        train_examples=train_count, pack_size=k, pack_index=index, pack_seconds=pack_seconds,
        phase_seconds={"build": build_seconds, "train": train_seconds, "eval": eval_seconds,
                       "first_step": step_times[0] if step_times else 0.0},
        **subject_fields(head.cell, head.member.head), cache=cache_fields(cache))
    logging.info("proxy trial %s (pack of %d): mIOU %.4f after %d steps", head.record["cell_text"],
                 k, head.record["miou"], head.steps)
    results.append(head.record)
  return results
