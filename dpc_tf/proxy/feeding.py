"""Getting cached features to the train step without it waiting: in memory, or streamed.

In memory (the role fits under the trial's byte limit): the whole role is one tensor and
the compiled train step gathers its batch from it by index, so no input pipeline runs at
all; the indices are seeded epoch permutations. Streamed (it does not fit): shards are
read in a seeded random order by a generator feeding a tf.data shuffle buffer, batched and
prefetched, so shard reads and checksums overlap the steps. Either way a shard whose bytes
do not match the manifest stops the trial with CorruptShardError.
"""

from __future__ import annotations

import os
import re
from typing import Iterator, Optional

import numpy as np
import tensorflow as tf

from dpc_tf.errors import DpcError
from dpc_tf.proxy.cache import CachedRole, CorruptShardError

_CORRUPT = re.compile(r"CorruptShardError: (shard [^\n]+)")


class IndexSampler:
  """Batches of example indices: seeded epoch permutations, epochs chained without gaps."""

  def __init__(self, count: int, batch_size: int, seed: int):
    if count < batch_size:
      raise DpcError(f"the training set holds {count} examples, fewer than one batch of "
                       f"{batch_size}")
    self.count, self.batch_size = count, batch_size
    self.rng = np.random.RandomState(seed)
    self.pending = np.empty((0,), np.int32)

  def next(self) -> np.ndarray:
    while len(self.pending) < self.batch_size:
      self.pending = np.concatenate([self.pending,
                                     self.rng.permutation(self.count).astype(np.int32)])
    batch, self.pending = self.pending[:self.batch_size], self.pending[self.batch_size:]
    return batch


def _examples(role: CachedRole, stop: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Examples [0, stop) of a role forever: each epoch visits shards in a new random order."""
  rng = np.random.RandomState(seed)
  offsets = np.cumsum([0] + [s["count"] for s in role.shards])
  usable = [i for i in range(len(role.shards)) if offsets[i] < stop]
  while True:
    for index in rng.permutation(usable):
      features, labels = role.read_shard(index)
      keep = min(len(features), stop - offsets[index])
      for j in rng.permutation(keep):
        yield features[j], labels[j]


def streaming_dataset(role: CachedRole, batch_size: int, seed: int, shuffle_buffer: int,
                      stop: Optional[int] = None) -> tf.data.Dataset:
  """An endless, shuffled, batched, prefetched stream of examples [0, stop) of the role."""
  stop = role.count if stop is None else stop
  signature = (tf.TensorSpec(role.feature_shape, tf.as_dtype(role.feature_dtype)),
               tf.TensorSpec(role.label_shape, tf.uint8))
  dataset = tf.data.Dataset.from_generator(lambda: _examples(role, stop, seed),
                                           output_signature=signature)
  return (dataset.shuffle(shuffle_buffer, seed=seed)
          .batch(batch_size, drop_remainder=True)
          .prefetch(tf.data.AUTOTUNE))


class StreamIterator:
  """Iterates a streaming_dataset; a corrupted shard met inside tf.data's generator (which
  wraps it in a multi-line UnknownError) comes out as the one-line CorruptShardError."""

  def __init__(self, dataset: tf.data.Dataset):
    self.iterator = iter(dataset)

  def __iter__(self):
    return self

  def __next__(self):
    try:
      return next(self.iterator)
    except tf.errors.OpError as e:
      found = _CORRUPT.search(e.message or "")
      if found:
        raise CorruptShardError(found.group(1)) from None
      raise


def eval_batches(role: CachedRole, batch_size: int, start: int = 0,
                 stop: Optional[int] = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Examples [start, stop) in order, in batches, one shard in memory at a time."""
  carry_f, carry_l = [], []
  for features, labels in role.iter_range(start, stop):
    carry_f.append(features)
    carry_l.append(labels)
    features, labels = np.concatenate(carry_f), np.concatenate(carry_l)
    n = len(features) - len(features) % batch_size
    for i in range(0, n, batch_size):
      yield features[i:i + batch_size], labels[i:i + batch_size]
    carry_f, carry_l = [features[n:]], [labels[n:]]
  if carry_f and len(carry_f[0]):
    yield carry_f[0], carry_l[0]


# --- what a long-lived worker keeps between trials ------------------------------------------
# A search worker runs trial after trial on the same cache: reading and checksumming the
# train role (142 MB on the synthetic demo) and copying it into a tensor each time was a
# fixed cost of every trial. The arrays are kept per process, keyed by the cache folder, the
# range and the shards' checksums (a cache rewritten in place is read again); one cache at a
# time, so a process that moves to another cache frees the first.
_KEPT: dict = {}


def _key(role: CachedRole, start: int, stop: int) -> tuple:
  return (os.path.realpath(role.cache_dir), role.role, start, stop,
          tuple(s["sha256"] for s in role.shards))


def kept_tensors(role: CachedRole, start: int = 0,
                 stop: Optional[int] = None) -> tuple[tf.Tensor, tf.Tensor]:
  """Examples [start, stop) of the role as (features, labels) tensors, read once per process
  (verified shard reads) and kept for the next trial on the same cache."""
  stop = role.count if stop is None else min(stop, role.count)
  key = _key(role, start, stop)
  if key not in _KEPT:
    if any(k[0] != key[0] for k in _KEPT):
      _KEPT.clear()
    features, labels = role.load(start, stop)
    _KEPT[key] = (tf.convert_to_tensor(features), tf.convert_to_tensor(labels))
  return _KEPT[key]


def forget_kept() -> None:
  """Drops what kept_tensors holds (tests; a worker that must free memory)."""
  _KEPT.clear()


def kept_batches(role: CachedRole, batch_size: int, start: int = 0,
                 stop: Optional[int] = None) -> Iterator[tuple[tf.Tensor, tf.Tensor]]:
  """eval_batches' batches, from the kept tensors (every batch but the last is full)."""
  return batches_of(*kept_tensors(role, start, stop), batch_size)


def batches_of(features, labels, batch_size: int):
  """Consecutive batches of two aligned arrays or tensors (the last one may be short)."""
  for i in range(0, len(features), batch_size):
    yield features[i:i + batch_size], labels[i:i + batch_size]
