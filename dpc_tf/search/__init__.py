"""Dense Prediction Cell architecture search: `python -m dpc_tf.search` (see __main__.py).

From the command to one trial (the driver process, then a worker):

  __main__.main                      parses the gin config (search_*, proxy_trial.*, ...)
  -> pipeline.run_pipeline           calls every factory first, checking its settings:
       stages.backbone_stage/cache_stage; settings.trial_factory(cache_dir), e.g.
       stages.proxy_task -> ProxyTrial (with the proxy_trial.* settings)
     -> run_trials: Coordinator(Store, RandomSearch).  engine.run(coordinator,
        WorkerPayload(trial function, gin config text))
        coordinator.next_trials(worker, K): K = cells_per_program trials per worker call
        -> engines/local.py _worker_main (a subprocess) | engines/ray_tune.ray_trial (Ray)
           -> trial.execute_pack: apply_gin, then payload.trial_fn(cell) per cell, or
              payload.trial_fn.run_pack(subjects) for K > 1
              -> stages.ProxyTrial(cell) -> dpc_tf.proxy.trial.run_proxy_trial (TensorFlow)
                 ProxyTrial.run_pack -> dpc_tf.proxy.packed.run_packed_trials
        <- one outcome per trial -> coordinator.record (complete / fail)

Pure Python at import (no TensorFlow, no Ray): the algorithm, the trial store, the
coordinator and the engines only move cells and score records; what scores a cell is a
pluggable, picklable trial function (ProxyTrial, or FakeTrial in tests and dry runs).
"""

from dpc_tf.search.algorithm import History, Observation, RandomSearch, Suggestion, make_algorithm
from dpc_tf.search.coordinator import Coordinator
from dpc_tf.search.errors import SearchError
from dpc_tf.search.fake_trial import FakeTrial
from dpc_tf.search.pipeline import run_pipeline
from dpc_tf.search.store import Store, Trial
from dpc_tf.search.trial import TrialFn, WorkerPayload, validate_record
