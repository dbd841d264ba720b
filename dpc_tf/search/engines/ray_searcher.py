"""The Ray Tune side of the ray engine: a Searcher and a Callback over the Coordinator.

Imported only by RayEngine.run (it imports Ray at module level). The classes live at module
level so that Tune's cloudpickle of its experiment state pickles them by reference; their
instances drop the Coordinator (and its SQLite connection) when pickled: Tune's saved state is
never used to resume, the store is.
"""

from __future__ import annotations

import json
import os
from typing import Optional

from absl import logging
from ray import tune
from ray.tune.search import Searcher

from dpc_tf.search.coordinator import Coordinator
from dpc_tf.search.engines.ray_tune import ERROR_KEY, OUTCOMES_KEY, SECONDS_KEY


class StoreSearcher(Searcher):
  """suggest = Coordinator.next_trials (a pack of `pack` store trials per Tune trial);
  on_trial_complete = complete / fail / release of each."""

  def __init__(self, coordinator: Coordinator, pack: int = 1):
    super().__init__(metric=None, mode=None)
    self.coordinator = coordinator
    self.pack = pack
    self.live: dict[str, list[int]] = {}  # Tune trial id -> its store trial ids

  def __getstate__(self):
    return {**self.__dict__, "coordinator": None}

  def save(self, checkpoint_path: str) -> None:
    """Nothing to save: the store is the search's state (and Tuner.restore is not used)."""

  def restore(self, checkpoint_path: str) -> None:
    """See save()."""

  def suggest(self, trial_id: str):
    trials = self.coordinator.next_trials(worker=f"ray/{trial_id}", count=self.pack)
    if not trials:
      if self.coordinator.finished() or not self.live:
        if not self.coordinator.finished():
          logging.error("the search has nothing to run and nothing running; stopping")
        return Searcher.FINISHED
      return None  # wait for the running trials: a failure may need a retry
    self.live[trial_id] = [t.id for t in trials]
    return {"trial_ids": [t.id for t in trials], "cell_jsons": [t.cell_json for t in trials]}

  def on_trial_complete(self, trial_id: str, result: Optional[dict] = None,
                        error: bool = False) -> None:
    indices = self.live.pop(trial_id, None)
    if indices is None:
      return
    if error:
      for index in indices:
        self.coordinator.fail(index, "the Ray trial process failed (worker died or Ray "
                              "error; see the trial's error.txt under DIR/ray)")
    elif result and OUTCOMES_KEY in result:
      outcomes = json.loads(result[OUTCOMES_KEY])
      for index, (kind, body, seconds) in zip(indices, outcomes):
        self.coordinator.record(index, kind, body, seconds)
      for index in indices[len(outcomes):]:  # execute_pack answers every cell; never seen
        self.coordinator.fail(index, "the Ray trial reported no outcome for this trial")
    elif result and ERROR_KEY in result:
      for index in indices:
        self.coordinator.fail(index, result[ERROR_KEY], result.get(SECONDS_KEY))
    else:  # stopped before it reported (the experiment is shutting down): not their fault
      for index in indices:
        self.coordinator.release(index)


class ErrorText(tune.Callback):
  """Puts Ray's own error text (e.g. 'The actor died unexpectedly') into the store."""

  def __init__(self, coordinator: Coordinator):
    self.coordinator = coordinator

  def __getstate__(self):
    return {**self.__dict__, "coordinator": None}

  def on_trial_error(self, iteration, trials, trial, **info):
    indices = trial.config.get("trial_ids") or []
    text = ""
    try:
      if trial.error_file and os.path.exists(trial.error_file):  # the driver's own copy
        with open(trial.error_file) as f:
          text = f.read()
      else:
        text = str(trial.get_error() or "")
    except Exception:  # pylint: disable=broad-except  (best effort: the failure is recorded)
      pass
    lines = [l for l in text.splitlines() if l.strip()]
    if lines and self.coordinator is not None:
      for index in indices:
        self.coordinator.store.annotate_error(
            int(index), "the Ray trial process failed: " + lines[-1].strip()[:300] + "\n\n"
            + text[-4000:])
