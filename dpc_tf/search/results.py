"""What a search leaves for people: DIR/results.csv and DIR/best_cells/rank_N.json.

results.csv has one row per finished trial (done or failed), in trial order, and is
rewritten atomically (never half a file) as trials finish: after every one when
`min_interval_s` is 0, else at most once per interval and always at the end, since with
tens of thousands of trials a rewrite per trial costs more than it tells. The store is the
source of truth; these files can be regenerated from it at any time.

Baselines (origin 'baseline', negative trial ids) are rows of results.csv but never ranked.
Steps: `max_steps` is the proxy steps behind `proxy_miou` (a cell's highest finished rung
under successive halving) and `scores_by_steps` its score at every rung, e.g.
`100:0.512 300:0.583`; a cell promoted and still running its next rung is listed (status
'running' or 'pending') with what it has so far.
Ranking for best_cells: trials with a re-rank score first (by that score), then the rest by
highest rung (successive halving) and proxy score, ties to the earlier trial. rank_1.json is the winner, in the released format.
"""

from __future__ import annotations

import csv
import io
import os
import re
import time
from typing import Optional, Sequence

from dpc_tf.search.store import Store, Trial
from dpc_tf.search.trial import headline
from dpc_tf.utils.files import write_text_atomic

COLUMNS = ("trial_id", "cell", "status", "proxy_miou", "max_steps", "scores_by_steps",
           "branch_params", "branch_madds",
           "seconds", "rerank_miou", "rerank_stderr", "rerank_seeds", "attempts", "origin",
           "parent", "fingerprint", "error")


def _number(value) -> str:
  if value is None:
    return ""
  if isinstance(value, float):
    return f"{value:.6g}"
  return str(value)


def trial_row(trial: Trial, rungs: Sequence[dict] = ()) -> dict:
  """One CSV row; rungs: the trial's rung_results rows (none for a flat search)."""
  record = trial.record or {}
  rerank = trial.rerank_record or {}
  error = headline(trial.error) if trial.error and trial.status != "done" else ""
  done = [r for r in rungs if r["status"] == "done"]
  if done:
    max_steps = done[-1]["steps"]
    by_steps = " ".join(f"{r['steps']}:{_number(r['score'])}" for r in done)
  else:
    # a flat search: the trial's own steps (none for a fake trial, which trains nothing)
    max_steps = (record.get("steps") or None) if trial.score is not None else None
    by_steps = f"{max_steps}:{_number(trial.score)}" if max_steps is not None else ""
  if rungs and rungs[-1]["status"] == "failed" and not error:
    error = f"rung {rungs[-1]['rung']} failed: " + headline(rungs[-1]["error"])
  return {"trial_id": trial.id, "cell": trial.cell_text, "status": trial.status,
          "proxy_miou": _number(trial.score), "max_steps": _number(max_steps),
          "scores_by_steps": by_steps, "branch_params": _number(record.get("branch_params")),
          "branch_madds": _number(record.get("branch_madds")), "seconds": _number(trial.seconds),
          "rerank_miou": _number(trial.rerank_score),
          "rerank_stderr": _number(rerank.get("stderr")), "rerank_seeds": _number(rerank.get("n")),
          "attempts": trial.attempts,
          "origin": trial.origin, "parent": _number(trial.parent),
          "fingerprint": trial.fingerprint, "error": error}


def results_csv_text(store: Store) -> str:
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
  writer.writeheader()
  rungs: dict[int, list[dict]] = {}
  for result in store.rung_results():
    rungs.setdefault(result["trial_id"], []).append(result)
  for trial in store.trials():
    if trial.status in ("done", "failed") or trial.id in rungs:
      writer.writerow(trial_row(trial, rungs.get(trial.id, ())))
  return buffer.getvalue()


def write_results_csv(store: Store, path: str) -> None:
  write_text_atomic(path, results_csv_text(store))


def ranking(store: Store) -> list[Trial]:
  """Done searched trials with a score, best first: re-ranked ones first, then by proxy score."""
  scored = [t for t in store.trials("done") if not t.is_baseline
            and (t.score is not None or t.rerank_score is not None)]
  def key(t: Trial):
    if t.rerank_score is not None:
      return (0, -t.rerank_score, t.id)
    # Successive halving: a cell scored at more steps outranks one stopped at a lower rung
    # (its low-rung score is noisier and from less training); flat searches are all rung 0.
    return (1, -t.rung, -(t.score if t.score is not None else float("-inf")), t.id)
  return sorted(scored, key=key)


def write_best_cells(store: Store, folder: str, count: int) -> list[str]:
  """rank_1.json ... rank_N.json in the released JSON format; returns the paths. Rank files
  of an earlier, larger num_best_cells are removed: the folder holds exactly these."""
  paths = []
  for rank, trial in enumerate(ranking(store)[:count], start=1):
    path = os.path.join(folder, f"rank_{rank}.json")
    trial.cell.save(path)
    paths.append(path)
  if os.path.isdir(folder):
    for name in os.listdir(folder):
      if re.fullmatch(r"rank_\d+\.json", name) and os.path.join(folder, name) not in paths:
        os.remove(os.path.join(folder, name))
  return paths


class ResultsWriter:
  """Coordinator listener that keeps DIR/results.csv current."""

  def __init__(self, path: str, min_interval_s: float = 0.0):
    self.path = path
    self.min_interval_s = min_interval_s
    self._last = -float("inf")

  def write(self, store: Store) -> None:
    write_results_csv(store, self.path)
    self._last = time.monotonic()

  def __call__(self, coordinator, trial: Optional[Trial]) -> None:
    if trial is not None and trial.status == "pending":
      return  # a failed attempt that will be retried: not finished, not in the CSV
    if time.monotonic() - self._last >= self.min_interval_s or coordinator.finished():
      self.write(coordinator.store)
