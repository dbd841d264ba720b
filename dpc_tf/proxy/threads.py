"""CPU threads of a process that trains packs of heads: one thread per op, several ops at once.

A pack (proxy/packed.py) is K independent chains of small ops on small feature maps (17x17 in
the demo). TensorFlow's default splits each op over every core (intra-op threads = cores),
paying a synchronisation per op that such ops cannot repay, and runs only as many ops at once
as there are cores. With one thread per op and twice as many ops in flight as cores, the
cores run different heads' ops side by side instead. Measured on 2 cores with the demo's
packs of 8 (`python -m dpc_tf.benchmark proxy_throughput`, docs/BENCHMARKS.md): 385
trials/hour against 306 with TensorFlow's default threads, the same scores. Packs only: a
whole-model training step (bigger ops, which intra-op threads do speed up) was slower so.

Only where nothing else decided: TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS set by the
user win (TensorFlow reads them itself), GPU processes keep TensorFlow's default, and a
process whose TensorFlow runtime has already started (threads can no longer change) is left
as it is, with a log line.
"""

from __future__ import annotations

import os
from typing import Optional

from absl import logging

ENV_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def cpu_cores() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except (AttributeError, OSError):
    return os.cpu_count() or 1


def configure_for_packs() -> Optional[tuple[int, int]]:
  """Sets (intra-op, inter-op) = (1, 2 x cores) for this process if nothing else decided;
  returns what it set, or None where it left TensorFlow's threading alone."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  if any(os.environ.get(name) for name in ENV_VARIABLES):
    return None
  if tf.config.list_physical_devices("GPU"):
    return None
  threads = (1, 2 * cpu_cores())
  current = (tf.config.threading.get_intra_op_parallelism_threads(),
             tf.config.threading.get_inter_op_parallelism_threads())
  if current == threads:
    return threads
  try:
    tf.config.threading.set_intra_op_parallelism_threads(threads[0])
    tf.config.threading.set_inter_op_parallelism_threads(threads[1])
  except RuntimeError:  # the runtime started already: keep what it runs with
    logging.info("packed proxy trials keep TensorFlow's threads (its runtime had started)")
    return None
  logging.info("packed proxy trials: TensorFlow CPU threads intra-op %d, inter-op %d (set %s "
               "to choose others)", threads[0], threads[1], " / ".join(ENV_VARIABLES))
  return threads
