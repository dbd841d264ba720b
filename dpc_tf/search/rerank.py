"""Re-ranking: the top-K cells by proxy score, trained end to end, as a second tiny search.

The paper re-ranked its top 50 proxy cells by training the whole model; the winner was 12th
by proxy score. Here the re-rank is a search whose 'algorithm' hands out a fixed list (the
top-K proxy trials, best first), with its own store DIR/rerank.sqlite, run by the same
engine: it is parallel on a cluster, retried on failure and resumable exactly like the proxy
search. Finished re-rank scores are copied into the main store (rerank_score), which is what
results.csv and best_cells read.

The set (rerank_subjects): the top proxy cells under the search's objective (objectives.py:
by score, or Pareto front first; under successive halving, cells of the highest rung first), skipping any cell closer than `min_distance` branch edits
to one already in (so the re-rank can tell different designs apart rather than re-scoring
near-copies), then every baseline whose proxy trial is done. Each is trained under `seeds`
seeds (0 = the configured seed, run as the plain subject; K adds K); its rerank_score is the
mean over the seeds that finished, and its rerank_record holds each seed's score, n and the
standard error.

The set only grows (planned_entries): a continued search re-ranks what DIR/rerank.sqlite
holds, in its order, plus what the current settings add. So raising --budget (new cells in
the top-K), rerank_top_k or rerank_seeds after a finished search re-ranks only the new
subjects, and lowering them keeps what was measured (same config: identity.py), never
refusing the store. Seed 0 being the plain subject makes raising rerank_seeds from 1 reuse
the run already made.
"""

from __future__ import annotations

import math
import statistics
from typing import Optional, Sequence

from dpc_tf.search import objectives
from dpc_tf.search.algorithm import History, Observation, Suggestion
from dpc_tf.search.errors import SearchError
from dpc_tf.search.store import Store, Trial
from dpc_tf.search.subjects import Subject


class FixedCells:
  """An 'algorithm' suggesting fixed (subject, proxy trial id) pairs in order."""

  def __init__(self, entries: Sequence[tuple[Subject, int]]):
    if not entries:
      raise SearchError("nothing to re-rank: the search has no finished trial with a score")
    self.entries = list(entries)
    self.budget = len(self.entries)

  def top(self, observations: Sequence[Observation]) -> list[Observation]:
    finite = [o for o in observations if math.isfinite(o.score)]
    return sorted(finite, key=lambda o: (-o.score, o.index))

  def suggest(self, index: int, history: History) -> Suggestion:
    del history
    subject, parent = self.entries[index]
    return Suggestion(index, subject, "rerank", parent)


def madds_of(trial: Trial) -> Optional[float]:
  return (trial.record or {}).get("branch_madds")


def rerank_candidates(store: Store, top_k: int, objective: str = "miou",
                      min_distance: int = 0) -> list[Trial]:
  """The top_k done searched trials under the objective, best first, kept diverse."""
  done = [t for t in store.trials("done") if not t.is_baseline]
  ordered = []
  for rung in sorted({t.rung for t in done}, reverse=True):  # halving: top rung first
    ordered += objectives.order([t for t in done if t.rung == rung], objective,
                                lambda t: t.score, madds_of, lambda t: t.id)
  return objectives.diverse(ordered, top_k, min_distance, lambda t: t.cell)


def rerank_subjects(store: Store, top_k: int, objective: str = "miou", min_distance: int = 0,
                    seeds: int = 1) -> list[tuple[Subject, int]]:
  """(subject, proxy trial id) for every candidate and done baseline under every seed."""
  chosen = rerank_candidates(store, top_k, objective, min_distance)
  chosen += [t for t in store.trials("done") if t.is_baseline and t.score is not None]
  seed_list = [None] + list(range(1, seeds))  # seed 0 is the configured one: the plain subject
  return [(t.subject if s is None else t.subject.with_seed(s), t.id)
          for t in chosen for s in seed_list]


def planned_entries(rerank_store: Store,
                    wanted: Sequence[tuple[Subject, int]]) -> list[tuple[Subject, int]]:
  """The re-rank set: the rows rerank_store holds (in id order, the suggestion order), then
  the wanted (subject, proxy trial id) pairs it does not hold yet."""
  held = [(trial.subject, trial.parent) for trial in rerank_store.trials()]
  fingerprints = {subject.fingerprint() for subject, _ in held}
  return held + [(s, parent) for s, parent in wanted if s.fingerprint() not in fingerprints]


def mean_and_stderr(values: Sequence[float]) -> tuple[float, Optional[float]]:
  """Mean and standard error (sample std / sqrt(n)); no error with fewer than 2 values."""
  mean = statistics.fmean(values)
  return mean, (statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None)


def copy_rerank_scores(rerank_store: Store, store: Store) -> int:
  """Each proxy trial's re-rank mean (and per-seed scores) onto it; returns the count."""
  runs: dict[int, list[Trial]] = {}
  for trial in rerank_store.trials("done"):
    if trial.score is not None:
      runs.setdefault(trial.parent, []).append(trial)
  for parent, trials in runs.items():
    scores = [t.score for t in trials]
    mean, stderr = mean_and_stderr(scores)
    record = {"n": len(scores), "stderr": stderr,
              "scores": [[t.subject.seed or 0, t.score] for t in trials],
              "runs": [t.record or {} for t in trials]}
    store.set_rerank(parent, mean, record)
  return len(runs)
