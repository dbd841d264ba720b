"""Choosing a tf.distribute strategy by name, and who writes files in a multi-worker job.

Every worker of a MultiWorkerMirroredStrategy job runs the same program; only the chief
writes summaries, the operative config and the checkpoints others read. Non-chief workers
must still *take part* in every checkpoint save (the save is a collective), so they save
to a private scratch folder that is deleted right away.
"""

from __future__ import annotations

import json
import os
from typing import Optional

import tensorflow as tf

from dpc_tf.training.config import STRATEGIES
from dpc_tf.errors import DpcError


_CACHE: dict = {}


def make_strategy(name: str = "default", tpu: Optional[str] = None,
                  device: Optional[str] = None) -> tf.distribute.Strategy:
  """The strategy `name` (one of config.STRATEGIES), created once per process.

  Cached because two MirroredStrategy instances over the same devices reuse collective
  instance keys and their all-reduces collide, a multi-worker strategy can only be made
  once per process, and a TPU system is initialised once: in-process callers that train
  several models (search trials) must share one strategy.

  default: no distribution (the default strategy: one device, no all-reduce).
  one_device: OneDeviceStrategy on `device` (default the first GPU, else the CPU).
  mirrored: MirroredStrategy over every local GPU (the CPU when there is none).
  multi_worker_mirrored: MultiWorkerMirroredStrategy from the TF_CONFIG environment variable.
  tpu: TPUStrategy on the TPU named by `tpu` ("" or "local" for a local TPU VM).
  """
  if name not in STRATEGIES:
    raise DpcError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
  if name == "default":
    return tf.distribute.get_strategy()
  key = (name, tpu, device)
  if key not in _CACHE:
    _CACHE[key] = _create(name, tpu, device)
  return _CACHE[key]


def _create(name: str, tpu: Optional[str], device: Optional[str]) -> tf.distribute.Strategy:
  if name == "one_device":
    if device is None:
      device = "/gpu:0" if tf.config.list_logical_devices("GPU") else "/cpu:0"
    return tf.distribute.OneDeviceStrategy(device)
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multi_worker_mirrored":
    if "TF_CONFIG" not in os.environ:
      raise DpcError("strategy multi_worker_mirrored needs the TF_CONFIG environment "
                      "variable (cluster and task of this worker)")
    try:
      json.loads(os.environ["TF_CONFIG"])
    except ValueError as e:
      raise DpcError(f"TF_CONFIG is not valid JSON: {e}") from None
    return tf.distribute.MultiWorkerMirroredStrategy()
  resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
      tpu="local" if tpu in (None, "", "local") else tpu)
  tf.config.experimental_connect_to_cluster(resolver)
  tf.tpu.experimental.initialize_tpu_system(resolver)
  return tf.distribute.TPUStrategy(resolver)


def evaluation_strategy(name: str = "default", tpu: Optional[str] = None) -> tf.distribute.Strategy:
  """The strategy evaluation runs under: the training one (the same cached object), so a
  model trained on N devices is scored on them. A multi-worker strategy outside a
  multi-worker job (no TF_CONFIG: `python -m dpc_tf.evaluate` on one machine) becomes
  mirrored over this machine's devices."""
  if name == "multi_worker_mirrored" and "TF_CONFIG" not in os.environ:
    name = "mirrored"
  return make_strategy(name, tpu)


def task_info(strategy: tf.distribute.Strategy) -> tuple[Optional[str], Optional[int]]:
  """(task_type, task_id) of this worker; (None, None) outside a multi-worker job."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return None, None
  return resolver.task_type, resolver.task_id


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """The chief writes; in a cluster without an explicit chief, worker 0 is the chief."""
  task_type, task_id = task_info(strategy)
  if task_type is None:
    return True
  resolver = strategy.cluster_resolver
  has_chief = "chief" in resolver.cluster_spec().as_dict()
  return task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0)


def write_dir(model_dir: str, strategy: tf.distribute.Strategy) -> str:
  """model_dir on the chief; a per-worker scratch folder inside it on the others."""
  if is_chief(strategy):
    return model_dir
  task_type, task_id = task_info(strategy)
  return os.path.join(model_dir, ".workers", f"{task_type}_{task_id}")
