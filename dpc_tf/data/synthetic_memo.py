"""Generated dpc_synthetic examples kept in memory, per process, so each is made once.

On-the-fly dpc_synthetic costs about 10-20 ms of Python per example (synthetic.py), paid by
every pipeline that reads it: a 600-step pretraining at batch 8 generates its 1,536 training
images three times over, and a search's re-rank worker trains model after model on the same
images. The generator is a pure function of (config, split, index), so a generated example
can be reused exactly; this memo does that, least recently used first out, within a byte
budget (the default config's whole train + validation set, 1,792 examples, is 0.47 GB at
uint8 and fits the default 512 MiB).

DPC_TF_SYNTHETIC_MEMO_MB sets the budget in MiB (0 turns the memo off). The arrays handed out
are shared and read-only; tf.numpy_function copies them into tensors.

Between processes: with DPC_TF_SYNTHETIC_EXAMPLES_DIR set, an example not in the memo is
read from that folder, or made and written there, so the processes of one job make each
example once between them (a search sets it for its stages and workers: its re-rank workers
had each spent ~36 s of CPU generating what stage (a) had made). Files are keyed by the
config and a hash of synthetic.py (a changed generator never serves old examples), written
atomically; one that is unreadable or of the wrong shape is made and written again. It is a
cache: a write that fails (full disk) logs one warning and the job goes on without it.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import io
import os
import threading

from absl import logging
import numpy as np

from dpc_tf.data import synthetic
from dpc_tf.errors import DpcError, one_line
from dpc_tf.utils import files

ENV_VARIABLE = "DPC_TF_SYNTHETIC_MEMO_MB"
DIR_VARIABLE = "DPC_TF_SYNTHETIC_EXAMPLES_DIR"
DEFAULT_MB = 512
_write_failed = [False]  # warned once; no more writes in this process

_lock = threading.Lock()
_examples: "collections.OrderedDict[tuple, tuple[np.ndarray, np.ndarray]]" = \
    collections.OrderedDict()
_held = [0]  # bytes in _examples
# Examples being made, and the event their maker sets: tf.data's map threads can ask for
# the same example at once (an epoch's last and the next epoch's first); the later ones
# wait for the first instead of making it again.
_making: dict[tuple, threading.Event] = {}


def budget_bytes() -> int:
  """The memo's budget from DPC_TF_SYNTHETIC_MEMO_MB (default 512 MiB); a bad value is one
  line naming the variable."""
  text = os.environ.get(ENV_VARIABLE, "").strip()
  if not text:
    return DEFAULT_MB * 2**20
  try:
    megabytes = float(text)
  except ValueError:
    megabytes = -1.0
  if megabytes < 0:
    raise ValueError(f"{ENV_VARIABLE}={text!r}: expected a number of MiB >= 0 (0 turns the "
                     "synthetic example memo off)")
  return int(megabytes * 2**20)


def example(config: synthetic.SyntheticConfig, split: str,
            index: int) -> tuple[np.ndarray, np.ndarray]:
  """synthetic.generate_example(config, split, index), made once per process while it fits
  the budget; the arrays are read-only."""
  key = (config, split, int(index))
  budget = budget_bytes()
  while budget:
    with _lock:
      found = _examples.get(key)
      if found is not None:
        _examples.move_to_end(key)
        return found
      making = _making.get(key)
      if making is None:
        _making[key] = threading.Event()
        break
    making.wait()  # then take it from the memo (or make it, if it did not fit or failed)
  try:
    image, mask = _made_or_shared(config, split, key[2])
    if budget:
      _keep(key, image, mask, budget)
    return image, mask
  finally:
    if budget:
      with _lock:
        _making.pop(key).set()


def _made_or_shared(config: synthetic.SyntheticConfig, split: str,
                    index: int) -> tuple[np.ndarray, np.ndarray]:
  """The example from DPC_TF_SYNTHETIC_EXAMPLES_DIR if it holds it, else generated (and
  written there when the variable is set)."""
  root = os.environ.get(DIR_VARIABLE, "").strip()
  if not root:
    return synthetic.generate_example(config, split, index)
  path = os.path.join(root, f"{config.name}-{_fingerprint(config)}", split, f"{index:06d}.npy")
  try:
    both = np.load(path, allow_pickle=False)
    if both.dtype == np.uint8 and both.shape == (config.height, config.width, 4):
      return np.ascontiguousarray(both[..., :3]), np.ascontiguousarray(both[..., 3:])
  except (OSError, ValueError, EOFError):
    pass  # not there yet, or damaged: made and written (again) below
  image, mask = synthetic.generate_example(config, split, index)
  if not _write_failed[0]:
    _write_shared(path, np.concatenate([image, mask], axis=-1))
  return image, mask


@functools.lru_cache(maxsize=None)
def _fingerprint(config: synthetic.SyntheticConfig) -> str:
  """Identifies the examples a config makes: its fields and the generator's source."""
  with open(synthetic.__file__, "rb") as f:
    source = f.read()
  return hashlib.sha256(source + repr(config).encode()).hexdigest()[:16]


def _write_shared(path: str, both: np.ndarray) -> None:
  """Atomic, umask respected, no fsync (files.write_bytes_atomic; a cache); a failure warns
  once and stops this process' writes."""
  buffer = io.BytesIO()
  np.save(buffer, both, allow_pickle=False)
  try:
    files.write_bytes_atomic(path, buffer.getvalue(), durable=False)
  except (OSError, DpcError) as e:
    _write_failed[0] = True
    logging.warning("cannot share generated dpc_synthetic examples in %s (%s); this process "
                    "generates its own from now on", os.path.dirname(os.path.dirname(path)),
                    one_line(e))


def _keep(key: tuple, image: np.ndarray, mask: np.ndarray, budget: int) -> None:
  """Stores an example (read-only from now on), dropping least recently used ones to stay
  within the budget; one larger than the budget is not kept."""
  size = image.nbytes + mask.nbytes
  if size > budget:
    return
  image.flags.writeable = False
  mask.flags.writeable = False
  with _lock:
    _examples[key] = (image, mask)
    _held[0] += size
    while _held[0] > budget:
      _, (old_image, old_mask) = _examples.popitem(last=False)
      _held[0] -= old_image.nbytes + old_mask.nbytes


def clear() -> None:
  """Drops every kept example (tests)."""
  with _lock:
    _examples.clear()
    _held[0] = 0


def held() -> tuple[int, int]:
  """(examples kept, bytes kept)."""
  with _lock:
    return len(_examples), _held[0]
