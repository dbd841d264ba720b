"""The Ray engine: trials run as Ray Tune trials, on one machine or a whole cluster.

Ray only moves work: the driver's Coordinator and Store stay the single source of truth,
reached through a custom Tune Searcher (`suggest` = Coordinator.next_trial, `on_trial_complete`
= complete/fail). Each driver launch is a fresh Tune experiment over what the store still
needs, so resuming is the same as with the local engine (rerun the command) and no Tune
state can disagree with the store; Tuner.restore is not needed.

Packs: one Tune trial carries a worker call, up to the trial function's cells_per_program
store trials (Coordinator.next_trials, as the local engine's worker calls), runs them
through trial.execute_pack (the proxy trains them in one program) and reports one outcome
per store trial; each store trial keeps its own row, attempts and result, and its `worker`
is "ray/<Tune trial id>".

Failures: an exception inside the trial function is caught in the trial and reported as
that store trial's error; a Tune trial whose process dies (os._exit, OOM kill, its node
lost) errors in Tune (max_failures=0) and each of its store trials fails one attempt and
is requeued while it has attempts left, so Tune runs it again as a new Tune trial on any
live worker.

Cluster: `ray start --head` on the driver machine, `ray start --address=HEAD:6379` on each
worker, then `python -m dpc_tf.search --engine=ray ...` on the head (or RAY_ADDRESS set).
The search_dir (Ray's storage goes to DIR/ray) and the feature cache must be on a filesystem
every node mounts at the same path, and dpc_tf must be installed on every node.
"""

from __future__ import annotations

import json
import logging as logging_lib
import os
import time
from typing import Optional

from absl import logging

from dpc_tf.search import checks, trial as trial_lib
from dpc_tf.search.coordinator import Coordinator
from dpc_tf.search.errors import SearchError

OUTCOMES_KEY = "dpc_outcomes"  # JSON [[kind, record or error text, seconds], ...]
ERROR_KEY = "dpc_error"
SECONDS_KEY = "dpc_seconds"


def import_ray():
  """(ray, ray.tune), or a one-line SearchError naming the missing extra."""
  try:
    import ray  # pylint: disable=import-outside-toplevel
    from ray import tune  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise SearchError(f"the ray engine needs Ray Tune: pip install 'dpc-tf[ray]' "
                      f"(or 'ray[tune]') ({e})") from None
  return ray, tune


def ray_trial(config: dict, payload: trial_lib.WorkerPayload) -> None:
  """The Tune function trainable: one worker call (a pack of store trials), one report of
  an outcome per store trial; never raises for trial errors."""
  from ray import tune  # pylint: disable=import-outside-toplevel
  start = time.perf_counter()
  try:
    outcomes = trial_lib.execute_pack(payload, config["cell_jsons"])
    metrics = {OUTCOMES_KEY: json.dumps([list(o) for o in outcomes], default=str)}
  except Exception as e:  # pylint: disable=broad-except
    metrics = {ERROR_KEY: trial_lib.describe_exception(e),
               SECONDS_KEY: time.perf_counter() - start}
  tune.report(metrics)


def trial_name(tune_trial) -> str:
  """trial_3, or trial_3_4_5 for a pack (the store trials it carries)."""
  ids = tune_trial.config.get("trial_ids") or ["x"]
  return "trial_" + "_".join(map(str, ids))


class RayEngine:
  """Runs a search's trials as Ray Tune trials."""
  name = "ray"

  def __init__(self, address: Optional[str] = None, max_concurrent: int = 0,
               cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0,
               reuse_actors: bool = True):
    self.address = address
    self.reuse_actors = reuse_actors
    self.max_concurrent = max_concurrent
    self.cpus_per_trial = cpus_per_trial
    self.gpus_per_trial = gpus_per_trial
    self._started_here = False

  def _concurrency(self, ray) -> int:
    if self.max_concurrent:
      return self.max_concurrent
    resources = ray.cluster_resources()
    slots = []
    for key, per_trial in (("CPU", self.cpus_per_trial), ("GPU", self.gpus_per_trial)):
      if per_trial:
        slots.append(int(resources.get(key, 0) // per_trial))
    return max(1, min(slots) if slots else 1)

  def _connect(self, ray) -> None:
    if ray.is_initialized():
      return
    try:
      ray.init(address=self.address, include_dashboard=False, log_to_driver=True)
    except ConnectionError as e:
      raise SearchError(f"cannot connect to the Ray cluster at {self.address}: {e}") from None
    self._started_here = True

  def close(self) -> None:
    """Shuts down the Ray instance this engine started (not one it found running)."""
    if self._started_here:
      ray, _ = import_ray()
      ray.shutdown()
      self._started_here = False

  def run(self, coordinator: Coordinator, payload: trial_lib.WorkerPayload,
          work_dir: str) -> None:
    ray, tune = import_ray()
    from dpc_tf.search.engines import ray_searcher  # pylint: disable=import-outside-toplevel
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")  # trials keep the driver's cwd
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # the store is the log
    # With the per-trial loggers off, Tune's end-of-run analysis warns about every trial.
    logging_lib.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging_lib.ERROR)
    self._connect(ray)
    concurrency = self._concurrency(ray)
    pack = trial_lib.pack_size(payload.trial_fn)
    logging.info("ray engine: up to %d Tune trials at once (%s CPU, %s GPU each), %d cell(s) "
                 "per Tune trial", concurrency, self.cpus_per_trial, self.gpus_per_trial, pack)
    trainable = tune.with_resources(tune.with_parameters(ray_trial, payload=payload),
                                    {"cpu": self.cpus_per_trial, "gpu": self.gpus_per_trial})
    tuner = tune.Tuner(
        trainable, param_space={},
        tune_config=tune.TuneConfig(
            search_alg=ray_searcher.StoreSearcher(coordinator, pack),
            # An upper bound (every remaining job on every attempt); the searcher says
            # FINISHED as soon as the budget is spent.
            num_samples=max(1, coordinator.remaining_jobs()),
            max_concurrent_trials=concurrency, reuse_actors=self.reuse_actors,
            trial_name_creator=trial_name,
            trial_dirname_creator=lambda t: f"{trial_name(t)}_{t.trial_id}"),
        run_config=tune.RunConfig(
            name=time.strftime("run-%Y%m%d-%H%M%S"),
            storage_path=os.path.abspath(os.path.join(work_dir, "ray")),
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            callbacks=[ray_searcher.ErrorText(coordinator)], verbose=0))
    tuner.fit()


@checks.configurable("ray_engine")
def make_ray_engine(address: Optional[str] = None, max_concurrent: int = 0,
                    cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0,
                    reuse_actors: bool = True) -> RayEngine:
  """address: None (RAY_ADDRESS or a local instance), 'auto', or 'HOST:PORT'.

  max_concurrent 0 = as many trials as the cluster's CPUs/GPUs fit at the per-trial
  resources; set it when the cluster autoscales. reuse_actors keeps a trial process (and
  its imported TensorFlow) for the next trial, as the local engine's workers do; a process
  that dies is replaced either way.
  """
  return RayEngine(address=address, max_concurrent=max_concurrent,
                   cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                   reuse_actors=reuse_actors)
