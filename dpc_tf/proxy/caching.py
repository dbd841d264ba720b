"""The feature-caching pass: a frozen backbone runs once over a split, its output goes to disk.

This is the generic engine: it takes a built Keras backbone and a tf.data stream of
(image, label) examples, whatever made them. dpc_tf.proxy.cache_features wires it to the
configured backbone, checkpoint and dataset.

Streaming: examples are batched through the backbone and buffered until a shard is full,
so memory holds at most one shard plus a batch, whatever the dataset size. Resuming: the
stream is deterministic, so a resumed pass skips the examples of the shards the manifest
already lists (skip() still runs the input pipeline for them, which keeps any random
augmentation in step, but not the backbone) and appends from there.
"""

from __future__ import annotations

import hashlib
import time
import weakref
from typing import Callable, Optional

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from dpc_tf.data.specs import IGNORE_LABEL
from dpc_tf.errors import DpcError
from dpc_tf.proxy import cache as cache_lib

LABEL_RESOLUTIONS = ("crop", "features")


def backbone_fingerprint(model: keras.Model) -> str:
  """SHA-256 (16 hex digits) over every variable's path, shape, dtype and value.

  It identifies the weights themselves, not a file: the same weights loaded from an .h5 file
  or a TF checkpoint get the same fingerprint, and any retraining changes it.
  """
  digest = hashlib.sha256()
  for variable in sorted(model.weights, key=lambda v: v.path):
    value = np.ascontiguousarray(keras.ops.convert_to_numpy(variable))
    digest.update(f"{variable.path}|{value.shape}|{value.dtype}|".encode())
    digest.update(value.tobytes())
  return digest.hexdigest()[:16]


def _features_of(output) -> tf.Tensor:
  if isinstance(output, dict):
    if "features" not in output:
      raise ValueError(f"the backbone returned keys {sorted(output)}, without 'features'")
    return output["features"]
  return output


def _labels_at(labels: tf.Tensor, size, resolution: str) -> tf.Tensor:
  """Labels as stored: at crop resolution as given, or nearest-downsampled to the features.

  'features' is the release's upsample_logits=False mode (nearest with align_corners), a
  cheaper but different loss: small objects vanish from the downsampled labels.
  """
  if resolution == "crop":
    return labels
  return tf.raw_ops.ResizeNearestNeighbor(images=labels, size=size, align_corners=True,
                                          half_pixel_centers=False)


_FORWARD: "weakref.WeakKeyDictionary[keras.Model, tf.types.experimental.GenericFunction]" = \
    weakref.WeakKeyDictionary()


def _forward(backbone: keras.Model):
  """The backbone's inference function, traced once per backbone (roles and calls share it)."""
  if backbone not in _FORWARD:
    model = weakref.ref(backbone)  # a strong reference in the value would keep the key alive
    _FORWARD[backbone] = tf.function(lambda x: _features_of(model()(x, training=False)),
                                     reduce_retracing=True)
  return _FORWARD[backbone]


class _Progress:
  """An absl log line every `every` seconds: done/total, rate, ETA."""

  def __init__(self, name: str, done: int, total: Optional[int], every: float):
    self.name, self.done, self.total, self.every = name, done, total, every
    self.start_done, self.start = done, time.time()
    self.last = self.start

  def update(self, n: int, force: bool = False) -> None:
    self.done += n
    now = time.time()
    if not force and now - self.last < self.every:
      return
    self.last = now
    rate = (self.done - self.start_done) / max(now - self.start, 1e-9)
    if self.total:
      eta = (self.total - self.done) / rate if rate > 0 else float("inf")
      logging.info("caching %s: %d/%d examples (%.1f%%), %.1f ex/s, ETA %.0fs", self.name,
                   self.done, self.total, 100.0 * self.done / self.total, rate, eta)
    else:
      logging.info("caching %s: %d examples, %.1f ex/s", self.name, self.done, rate)


def _check_representable(exact: np.ndarray, stored: np.ndarray, where: str) -> None:
  """Refuses features the storage dtype cannot hold: overflow, or mostly flushed to zero."""
  if not np.isfinite(stored).all():
    raise cache_lib.CacheError(f"{where}: backbone features overflow {stored.dtype} (max |x| = "
                               f"{np.abs(exact).max():.4g}); cache with dtype float32")
  nonzero = exact != 0
  lost = np.count_nonzero(nonzero & (stored == 0))
  if lost > 0.01 * max(np.count_nonzero(nonzero), 1):
    raise cache_lib.CacheError(
        f"{where}: {lost} of {np.count_nonzero(nonzero)} nonzero feature values underflow to 0 "
        f"in {stored.dtype} (max |x| = {np.abs(exact).max():.3g}): is the backbone random with "
        f"uncalibrated batch norm? Otherwise cache with dtype float32")


