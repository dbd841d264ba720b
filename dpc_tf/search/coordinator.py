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
- Successive halving (algorithm.rungs, halving.py): the budget is proxy steps,
  algorithm.budget * rungs[-1]; a job (a new cell at rung 0, or a promotion) is created only
  while the steps of every job created so far plus its own fit, and promotions go first,
  asynchronously, as soon as a cell earns one. Each dispatched trial carries its work order
  (subjects.Fidelity: steps, schedule, the checkpoint to continue from and to save to, in
  DIR/heads/trial_ID/steps_N); baselines run at the top rung from scratch, outside the
  budget. The search ends when nothing is queued or running and no job fits any more.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable, Optional, Sequence

from absl import logging

from dpc_tf.search.algorithm import History, Observation, RandomSearch
from dpc_tf.search.errors import SearchError
from dpc_tf.search.store import TERMINAL, Store, Trial
from dpc_tf.search.subjects import Fidelity
from dpc_tf.search.trial import headline, score_of

Listener = Callable[["Coordinator", Trial], None]


class Coordinator:
  """Runs the search's bookkeeping against one Store. Single-threaded: the driver's."""

  def __init__(self, store: Store, algorithm: RandomSearch, max_attempts: int = 2,
               metric: str = "miou", max_consecutive_failures: int = 10,
               listeners: tuple[Listener, ...] = (), baselines: Sequence = (),
               checkpoint_root: str = ""):
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
    self._observations: dict[int, Observation] = {}
    self.requeued = store.recover()
    # Successive halving state (None/empty when flat), rebuilt from the store on resume.
    self.rungs = getattr(algorithm, "rungs", None)  # the re-rank's FixedCells has none
    self.checkpoint_root = checkpoint_root or os.path.join(
        os.path.dirname(os.path.abspath(store.path)), "heads")
    self.budget_steps = algorithm.budget * self.rungs.steps[-1] if self.rungs else 0
    self.committed_steps = 0  # steps of every searched job created (run, running or queued)
    self._finished_at: dict[int, list[tuple[int, float]]] = {}  # rung -> (id, score)
    self._promoted: dict[int, set[int]] = {}  # rung k -> ids promoted from k
    for trial in store.trials():
      self._seen.add(trial.fingerprint)
      if trial.status == "done":
        self._observe(trial)
      if self.rungs and not trial.is_baseline:
        self.committed_steps += sum(self.rungs.cost(r) for r in range(trial.rung + 1))
        for rung in range(trial.rung):
          self._promoted.setdefault(rung, set()).add(trial.id)
    if self.rungs:
      for result in store.rung_results():
        if result["trial_id"] < 0:
          continue
        if result["status"] == "failed":  # given up: its cost was spent, its row went back
          self.committed_steps += self.rungs.cost(result["rung"])
          self._promoted.setdefault(result["rung"] - 1, set()).add(result["trial_id"])
        elif result["score"] is not None and math.isfinite(result["score"]):
          self._finished_at.setdefault(result["rung"], []).append(
              (result["trial_id"], result["score"]))

  # --- state ------------------------------------------------------------------------------
  def counts(self) -> dict[str, int]:
    return self.store.counts()

  def terminal(self) -> int:
    counts = self.counts()
    return sum(counts[s] for s in TERMINAL)

  def finished(self) -> bool:
    """True once the budget is spent, or the search was stopped by repeated failures."""
    if self.error is not None:
      return True
    if self.rungs is None:
      return self.terminal() >= self.budget
    counts = self.counts()
    return counts["pending"] == 0 and counts["running"] == 0 and self._next_job() is None

  def remaining_jobs(self) -> int:
    """An upper bound on the dispatches still to come (Ray Tune's num_samples)."""
    counts = self.counts()
    if self.rungs is None:
      return (self.budget - counts["done"] - counts["failed"]) * self.max_attempts
    left = max(0, self.budget_steps - self.committed_steps) // self.rungs.min_cost()
    return (left + counts["pending"] + counts["running"]) * self.max_attempts

  def spent_steps(self) -> int:
    """Successive halving: proxy steps of the searched jobs finished (or given up) so far."""
    queued = sum(self.rungs.cost(t.rung) for t in self.store.trials("pending", "running")
                 if not t.is_baseline)
    return self.committed_steps - queued

  def best(self) -> Optional[Observation]:
    top = self.algorithm.top(list(self._observations.values()))
    return top[0] if top else None

  def history(self) -> History:
    return History(seen=self._seen, observations=list(self._observations.values()))

  def _next_job(self) -> Optional[tuple[Optional[int], int]]:
    """Successive halving: (trial id, rung) of the next promotion, (None, 0) for a new
    cell, or None when no job fits in the budget."""
    fits = self.budget_steps - self.committed_steps
    promotion = self.rungs.promotion(self._finished_at, self._promoted, fits)
    if promotion is not None:
      return promotion
    return (None, 0) if self.rungs.cost(0) <= fits else None

  def work_order(self, trial: Trial) -> Fidelity:
    """What a dispatched trial runs at its rung (baselines: the top rung, from scratch)."""
    steps, top = self.rungs.steps, self.rungs.top
    if trial.is_baseline:
      return Fidelity(steps[top], steps[top])
    folder = lambda rung: os.path.join(self.checkpoint_root, f"trial_{trial.id}",
                                       f"steps_{steps[rung]}")
    return Fidelity(steps[trial.rung], steps[top],
                    start_from=folder(trial.rung - 1) if trial.rung > 0 else None,
                    save_to=folder(trial.rung) if trial.rung < top else None)

  def raise_if_stopped(self) -> None:
    if self.error is not None:
      raise self.error

  # --- dispatch ---------------------------------------------------------------------------
  def next_trial(self, worker: str = "") -> Optional[Trial]:
    """The next trial to run, marked running; None if nothing may start now."""
    if self.error is not None:
      return None
    if self.rungs is not None:
      return self._next_rung_trial(worker)
    counts = self.counts()
    if counts["done"] + counts["failed"] + counts["running"] >= self.budget:
      return None
    pending = self.store.next_pending()  # baselines (negative ids) first
    if pending is None:
      index = self.store.num_suggested()
      if index >= self.algorithm.budget:
        return None
      pending = self._add_suggestion(index)
    return self.store.start(pending.id, worker)

  def next_trials(self, worker: str = "", count: int = 1) -> list[Trial]:
    """Up to `count` trials for one worker call (a pack: proxy_trial.cells_per_program),
    each its own running row, so a killed driver requeues exactly the ones whose results
    were not recorded; [] if nothing may start now."""
    trials = []
    while len(trials) < count:
      trial = self.next_trial(worker=worker)
      if trial is None:
        break
      trials.append(trial)
    return trials

  def _add_suggestion(self, index: int) -> Trial:
    suggestion = self.algorithm.suggest(index, self.history())
    pending = self.store.add(index, suggestion.cell, suggestion.origin, suggestion.parent)
    self._seen.add(pending.fingerprint)
    return pending

  def _next_rung_trial(self, worker: str) -> Optional[Trial]:
    """Successive halving's dispatch: queued first, then a promotion, then a new cell."""
    pending = self.store.next_pending()
    if pending is None:
      job = self._next_job()
      if job is None:
        return None
      trial_id, rung = job
      if trial_id is None:
        pending = self._add_suggestion(self.store.num_suggested())
      else:
        pending = self.store.promote(trial_id, rung)
        self._promoted.setdefault(rung - 1, set()).add(trial_id)
      self.committed_steps += self.rungs.cost(rung)
    trial = self.store.start(pending.id, worker)
    subject = trial.subject.with_fidelity(self.work_order(trial))
    return dataclasses.replace(trial, cell_json=subject.to_json_string())

  # --- results ----------------------------------------------------------------------------
  def complete(self, trial_id: int, record: dict, seconds: Optional[float]) -> None:
    score = score_of(record, self.metric)
    steps = None
    if self.rungs is not None:
      steps = self.work_order(self.store.get(trial_id)).steps
    if not self.store.finish(trial_id, record, None if math.isnan(score) else score, seconds,
                             steps):
      return  # it was not running any more (e.g. timed out meanwhile): first outcome wins
    self._consecutive_failures = 0
    self._failure_run.clear()
    trial = self.store.get(trial_id)
    self._observe(trial)
    if steps is not None and not trial.is_baseline and not math.isnan(score):
      self._finished_at.setdefault(trial.rung, []).append((trial.id, score))
    self._notify(trial)

  def fail(self, trial_id: int, error: str, seconds: Optional[float] = None) -> Optional[str]:
    """Records a failed attempt; returns the new status ('pending' = will be retried)."""
    status = self.store.fail(trial_id, error, self.max_attempts, seconds)
    if status is None:
      return None
    if status == "done":  # a promoted cell gave up its rung: it keeps the rung before
      logging.warning("trial %d: its promoted rung failed %d time(s), it stays at its last "
                      "finished rung: %s", trial_id, self.max_attempts, headline(error))
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

  def record(self, trial_id: int, kind: str, body, seconds: Optional[float]) -> None:
    """One outcome of trial.execute_pack: ('done', record) or ('error', text)."""
    if kind == "done":
      self.complete(trial_id, body, seconds)
    else:
      self.fail(trial_id, body, seconds)

  def release(self, trial_id: int) -> None:
    """The driver stopped this trial itself (shutdown): back to pending, attempt returned."""
    self.store.release(trial_id)

  def _observe(self, trial: Trial) -> None:
    if trial.is_baseline or trial.cell is None:
      return  # a reference (or the ASPP head, in the re-rank), never a parent
    if trial.score is not None and math.isfinite(trial.score):
      madds = (trial.record or {}).get("branch_madds")
      # A promoted cell's latest rung replaces its earlier score (halving).
      self._observations[trial.id] = Observation(trial.id, trial.cell, trial.score, madds)

  def _notify(self, trial: Trial) -> None:
    for listener in self.listeners:
      listener(self, trial)
