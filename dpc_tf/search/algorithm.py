"""Random search with sampling near the best cells, as in the paper (Google Vizier style).

Each suggestion is, with probability `p_uniform`, a cell drawn uniformly from the space and
otherwise a mutation of one of the `top_k` best finished cells (one branch changes its input,
operator or one rate/grid component). Before any result exists every suggestion is uniform.
A cell is never suggested twice: the canonical fingerprint of every trial ever created
(finished, running, pending or failed) is excluded.

Determinism. Suggestion `index` draws from an RNG derived from (seed, index) alone, not from a
generator whose state depends on how many calls came before. So given the seed and the
history (cells seen, scores of finished trials) the suggestion is fixed: a search that was
killed and restarted makes exactly the suggestions the uninterrupted search would have made,
as long as the history at each index is the same (always true with one worker; with several
workers the history depends on which trials happen to finish first).

Objectives and constraints (objectives.py): with objective 'pareto' the top-k parents are
the Pareto front of proxy mIOU against branch MAdds and the fronts behind it. With
max_branch_madds / max_branch_params a cell over a limit is never suggested: its cost is
known before training (`cost_fn`, the trial function's analytic branch costs), uniform draws
and mutation steps skip it, and a space where max_draws draws find no allowed unseen cell
is a SearchError rather than an endless loop.

Fidelity (halving.py): 'flat' gives every cell one proxy trial of proxy_trial.steps;
'successive_halving' runs cells over `rungs` of proxy steps and promotes the best
1/reduction_factor of each rung asynchronously (the Coordinator applies the rule). Either way
`budget` is the number of trials at full fidelity, so both spend the same compute.

This module is pure Python: no TensorFlow, no engine; engines and the store call it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import math
import random
from typing import Callable, Collection, Optional, Sequence

from dpc_tf.search import checks, halving, objectives, warm_start as warm
from dpc_tf.search.errors import SearchError
from dpc_tf.search_space import Cell, enumerate_cells, mutate_cell, sample_cell, space_size

_ENUMERATE_LIMIT = 200_000  # spaces up to this many labelled cells are enumerated when sampling stalls


@dataclasses.dataclass(frozen=True)
class Observation:
  """A finished trial as the algorithm sees it."""
  index: int
  cell: Cell
  score: float
  madds: Optional[float] = None  # branch multiply-adds (the 'pareto' objective's cost)


@dataclasses.dataclass(frozen=True)
class History:
  """What the algorithm may condition on: every fingerprint ever suggested, and the scores."""
  seen: Collection[str]
  observations: Sequence[Observation]


@dataclasses.dataclass(frozen=True)
class Suggestion:
  index: int
  cell: Cell
  # How it was made (the store's and results.csv's `origin`): uniform before any result
  # ('initial'), uniform by the coin ('uniform'), a mutation of a top-k cell ('mutation'),
  # uniform because no unseen mutation was found ('fallback'); another search's best cell
  # ('warm_start') or a mutation of one ('warm_mutation'), see warm_start.py; rerank.py's
  # is 'rerank'.
  origin: str
  parent: Optional[int] = None  # index of the mutated trial, for 'mutation'


class RandomSearch:
  """The paper's search strategy. Stateless between calls: all state is in the History."""

  def __init__(self, num_branches: int = 5, budget: int = 100, p_uniform: float = 0.5,
               top_k: int = 10, seed: int = 0, mutation_steps: int = 32,
               max_draws: int = 10_000, objective: str = "miou",
               max_branch_madds: Optional[float] = None,
               max_branch_params: Optional[float] = None,
               cost_fn: Optional[Callable[[Cell], tuple[float, float]]] = None,
               rungs: Optional[halving.Rungs] = None,
               warm_start: Optional[warm.WarmStart] = None):
    if not isinstance(num_branches, int) or num_branches < 1:
      raise SearchError(f"num_branches must be an integer >= 1, got {num_branches!r}")
    if not isinstance(budget, int) or budget < 1:
      raise SearchError(f"the budget (number of proxy trials) must be >= 1, got {budget!r}")
    if not 0.0 <= p_uniform <= 1.0:
      raise SearchError(f"p_uniform must be in [0, 1], got {p_uniform!r}")
    if not isinstance(top_k, int) or top_k < 1:
      raise SearchError(f"top_k must be an integer >= 1, got {top_k!r}")
    self.num_branches = num_branches
    self.budget = budget
    self.p_uniform = float(p_uniform)
    self.top_k = top_k
    self.seed = int(seed)
    self.mutation_steps = mutation_steps
    self.max_draws = max_draws
    self.objective = objectives.check_objective(objective)
    for name, limit in (("max_branch_madds", max_branch_madds),
                        ("max_branch_params", max_branch_params)):
      if limit is not None and not limit > 0:
        raise SearchError(f"search_algorithm.{name} must be > 0, got {limit!r}")
    self.max_branch_madds = max_branch_madds
    self.max_branch_params = max_branch_params
    self.cost_fn = cost_fn  # cell -> (branch params, branch madds); the pipeline sets it
    self.rungs = rungs  # None: flat (one full trial per cell); else successive halving
    self.warm_start = warm_start  # another search's best cells, proposed first (warm_start.py)

  @property
  def constrained(self) -> bool:
    return self.max_branch_madds is not None or self.max_branch_params is not None

  def allowed(self, cell: Cell) -> bool:
    """Whether `cell` is within the cost limits (always, without limits)."""
    if not self.constrained:
      return True
    if self.cost_fn is None:
      raise SearchError("search_algorithm.max_branch_madds/max_branch_params need the trial "
                        "function's analytic costs (a branch_costs method); this one has none")
    params, madds = self.cost_fn(cell)
    return ((self.max_branch_params is None or params <= self.max_branch_params)
            and (self.max_branch_madds is None or madds <= self.max_branch_madds))

  def _limits(self) -> str:
    return ", ".join(f"{n} = {v:g}" for n, v in (("max_branch_madds", self.max_branch_madds),
                                                  ("max_branch_params", self.max_branch_params))
                     if v is not None)

  def rng(self, index: int) -> random.Random:
    """The RNG of suggestion `index`: a function of (seed, index) only."""
    digest = hashlib.sha256(f"dpc_tf.search:{self.seed}:{index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))

  def top(self, observations: Sequence[Observation]) -> list[Observation]:
    """The top-k under the objective, best first; ties go to the earlier trial (deterministic)."""
    if self.objective == "miou":
      finite = (o for o in observations
                if isinstance(o.score, (int, float)) and math.isfinite(o.score))
      return heapq.nsmallest(self.top_k, finite, key=lambda o: (-o.score, o.index))
    return objectives.order(observations, self.objective, lambda o: o.score,
                            lambda o: o.madds, lambda o: o.index)[:self.top_k]

  def suggest(self, index: int, history: History) -> Suggestion:
    rng = self.rng(index)
    top = self.top(history.observations)
    coin = rng.random()  # always drawn, so later draws do not depend on whether top is empty
    if self.warm_start is not None:
      cell = self.warm_start.next_cell(history.seen, self.allowed)
      if cell is not None:
        return Suggestion(index, cell, warm.ORIGIN)
      parents = self.warm_start.chosen(self.allowed)
      if not top and parents and coin >= self.p_uniform:  # no result here yet: start from them
        cell = self._mutate(parents[rng.randrange(len(parents))], rng, history.seen)
        if cell is not None:
          return Suggestion(index, cell, warm.MUTATION_ORIGIN)
    if not top:
      return Suggestion(index, self._uniform(rng, history.seen), "initial")
    if coin < self.p_uniform:
      return Suggestion(index, self._uniform(rng, history.seen), "uniform")
    parent = top[rng.randrange(len(top))]
    cell = self._mutate(parent.cell, rng, history.seen)
    if cell is not None:
      return Suggestion(index, cell, "mutation", parent.index)
    return Suggestion(index, self._uniform(rng, history.seen), "fallback")

  def _mutate(self, cell: Cell, rng: random.Random, seen: Collection[str]) -> Optional[Cell]:
    """A random walk away from `cell` until it reaches an unseen cell (usually one step)."""
    current = cell
    for _ in range(self.mutation_steps):
      current = mutate_cell(current, rng)
      if current.fingerprint() not in seen and self.allowed(current):
        return current
    return None

  def _uniform(self, rng: random.Random, seen: Collection[str]) -> Cell:
    for _ in range(self.max_draws):
      cell = sample_cell(rng, self.num_branches)
      if cell.fingerprint() not in seen and self.allowed(cell):
        return cell
    if space_size(self.num_branches) <= _ENUMERATE_LIMIT:
      unseen = [c for c in enumerate_cells(self.num_branches, unique=True)
                if c.fingerprint() not in seen and self.allowed(c)]
      if unseen:
        return unseen[rng.randrange(len(unseen))]
    if self.constrained:
      raise SearchError(f"no untried {self.num_branches}-branch cell within {self._limits()} "
                        f"was found in {self.max_draws} draws ({len(seen)} cells tried); "
                        "raise the limit or lower search_algorithm.num_branches")
    raise SearchError(f"the search space of {self.num_branches}-branch cells is exhausted: "
                      f"{len(seen)} distinct cells were already tried")


@checks.configurable("search_algorithm")
def make_algorithm(num_branches: int = 5, budget: int = 100, p_uniform: float = 0.5,
                   top_k: int = 10, seed: int = 0, objective: str = "miou",
                   max_branch_madds: Optional[float] = None,
                   max_branch_params: Optional[float] = None, fidelity: str = "flat",
                   rungs: Sequence[int] = (100, 300, 900),
                   reduction_factor: int = 3,
                   warm_start: Optional[str] = None,
                   warm_start_cells: Optional[int] = None) -> RandomSearch:
  """The configured algorithm. `budget` is the number of proxy trials (--budget overrides);
  with fidelity 'successive_halving', trials at the top rung (budget * rungs[-1] proxy
  steps, halving.py), so flat and halving searches of one budget spend the same compute.

  objective: 'miou' or 'pareto' (mIOU against branch MAdds, objectives.py); the limits are
  in the trial's cost convention (branch convolution kernels, its feature map size).

  p_uniform and top_k are not given by the paper; 0.5 and 10 balance exploration of the 4e11
  cell space against refinement of the best cells found.

  fidelity: 'flat' (every cell one trial of proxy_trial.steps) or 'successive_halving'
  (rungs: proxy steps per rung, which replace proxy_trial.steps; reduction_factor: the best
  1/reduction_factor of a rung is promoted).

  warm_start: another search's results.csv (or its search_dir): its best warm_start_cells
  (default top_k) cells are proposed first and used as parents (warm_start.py).
  """
  if warm_start_cells is not None and warm_start_cells < 1:
    raise SearchError(f"search_algorithm.warm_start_cells must be >= 1, got {warm_start_cells}")
  warm_cells = None
  if warm_start is not None:
    warm_cells = warm.WarmStart.read(warm_start, num_branches,
                                     objectives.check_objective(objective),
                                     warm_start_cells or top_k)
  return RandomSearch(num_branches=num_branches, budget=budget, p_uniform=p_uniform,
                      top_k=top_k, seed=seed, objective=objective,
                      max_branch_madds=max_branch_madds, max_branch_params=max_branch_params,
                      rungs=halving.make_rungs(fidelity, rungs, reduction_factor),
                      warm_start=warm_cells)
