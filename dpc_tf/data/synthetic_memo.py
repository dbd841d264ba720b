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
"""

from __future__ import annotations

import collections
import os
import threading

import numpy as np

from dpc_tf.data import synthetic

ENV_VARIABLE = "DPC_TF_SYNTHETIC_MEMO_MB"
DEFAULT_MB = 512

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
    image, mask = synthetic.generate_example(config, split, key[2])
    if budget:
      _keep(key, image, mask, budget)
    return image, mask
  finally:
    if budget:
      with _lock:
        _making.pop(key).set()


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