def full_settings(settings: dict, dtype: str, label_resolution: str, shard_size: int) -> dict:
  """A role's settings as the manifest records them: the caller's plus how they are stored."""
  return {**settings, "dtype": np.dtype(dtype).name, "label_resolution": label_resolution,
          "shard_size": shard_size}


def cache_role(cache_dir: str, identity: dict, role: str, settings: dict,
               backbone: keras.Model, examples: tf.data.Dataset, *, batch_size: int = 8,
               shard_size: int = 64, dtype: str = "float16", label_resolution: str = "crop",
               num_examples: Optional[int] = None, extra: Optional[dict] = None,
               log_every_seconds: float = 10.0,
               on_shard: Optional[Callable[[int], None]] = None) -> dict:
  """Runs `backbone` over `examples` (unbatched (image, label)) into role `role` of the cache.

  `identity` (backbone, checkpoint fingerprint, dataset, ...) and `settings` (this role's
  split, crop, views, ...) must match what the cache holds, else CacheMismatchError. A
  complete role is reused as is. Returns the role's manifest entry.
  """
  if label_resolution not in LABEL_RESOLUTIONS:
    raise DpcError(f"label_resolution must be one of {LABEL_RESOLUTIONS}, got "
                     f"{label_resolution!r}")
  if shard_size < 1 or batch_size < 1:
    raise DpcError(f"shard_size and batch_size must be >= 1, got {shard_size}, {batch_size}")
  np_dtype = np.dtype(dtype)
  settings = full_settings(settings, dtype, label_resolution, shard_size)
  with cache_lib.writer_lock(cache_dir):
    writer = cache_lib.RoleWriter(cache_dir, identity, role, settings)
    if writer.complete:
      logging.info("cache %s: role %s is complete (%d examples), reusing it", cache_dir, role,
                   writer.entry["count"])
      return writer.entry
    skip = writer.done_examples
    if skip:
      logging.info("cache %s: resuming role %s after %d finished shards (%d examples)",
                   cache_dir, role, writer.done_shards, skip)
    # Batches start at multiples of batch_size counted from the stream's start, also after a
    # resume, so the backbone sees the batches an uninterrupted pass would (convolutions may
    # round differently for other batch contents); the few examples of the first batch that
    # a finished shard already holds are dropped after the backbone.
    aligned = skip - skip % batch_size
    drop = skip - aligned
    stream = examples.skip(aligned).batch(batch_size).prefetch(2)
    forward = _forward(backbone)
    progress = _Progress(role, skip, num_examples, log_every_seconds)
    buffered_f, buffered_l, buffered = [], [], 0

    def flush(n: int) -> None:
      nonlocal buffered_f, buffered_l, buffered
      features = np.concatenate(buffered_f)
      labels = np.concatenate(buffered_l)
      name = writer.write_shard(features[:n], labels[:n])
      buffered_f, buffered_l, buffered = [features[n:]], [labels[n:]], len(features) - n
      logging.debug("cache %s: wrote %s", cache_dir, name)
      if on_shard is not None:
        on_shard(writer.done_shards)

    for images, labels in stream:
      features = forward(tf.cast(images, tf.float32))
      stored = tf.cast(features, np_dtype.name).numpy()
      _check_representable(features.numpy(), stored, f"cache {cache_dir}: role {role}")
      labels = _labels_at(tf.cast(labels, tf.int32), tf.shape(features)[1:3], label_resolution)
      labels = labels.numpy()
      if drop:
        stored, labels, drop = stored[drop:], labels[drop:], 0
      if labels.min() < 0 or labels.max() > IGNORE_LABEL:
        raise cache_lib.CacheError(f"cache {cache_dir}: role {role}: labels outside 0..255 "
                                   f"(min {labels.min()}, max {labels.max()})")
      buffered_f.append(stored)
      buffered_l.append(labels.astype(np.uint8))
      buffered += len(stored)
      progress.update(len(stored))
      while buffered >= shard_size:
        flush(shard_size)
    if buffered:
      flush(buffered)
    progress.update(0, force=True)
    writer.finish(extra)
    logging.info("cache %s: role %s complete: %d examples in %d shards", cache_dir, role,
                 writer.entry["count"], writer.done_shards)
    return writer.entry
