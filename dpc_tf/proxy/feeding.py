"""Getting cached features to the train step without it waiting: in memory, or streamed.

In memory (the role fits under the trial's byte limit): the whole role is one tensor and
the compiled train step gathers its batch from it by index, so no input pipeline runs at
all; the indices are seeded epoch permutations. Streamed (it does not fit): shards are
read in a seeded random order by a generator feeding a tf.data shuffle buffer, batched and
prefetched, so shard reads and checksums overlap the steps. Either way a shard whose bytes
do not match the manifest stops the trial with CorruptShardError.
"""

from __future__ import annotations

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
