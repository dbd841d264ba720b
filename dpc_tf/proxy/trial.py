"""One proxy trial: train a candidate cell on cached features, score it by validation mIOU.

`run_proxy_trial(cell, cache_dir, **config) -> dict` is a plain module-level function of
picklable arguments, so a search engine can ship `functools.partial(run_proxy_trial,
cache_dir=..., **config)` to worker processes; gin is not consulted here (its state is global
and locked after parsing), the config arrives as keyword arguments.

Early stopping is the paper's: a fixed, short step budget (30K steps instead of training
to convergence). Optionally a held-out tail of the training cache is scored every
`eval_every` steps and training stops after `patience` evaluations without improvement.
What the trial trains on (crop, output stride, classes) is read from the cache's manifest,
never configured twice.

Continuation (successive halving's rungs): `save_to=DIR` saves the head, its optimizer
state and step counter after training (head_state.py); `start_from=DIR` continues such a
state to `steps` (the total to reach, not steps to add). `schedule_steps` is the poly
schedule's horizon (0: steps): set it to the top rung's steps on every rung and a run
continued 100 -> 300 equals one uninterrupted 300-step run (same data order, dropout draws
and rates; tests/proxy checks the weights). Every rung is scored on the eval role.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Optional, Sequence

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from dpc_tf import costs, models, search_space
from dpc_tf.data import metrics
from dpc_tf.errors import DpcError
from dpc_tf.proxy import feeding, head_state
from dpc_tf.proxy.cache import CacheError, FeatureCache
from dpc_tf.training import guard, losses
from dpc_tf.training.optimizer import build_optimizer
from dpc_tf.training.schedule import PolyLearningRate

# Chosen by measurement on the 2-core CPU (dpc_tf/benchmarks/proxy.py, docs/BENCHMARKS.md):
# XLA makes the proxy train step 5-30x SLOWER there (released cell, 256 filters: 198 ms ->
# 3.9 s on MobileNet-v2 features; its CPU code for the dropout RNG and the resize gradient
# is slow), though it speeds up inference alone. Measure again before enabling it on a GPU.
DEFAULT_JIT_COMPILE = False


@dataclasses.dataclass(frozen=True)
class TrialConfig:
  """Proxy-trial settings. Defaults are the paper's full-size proxy (30K steps, batch 8)."""
  steps: int = 30000
  batch_size: int = 8
  learning_rate: float = 0.01
  lr_power: float = 0.9           # poly: lr * (1 - step / horizon) ** lr_power
  schedule_steps: int = 0         # the poly horizon; 0: steps (halving: the top rung's)
  momentum: float = 0.9
  weight_decay: float = 4e-5
  filters: int = 256              # width of every branch and of the projection
  dropout: float = 0.1
  bn_momentum: float = 0.9997     # lower it for short runs: moving stats must converge
  seed: int = 0
  deterministic: bool = True      # tf op determinism (process-wide once enabled)
  jit_compile: bool = DEFAULT_JIT_COMPILE
  memory_limit_bytes: int = 4 << 30   # train features held in memory up to this, else streamed
  shuffle_buffer: int = 256       # streaming only
  eval_batch_size: int = 0        # 0: batch_size
  max_eval_examples: int = 0      # 0: the whole eval role
  holdout_examples: int = 0       # tail of the train role held out for patience
  eval_every: int = 0             # steps between hold-out scores (0: never)
  patience: int = 0               # hold-out scores without improvement before stopping (0: off)
  log_every_steps: int = 0
  # Cells a search worker trains side by side in one compiled step (dpc_tf/proxy/packed.py);
  # run_proxy_trial itself always trains one.
  cells_per_program: int = 1

  @classmethod
  def from_kwargs(cls, **kwargs) -> "TrialConfig":
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
      raise DpcError(f"unknown proxy trial setting(s) {', '.join(unknown)}; known: "
                      f"{', '.join(sorted(known))}")
    config = cls(**kwargs)
    for name in ("steps", "batch_size", "cells_per_program"):
      if getattr(config, name) < 1:
        raise DpcError(f"proxy trial setting {name} must be >= 1, got {getattr(config, name)}")
    if config.schedule_steps and config.schedule_steps < config.steps:
      raise DpcError(f"proxy trial setting schedule_steps ({config.schedule_steps}) must be 0 "
                     f"or >= steps ({config.steps})")
    if config.patience and not (config.eval_every and config.holdout_examples):
      raise DpcError("proxy trial setting patience needs eval_every > 0 and "
                       "holdout_examples > 0")
    return config


