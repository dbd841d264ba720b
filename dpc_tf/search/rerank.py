"""Re-ranking: the top-K cells by proxy score, trained end to end, as a second tiny search.

The paper re-ranked its top 50 proxy cells by training the whole model; the winner was 12th
by proxy score. Here the re-rank is a search whose 'algorithm' hands out a fixed list (the
top-K proxy trials, best first), with its own store DIR/rerank.sqlite, run by the same
engine: it is parallel on a cluster, retried on failure and resumable exactly like the proxy
search. Finished re-rank scores are copied into the main store (rerank_score), which is what
results.csv and best_cells read.
"""

from __future__ import annotations

import math
from typing import Sequence

from dpc_tf.search.algorithm import History, Observation, Suggestion
from dpc_tf.search.errors import SearchError
from dpc_tf.search.store import Store, Trial


class FixedCells:
  """An 'algorithm' that suggests the given trials' cells in order; parent = proxy trial id."""

  def __init__(self, trials: Sequence[Trial]):
    if not trials:
      raise SearchError("nothing to re-rank: the search has no finished trial with a score")
    self.trials = list(trials)
    self.budget = len(self.trials)

  def top(self, observations: Sequence[Observation]) -> list[Observation]:
    finite = [o for o in observations if math.isfinite(o.score)]
    return sorted(finite, key=lambda o: (-o.score, o.index))

  def suggest(self, index: int, history: History) -> Suggestion:
    del history
    source = self.trials[index]
    return Suggestion(index, source.cell, "rerank", source.id)


def rerank_candidates(store: Store, top_k: int) -> list[Trial]:
  """The top_k done trials by proxy score, best first (ties: earlier trial)."""
  done = [t for t in store.trials("done") if t.score is not None]
  return sorted(done, key=lambda t: (-t.score, t.id))[:top_k]


def check_rerank_store(rerank_store: Store, candidates: Sequence[Trial]) -> None:
  """A resumed re-rank must be re-ranking the same cells, in the same order."""
  for trial in rerank_store.trials():
    if trial.id >= len(candidates) or trial.fingerprint != candidates[trial.id].fingerprint:
      raise SearchError(f"{rerank_store.path} re-ranks other cells than the current top "
                        f"{len(candidates)} (row {trial.id}: {trial.cell_text}); delete it "
                        "to re-rank again")


def copy_rerank_scores(rerank_store: Store, store: Store) -> int:
  """rerank_score of each finished re-rank trial onto its proxy trial; returns the count."""
  count = 0
  for trial in rerank_store.trials("done"):
    store.set_rerank(trial.parent, trial.score, trial.record or {})
    count += 1
  return count
