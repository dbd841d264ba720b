"""Progress lines for a running search: counts, best so far, rate and ETA.

A listener on the coordinator: it is told about every finished or failed attempt and logs
one absl line, at most one per `min_interval_s` (a 370-worker search finishes a trial every
few seconds) except for the last trial and failures, which always log. The rate and ETA
count only this driver session, so a resumed search is not credited with earlier work.
Under successive halving the budget is proxy steps: `unit='proxy steps'` and `spent` (the
coordinator's finished steps) replace the count of finished trials.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from absl import logging

from dpc_tf.search.store import Trial
from dpc_tf.search.trial import headline


def format_duration(seconds: float) -> str:
  if seconds != seconds or seconds == float("inf"):  # NaN or inf
    return "?"
  seconds = int(round(seconds))
  days, rest = divmod(seconds, 86400)
  hours, rest = divmod(rest, 3600)
  minutes, secs = divmod(rest, 60)
  if days:
    return f"{days}d{hours:02d}h"
  if hours:
    return f"{hours}h{minutes:02d}m"
  if minutes:
    return f"{minutes}m{secs:02d}s"
  return f"{secs}s"


class Progress:
  """Coordinator listener that logs progress; `last_line` keeps the latest line for tests."""

  def __init__(self, budget: int, min_interval_s: float = 10.0, metric: str = "miou",
               label: str = "search", clock: Callable[[], float] = time.monotonic,
               log: Callable[[str], None] = lambda line: logging.info("%s", line),
               unit: str = "trials", spent: Optional[Callable[[], int]] = None):
    self.budget = budget
    self.unit = unit
    self.spent = spent  # None: finished trials (done + failed) are the progress
    self.label = label
    self.min_interval_s = min_interval_s
    self.metric = metric
    self.clock = clock
    self.log = log
    self.start_time: Optional[float] = None
    self.start_terminal = 0
    self.last_time = -float("inf")
    self.last_line = ""

  def _progress(self, counts: dict[str, int]) -> int:
    return self.spent() if self.spent is not None else counts["done"] + counts["failed"]

  def begin(self, counts: dict[str, int]) -> None:
    self.start_time = self.clock()
    self.start_terminal = self._progress(counts)

  def eta_seconds(self, terminal: int) -> float:
    """Seconds to the budget at this session's rate; NaN before the first result."""
    if self.start_time is None:
      return float("nan")
    elapsed = self.clock() - self.start_time
    finished_here = terminal - self.start_terminal
    if finished_here <= 0 or elapsed <= 0:
      return float("nan")
    return max(self.budget - terminal, 0) * elapsed / finished_here

  def rate_per_hour(self, terminal: int) -> float:
    if self.start_time is None:
      return float("nan")
    elapsed = self.clock() - self.start_time
    return (terminal - self.start_terminal) * 3600.0 / elapsed if elapsed > 0 else float("nan")

  def line(self, counts: dict[str, int], best) -> str:
    terminal = self._progress(counts)
    best_text = (f"best {self.metric} {best.score:.4f} (trial {best.index}: {best.cell.text})"
                 if best is not None else f"best {self.metric} -")
    rate = self.rate_per_hour(terminal)
    rate_text = f"{rate:.1f} {self.unit}/h" if rate == rate else f"- {self.unit}/h"
    of = f"{terminal}/{self.budget}" + (f" {self.unit}" if self.spent is not None else "")
    return (f"{self.label}: {of} finished ({counts['done']} done, "
            f"{counts['failed']} failed), {counts['running']} running, {counts['pending']} "
            f"queued | {best_text} | {rate_text} | ETA {format_duration(self.eta_seconds(terminal))}")

  def __call__(self, coordinator, trial: Trial) -> None:
    if self.start_time is None:
      self.begin(coordinator.counts())
    counts = coordinator.counts()
    now = self.clock()
    terminal = self._progress(counts)
    if trial.status != "done":
      logging.warning("trial %d (%s) attempt %d failed%s: %s", trial.id, trial.cell_text,
                      trial.attempts, ", will retry" if trial.status == "pending" else "",
                      headline(trial.error))
    last = terminal >= self.budget
    if last or trial.status != "done" or now - self.last_time >= self.min_interval_s:
      self.last_line = self.line(counts, coordinator.best())
      self.last_time = now
      self.log(self.last_line)