def head_costs(model: keras.Model, feature_shape: Sequence[int]) -> dict:
  """Params / multiply-adds at one feature map: the paper's branch convention plus totals."""
  report = costs.model_costs(model, tuple(feature_shape), *models.model_parts(model))
  return {"branch_params": report["head"]["branch_params"],
          "branch_madds": report["head"]["branch_madds"],
          "head_params": report["head"]["trainable_params"],
          "head_madds": report["head"]["madds"],
          "params": report["total"]["trainable_params"],
          "madds": report["total"]["madds"],
          "cost_feature_shape": list(feature_shape)}


def trial_subject(cell, head: str) -> Optional[search_space.Cell]:
  """The cell a trial of `head` trains (None for ASPP), refused as run_proxy_trial and
  every packed member refuse it."""
  if head not in ("dpc", "aspp"):
    raise DpcError(f"proxy trial head must be 'dpc' or 'aspp', got {head!r}")
  if head == "aspp" and cell is not None:
    raise DpcError("the proxy trial's ASPP head takes no cell (cell must be None)")
  return search_space.as_cell(cell) if head == "dpc" else None


def head_identity(head: str, cell: Optional[search_space.Cell], config: TrialConfig) -> dict:
  """What a saved head state must match to be continued (head_state.identity)."""
  return head_state.identity(head, cell.fingerprint() if cell else None,
                             config.schedule_steps or config.steps, config.seed)


def head_optimizer(config: TrialConfig, variables) -> keras.optimizers.Optimizer:
  """The training core's optimizer with the poly schedule over schedule_steps (or steps)."""
  return build_optimizer(
      PolyLearningRate(config.learning_rate, config.schedule_steps or config.steps,
                       config.lr_power), config.momentum, variables)


class _Trainer:
  """Model, optimizer and compiled steps of one trial (the training core's loss, schedule,
  optimizer and counts; the guard runs in run_proxy_trial's loop)."""

  def __init__(self, model: keras.Model, config: TrialConfig, num_classes: int):
    self.model, self.config, self.num_classes = model, config, num_classes
    self.optimizer = head_optimizer(config, model.trainable_variables)
    jit = config.jit_compile
    self.train_on = tf.function(self._train_on, jit_compile=jit)
    self.predict_on = tf.function(self._predict_on, jit_compile=jit, reduce_retracing=True)

  def _train_on(self, features, labels):
    """One step; returns (mean cross-entropy, pixels breaking the label rule)."""
    features = tf.cast(features, tf.float32)
    with tf.GradientTape() as tape:
      logits = self.model(features, training=True)
      loss = losses.mean_cross_entropy(labels, logits)
      total = loss + losses.regularization_loss(self.model.losses)
    variables = self.model.trainable_variables
    self.optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
    return loss, metrics.count_bad_labels(labels, self.num_classes)

  def _predict_on(self, features, labels):
    """(confusion counts, pixels breaking the label rule) of one batch at the labels' size."""
    logits = losses.logits_at_label_size(self.model(tf.cast(features, tf.float32),
                                                    training=False), labels)
    predicted = tf.argmax(logits, -1, output_type=tf.int32)
    return (metrics.confusion_counts(labels, predicted, self.num_classes),
            metrics.count_bad_labels(labels, self.num_classes))

  def in_memory_step(self, features: tf.Tensor, labels: tf.Tensor):
    """A compiled step that gathers its batch from tensors already in memory."""
    def step(indices):
      return self._train_on(tf.gather(features, indices), tf.gather(labels, indices))
    return tf.function(step, jit_compile=self.config.jit_compile)

  def score(self, batches) -> tuple[float, list, float, int]:
    """(mIOU, per-class IOU with None where unseen, pixel accuracy, examples scored); the
    mIOU's standard error over the eval examples is kept in self.last_standard_error."""
    per_batch, count = [], 0
    for features, labels in batches:
      counts, bad_labels = self.predict_on(features, labels)
      guard.check_labels(float(bad_labels), self.num_classes, f"proxy scoring, example {count}")
      per_batch.append(np.rint(counts.numpy()).astype(np.int64))
      count += len(features)
    matrix = np.sum(per_batch, axis=0) if per_batch else np.zeros(
        (self.num_classes, self.num_classes), np.int64)
    self.last_standard_error = miou_standard_error(per_batch)
    iou = metrics.iou_from_confusion(matrix)
    class_iou = [None if np.isnan(v) else float(v) for v in iou.per_class]
    return iou.miou, class_iou, iou.pixel_accuracy, count


