"""Engines run a search's trials: `local` (subprocesses on this machine) or `ray` (Ray Tune).

An engine has `name` and `run(coordinator, payload, work_dir)`: it asks the Coordinator for
trials, runs `payload.trial_fn` on their cells somewhere else than the driver process, and
hands every outcome back. Engines hold no search state of their own, so any engine can resume
a search another one started. Importing this package never imports Ray or TensorFlow.
"""

from __future__ import annotations

from typing import Optional

from dpc_tf.search.errors import SearchError
from dpc_tf.search.engines.local import LocalEngine, make_local_engine
from dpc_tf.search.engines.ray_tune import RayEngine, make_ray_engine

ENGINES = ("local", "ray")


def make_engine(name: str, workers: Optional[int] = None):
  """The engine called `name`, configured by gin (local_engine.* / ray_engine.*).

  `workers` (the --workers flag) overrides local_engine.workers, or ray_engine.max_concurrent.
  """
  if name == "local":
    return make_local_engine(workers=workers) if workers else make_local_engine()
  if name == "ray":
    return make_ray_engine(max_concurrent=workers) if workers else make_ray_engine()
  raise SearchError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINES)}")
