"""TensorFlow CPU threads of a search worker: its share of the cores, and how packs use them.

Two measured rules, applied in a worker before its first op (threads cannot change later):

- **A share of the cores.** The local engine runs `workers` processes on one machine and
  tells each its share, DPC_TF_CPU_SHARE = cores // workers. TensorFlow's default gives every
  process intra-op threads = all cores, so two workers on 2 cores ran 4 threads that kept
  preempting each other. With intra-op = the share: two demo re-rank trainings side by side
  ran 2.6 steps/s each instead of 2.1 (100 steps in 60 s instead of 70, twice each,
  ad hoc on 2 cores, 2026-12-01; the scores differ by float summation order only).
- **One thread per op for packs.** A pack (proxy/packed.py) is K independent chains of small
  ops on small feature maps (17x17 in the demo). Splitting each op over several threads pays
  a synchronisation per op that such ops cannot repay, so packs run intra-op 1 and twice
  their share of ops at once: the cores run different heads' ops side by side. Measured on
  2 cores with the demo's packs of 8 (`python -m dpc_tf.benchmark proxy_throughput`,
  docs/BENCHMARKS.md): 385 trials/hour against 306 with TensorFlow's default threads, the
  same scores. A lone whole-model training with all cores to itself was slower so (bigger
  ops, which intra-op threads do speed up), hence packs only.

Only where nothing else decided: TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS set by the
user win (TensorFlow reads them itself), GPU processes keep TensorFlow's default, and a
process whose TensorFlow runtime has already started is left as it is, with a log line.
"""

from __future__ import annotations

import os
from typing import Optional

from absl import logging

ENV_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
SHARE_VARIABLE = "DPC_TF_CPU_SHARE"


def cpu_cores() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except (AttributeError, OSError):
    return os.cpu_count() or 1


def share_for(workers: int) -> int:
  """The cores each of `workers` processes sharing this machine gets (at least 1)."""
  return max(1, cpu_cores() // max(1, workers))


def cpu_share() -> int:
  """The cores this process may use: DPC_TF_CPU_SHARE (capped at the cores), else all."""
  text = os.environ.get(SHARE_VARIABLE, "").strip()
  if not text:
    return cpu_cores()
  try:
    share = int(text)
  except ValueError:
    share = 0
  if share < 1:
    raise ValueError(f"{SHARE_VARIABLE}={text!r}: expected a whole number of CPU cores >= 1")
  return min(share, cpu_cores())


def configure_for_packs() -> Optional[tuple[int, int]]:
  """(intra-op, inter-op) = (1, 2 x share) for a process that trains packs."""
  return _configure((1, 2 * cpu_share()), "packed proxy trials")


def configure_for_share() -> Optional[tuple[int, int]]:
  """(intra-op, inter-op) = (share, 2 x share) for a process given less than every core;
  None (TensorFlow's default) for one that has them all."""
  share = cpu_share()
  if share >= cpu_cores():
    return None
  return _configure((share, 2 * share), f"a worker with {share} of {cpu_cores()} cores")


def _configure(threads: tuple[int, int], who: str) -> Optional[tuple[int, int]]:
  """Sets the threads if nothing else decided; returns them, or None where it left
  TensorFlow's threading alone."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  if any(os.environ.get(name) for name in ENV_VARIABLES):
    return None
  if tf.config.list_physical_devices("GPU"):
    return None
  current = (tf.config.threading.get_intra_op_parallelism_threads(),
             tf.config.threading.get_inter_op_parallelism_threads())
  if current == threads:
    return threads
  try:
    tf.config.threading.set_intra_op_parallelism_threads(threads[0])
    tf.config.threading.set_inter_op_parallelism_threads(threads[1])
  except RuntimeError:  # the runtime started already: keep what it runs with
    logging.info("%s keep TensorFlow's threads (its runtime had started)", who)
    return None
  logging.info("%s: TensorFlow CPU threads intra-op %d, inter-op %d (set %s to choose others)",
               who, threads[0], threads[1], " / ".join(ENV_VARIABLES))
  return threads