def miou_standard_error(per_batch: Sequence[np.ndarray]) -> Optional[float]:
  """Jackknife standard error of the mIOU over eval batches (leave one batch out): how much
  the score would move with another eval sample of the same size, which is what says how
  many eval examples a ranking needs (None with fewer than 2 batches)."""
  n = len(per_batch)
  if n < 2:
    return None
  total = np.sum(per_batch, axis=0)
  leave_one_out = np.array([metrics.iou_from_confusion(total - m).miou for m in per_batch])
  return float(np.sqrt((n - 1) / n * np.sum((leave_one_out - leave_one_out.mean()) ** 2)))


def _batches(features: np.ndarray, labels: np.ndarray, batch_size: int):
  for i in range(0, len(features), batch_size):
    yield features[i:i + batch_size], labels[i:i + batch_size]


def _require(mapping: dict, key: str, where: str):
  if key not in mapping:
    raise CacheError(f"{where} lacks {key!r}, which a proxy trial needs")
  return mapping[key]


@dataclasses.dataclass(frozen=True)
class TrialTask:
  """What the cache fixes for every head trained on it (read from its manifest)."""
  num_classes: int
  channels: int
  crop: Sequence[int]
  output_stride: int

  @classmethod
  def of(cls, cache: FeatureCache, cache_dir: str) -> "TrialTask":
    train, where = cache.role("train"), f"cache {cache_dir} manifest"
    return cls(int(_require(cache.identity, "num_classes", where)), train.feature_shape[-1],
               _require(train.settings, "crop", where + " (train settings)"),
               int(_require(cache.identity, "output_stride", where)))

  def build_model(self, cell, head: str, cfg: TrialConfig, name: str = "proxy_head"
                  ) -> keras.Model:
    """The head with its initial weights drawn from cfg.seed alone: built right after
    seeding, so a cell starts from the same weights whatever was built before it."""
    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic:
      tf.config.experimental.enable_op_determinism()
    widths = dict(filters=cfg.filters, bn_momentum=cfg.bn_momentum)
    if head == "dpc":
      widths["projection_filters"] = cfg.filters  # ASPP's projection is `filters` wide already
    return models.build_head_model(
        self.num_classes, self.channels, head=head, cell=cell, crop_size=self.crop,
        output_stride=self.output_stride, weight_decay=cfg.weight_decay, dropout=cfg.dropout,
        name=name, **widths)


def training_examples(count: int, cfg: TrialConfig, cache_dir: str) -> int:
  """The cached train examples a head trains on (less the held-out tail); DpcError where
  they do not fill one batch."""
  usable = count - cfg.holdout_examples
  if usable < cfg.batch_size:
    raise DpcError(f"cache {cache_dir}: {count} train examples minus {cfg.holdout_examples} "
                   f"held out leave fewer than a batch of {cfg.batch_size}")
  return usable


def eval_batches(evaluation, cfg: TrialConfig):
  """The eval role's first max_eval_examples in batches: from memory (kept for the next
  trial) when it fits under memory_limit_bytes, else read shard by shard."""
  batch, stop = cfg.eval_batch_size or cfg.batch_size, cfg.max_eval_examples or None
  if evaluation.nbytes <= cfg.memory_limit_bytes:
    return feeding.kept_batches(evaluation, batch, stop=stop)
  return feeding.eval_batches(evaluation, batch, stop=stop)


def subject_fields(cell, head: str) -> dict:
  return dict(head=head, cell=cell.to_json() if cell else None,
              cell_text=cell.text if cell else head,
              cell_fingerprint=cell.fingerprint() if cell else None)


def cache_fields(cache: FeatureCache) -> dict:
  return {k: cache.identity.get(k) for k in ("backbone", "checkpoint_fingerprint", "dataset",
                                             "output_stride")}


