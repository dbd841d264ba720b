"""Successive halving over proxy steps, asynchronous (ASHA, Li et al. 2020): the rule alone.

A cell's proxy trial is cut into rungs of increasing step counts, e.g. (100, 300, 900): every
new cell runs the first rung; a cell finished at rung k is promoted to rung k+1 as soon as
it is among the best 1/eta (eta = reduction_factor) of all cells that finished rung k so far
(ASHA's rule: no waiting for a full rung, so a free worker always has work: a promotion if
one is due, else a new cell). A promoted cell continues from its head checkpoint at rung k
(it trains rung[k+1] - rung[k] more steps); the poly learning rate runs over the top rung's
steps, so a cell promoted to the top has had exactly the training of one uninterrupted
top-rung trial.

Compute is counted in proxy steps: a new cell costs rungs[0], a promotion from k costs
rungs[k+1] - rungs[k]. The search's budget is `budget` trials at the top rung, i.e.
budget * rungs[-1] steps, so a flat search of `budget` trials of rungs[-1] steps and a
halving search with the same budget spend the same compute.

Pure Python, no store: the Coordinator feeds it what the store holds.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Sequence

from dpc_tf.search.errors import SearchError

FIDELITIES = ("flat", "successive_halving")


@dataclasses.dataclass(frozen=True)
class Rungs:
  """The rungs (proxy steps, increasing) and the reduction factor eta."""
  steps: tuple[int, ...]
  reduction_factor: int = 3

  def __post_init__(self):
    steps = self.steps
    if (not isinstance(steps, tuple) or len(steps) < 2
        or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in steps)
        or any(b <= a for a, b in zip(steps, steps[1:]))):
      raise SearchError(f"search_algorithm.rungs must be two or more increasing step counts "
                        f">= 1, e.g. (100, 300, 900); got {steps!r}")
    eta = self.reduction_factor
    if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
      raise SearchError(f"search_algorithm.reduction_factor must be an integer >= 2, got {eta!r}")

  @property
  def top(self) -> int:
    return len(self.steps) - 1

  def cost(self, rung: int) -> int:
    """Proxy steps a job at `rung` trains (rung 0 from scratch, later ones continued)."""
    return self.steps[0] if rung == 0 else self.steps[rung] - self.steps[rung - 1]

  def min_cost(self) -> int:
    return min(self.cost(r) for r in range(len(self.steps)))

  def promotion(self, finished: Mapping[int, Sequence[tuple[int, float]]],
                promoted: Mapping[int, set[int]], fits: int) -> Optional[tuple[int, int]]:
    """The next promotion as (trial id, rung to run), or None.

    finished[k]: (trial id, score) of every cell that finished rung k (scores finite);
    promoted[k]: ids already promoted from rung k (running, done or failed there);
    fits: proxy steps the budget still allows. Higher rungs first (they finish the cells
    closest to a full score); within a rung the best score first, ties to the lower id.
    """
    for rung in range(self.top - 1, -1, -1):
      if self.cost(rung + 1) > fits:
        continue
      results = finished.get(rung, ())
      quota = len(results) // self.reduction_factor
      if quota == 0:
        continue
      best = sorted(results, key=lambda r: (-r[1], r[0]))[:quota]
      done = promoted.get(rung, set())
      for trial_id, _ in best:
        if trial_id not in done:
          return trial_id, rung + 1
    return None


def make_rungs(fidelity: str, rungs: Sequence[int], reduction_factor: int) -> Optional[Rungs]:
  """Rungs for 'successive_halving', None for 'flat' (one trial = proxy_trial.steps)."""
  if fidelity not in FIDELITIES:
    raise SearchError(f"search_algorithm.fidelity must be one of {', '.join(FIDELITIES)}, "
                      f"got {fidelity!r}")
  if fidelity == "flat":
    return None
  return Rungs(tuple(rungs), reduction_factor)
