"""The engine-independent core of a search run: what to run next, and what a result means.

Engines (local processes, Ray Tune) only move cells to workers and results back; every
decision is here, so both engines share the budget, retry and resume semantics:

- Budget: the search ends when `budget` trials are terminal (done, or failed after
  max_attempts). Trials are only created while fewer than `budget` exist, and each ends
  terminal, so a finished search holds exactly `budget` trials; a failed trial counts
  towards the budget (it was tried max_attempts times and will not be tried again).
- Retries: a failed attempt (exception, dead worker, timeout, driver crash) puts the trial
  back to 'pending' while it has attempts left; pending trials run before new suggestions,
  in id order, so a resumed search re-runs what was in flight first.
- Suggestions: the algorithm sees every fingerprint ever created and every finished score,
  kept in memory and updated as results arrive.
- Baselines (subjects.py): rows -1, -2, ... added when the coordinator starts (kept on
  resume), run before any suggestion, retried and resumed like any trial, never counted in
  the algorithm's budget and never seen by it as a parent. `self.budget` is the number of
  rows a finished run holds: the algorithm's budget plus the baselines.
- A run of `max_consecutive_failures` failed attempts with no success in between, or a
  search whose every trial failed, stops the search with the last error. Such a run is a
  config mistake or a broken environment, not the cells' fault: the store forgives the
  attempts that failed in it (the trials are pending again, attempts 0), so it never burns
  the budget and the same command continues once the cause is fixed.
- A driver that dies (or stops) gives its running trials their attempt back (Store.recover,
  Store.release): a kill is never the cell's fault.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

from dpc_tf.search.algorithm import History, Observation, RandomSearch
from dpc_tf.search.errors import SearchError
from dpc_tf.search.store import TERMINAL, Store, Trial
from dpc_tf.search.trial import headline, score_of

Listener = Callable[["Coordinator", Trial], None]


class Coordinator:
  """Runs the search's bookkeeping against one Store. Single-threaded: the driver's."""

  def __init__(self, store: Store, algorithm: RandomSearch, max_attempts: int = 2,
               metric: str = "miou", max_consecutive_failures: int = 10,
               listeners: tuple[Listener, ...] = (), baselines: Sequence = ()):
    if max_attempts < 1:
      raise SearchError(f"max_attempts must be >= 1, got {max_attempts}")
    self.store = store
    self.algorithm = algorithm
    for position, subject in enumerate(baselines):
      store.add_baseline(position, subject)
    self.budget = algorithm.budget + store.num_baselines()
    self.max_attempts = max_attempts
    self.metric = metric
    self.max_consecutive_failures = max_consecutive_failures
    self.listeners = list(listeners)
    self.error: Optional[SearchError] = None
    self._consecutive_failures = 0
    self._failure_run: set[int] = set()  # trials with a failed attempt since the last success
    self._seen: set[str] = set()
    self._observations: list[Observation] = []
    self.requeued = store.recover()
    for trial in store.trials():
      self._seen.add(trial.fingerprint)
      if trial.status == "done":
        self._observe(trial)

  # --- state ------------------------------------------------------------------------------
  def counts(self) -> dict[str, int]:
    return self.store.counts()

  def terminal(self) -> int:
    counts = self.counts()
    return sum(counts[s] for s in TERMINAL)

  def finished(self) -> bool:
    """True once the budget is spent, or the search was stopped by repeated failures."""
    return self.error is not None or self.terminal() >= self.budget

  def best(self) -> Optional[Observation]:
    top = self.algorithm.top(self._observations)
    return top[0] if top else None

  def history(self) -> History:
    return History(seen=self._seen, observations=self._observations)

  def raise_if_stopped(self) -> None:
    if self.error is not None:
      raise self.error

  # --- dispatch ---------------------------------------------------------------------------
  def next_trial(self, worker: str = "") -> Optional[Trial]:
    """The next trial to run, marked running; None if nothing may start now."""
    if self.error is not None:
      return None
    counts = self.counts()
    if counts["done"] + counts["failed"] + counts["running"] >= self.budget:
      return None
    pending = self.store.next_pending()  # baselines (negative ids) first
    if pending is None:
      index = self.store.num_suggested()
      if index >= self.algorithm.budget:
        return None
      suggestion = self.algorithm.suggest(index, self.history())
      pending = self.store.add(index, suggestion.cell, suggestion.origin, suggestion.parent)
      self._seen.add(pending.fingerprint)
    return self.store.start(pending.id, worker)

  # --- results ----------------------------------------------------------------------------
  def complete(self, trial_id: int, record: dict, seconds: Optional[float]) -> None:
    score = score_of(record, self.metric)
    if not self.store.finish(trial_id, record, None if math.isnan(score) else score, seconds):
      return  # it was not running any more (e.g. timed out meanwhile): first outcome wins
    self._consecutive_failures = 0
    self._failure_run.clear()
    trial = self.store.get(trial_id)
    self._observe(trial)
    self._notify(trial)

  def fail(self, trial_id: int, error: str, seconds: Optional[float] = None) -> Optional[str]:
    """Records a failed attempt; returns the new status ('pending' = will be retried)."""
    status = self.store.fail(trial_id, error, self.max_attempts, seconds)
    if status is None:
      return None
    self._consecutive_failures += 1
    self._failure_run.add(trial_id)
    if self.error is None and self.max_consecutive_failures > 0 and (
        self._consecutive_failures >= self.max_consecutive_failures
        or (self.terminal() >= self.budget and self.counts()["done"] == 0)):
      self.error = SearchError(
          f"{self._consecutive_failures} trial attempts failed in a row, the last (trial "
          f"{trial_id}): {headline(error)}; none was counted against the budget: fix the "
          "cause and rerun the same command to continue")
    if self.error is not None:  # stopped: this run of failures is not the cells' fault
      self.store.forgive(sorted(self._failure_run), "not counted (the search stopped on "
                         f"{self._consecutive_failures} failures in a row): ")
      self._failure_run.clear()
      status = "pending"
    self._notify(self.store.get(trial_id))
    return status

  def release(self, trial_id: int) -> None:
    """The driver stopped this trial itself (shutdown): back to pending, attempt returned."""
    self.store.release(trial_id)

  def _observe(self, trial: Trial) -> None:
    if trial.is_baseline or trial.cell is None:
      return  # a reference (or the ASPP head, in the re-rank), never a parent
    if trial.score is not None and math.isfinite(trial.score):
      madds = (trial.record or {}).get("branch_madds")
      self._observations.append(Observation(trial.id, trial.cell, trial.score, madds))

  def _notify(self, trial: Trial) -> None:
    for listener in self.listeners:
      listener(self, trial)