def run_proxy_trial(cell, cache_dir: str, head: str = "dpc", start_from: Optional[str] = None,
                    save_to: Optional[str] = None, **config) -> dict:
  """Trains `cell` on the cache's train role, returns its score record (see module doc).

  head='aspp' trains DeepLab's ASPP head instead (cell must be None): the search's baseline,
  scored by the same recipe. start_from / save_to: continue from / save the head's training
  state (folders, head_state.py); config['steps'] is then the step count to reach.

  Record keys: miou, class_iou, pixel_accuracy, branch_params, branch_madds, head_params,
  head_madds, params, madds, cost_feature_shape, steps, seconds, train_seconds,
  eval_seconds, step_seconds, final_loss, initial_loss, stopped_early, holdout_miou,
  schedule_steps, resumed_from_steps,
  in_memory, jit_compile, seed, train_examples, eval_examples, cell, cell_text,
  cell_fingerprint, cache (backbone / checkpoint / dataset identity).
  """
  start = time.time()
  cfg = TrialConfig.from_kwargs(**config)
  cell = trial_subject(cell, head)
  cache = FeatureCache(cache_dir)
  train, evaluation = cache.role("train"), cache.role("eval")
  task = TrialTask.of(cache, cache_dir)
  num_classes = task.num_classes

  state = head_identity(head, cell, cfg)
  resumed = head_state.check(start_from, state, cfg.steps) if start_from else None

  keras.backend.clear_session()  # a worker runs trial after trial: drop the last one's graph
  model = task.build_model(cell, head, cfg)
  phases = {"build": time.time() - start}
  record = head_costs(model, evaluation.feature_shape)
  phases["costs"] = time.time() - start - phases["build"]
  trainer = _Trainer(model, cfg, num_classes)
  checkpoint = head_state.checkpoint_of(model, trainer.optimizer)
  if start_from:
    head_state.restore(checkpoint, start_from)

  train_count = training_examples(train.count, cfg, cache_dir)
  holdout = train.load(train_count) if cfg.holdout_examples else None
  in_memory = train.nbytes * train_count / train.count <= cfg.memory_limit_bytes
  if in_memory:
    features, labels = feeding.kept_tensors(train, 0, train_count)
    step_fn = trainer.in_memory_step(features, labels)
    sampler = feeding.IndexSampler(train_count, cfg.batch_size, cfg.seed)
    for _ in range(resumed or 0):  # a continuation sees the batches an unbroken run would
      sampler.next()
    next_step = lambda: step_fn(sampler.next())
  else:
    stream = feeding.StreamIterator(feeding.streaming_dataset(
        train, cfg.batch_size, cfg.seed, cfg.shuffle_buffer, stop=train_count))
    for _ in range(resumed or 0):
      next(stream)
    next_step = lambda: trainer.train_on(*next(stream))
  eval_batch = cfg.eval_batch_size or cfg.batch_size

  phases["load"] = time.time() - start - phases["build"] - phases["costs"]
  train_start = time.time()
  losses_seen, step_times, holdout_history = [], [], []
  best, since_best, stopped_early, step = -1.0, 0, False, resumed or 0
  while step < cfg.steps:
    t = time.time()
    loss, bad_labels = next_step()
    loss = float(loss)
    step += 1
    step_times.append(time.time() - t)
    if step == 1:
      phases["first_step"] = step_times[0]  # tracing + the step
    losses_seen.append(loss)
    guard.check_step(step, loss, num_classes=num_classes, bad_labels=float(bad_labels),
                     where=f"proxy trial of {f'cell {cell.text}' if cell else head}",
                     advice="lower proxy_trial.learning_rate")
    if cfg.log_every_steps and step % cfg.log_every_steps == 0:
      logging.info("proxy trial: step %d/%d, loss %.4f", step, cfg.steps, loss)
    if holdout is not None and cfg.eval_every and step % cfg.eval_every == 0:
      score = trainer.score(_batches(*holdout, eval_batch))[0]
      holdout_history.append([step, score])
      best, since_best = (score, 0) if score > best else (best, since_best + 1)
      if cfg.patience and since_best >= cfg.patience:
        stopped_early = True
        break
  train_seconds = time.time() - train_start
  if save_to:
    head_state.save(checkpoint, save_to, dict(state, steps=step))

  eval_start = time.time()
  miou, class_iou, accuracy, eval_count = trainer.score(eval_batches(evaluation, cfg))
  eval_seconds = time.time() - eval_start
  tail = losses_seen[-max(1, min(20, len(losses_seen) // 10)):]
  phases.update(train=train_seconds, eval=eval_seconds)
  record.update(
      phase_seconds=phases, miou=miou, miou_standard_error=trainer.last_standard_error,
      class_iou=class_iou, pixel_accuracy=accuracy, steps=step,
      seconds=time.time() - start, train_seconds=train_seconds, eval_seconds=eval_seconds,
      step_seconds=float(np.median(step_times[1:] or step_times)),
      final_loss=float(np.mean(tail)), initial_loss=losses_seen[0], stopped_early=stopped_early,
      holdout_miou=holdout_history, in_memory=in_memory, jit_compile=cfg.jit_compile,
      schedule_steps=cfg.schedule_steps or cfg.steps, resumed_from_steps=resumed,
      seed=cfg.seed, train_examples=train_count, eval_examples=eval_count,
      **subject_fields(cell, head), cache=cache_fields(cache))
  logging.info("proxy trial %s: mIOU %.4f after %d steps in %.1fs", record["cell_text"], miou, step,
               record["seconds"])
  return record
