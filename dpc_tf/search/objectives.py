"""What 'best' means: the objective's order, the Pareto front, and the distance of two cells.

Objectives (`search_algorithm.objective`):
- 'miou': best proxy score first (ties: the earlier trial).
- 'pareto': proxy mIOU against head branch MAdds. Cells are ordered by Pareto rank (1: the
  non-dominated front; 2: the front once rank 1 is removed, i.e. its nearest neighbours;
  ...), then by score. So the top k (mutation parents, the re-rank set) are the front and
  the fronts behind it until k cells are reached. A trial whose record has no branch_madds
  has no place on the plane and is left out.

A point a dominates b when a.madds <= b.madds and a.score >= b.score with one of the two
strict; equal points dominate neither, and share a rank.

Distance of two cells, in branch edits (`search_pipeline.rerank_min_distance`): the minimum,
over matchings of the branches of one cell to those of the other, of the number of matched
branch pairs whose operator differs or whose input differs once renamed by the matching
(the backbone features F match F), plus one per unmatched branch when the sizes differ. It
is 0 exactly for cells that are the same up to renumbering branches, and is symmetric. 5
branches: 120 matchings, microseconds; cells over 7 branches fall back to the identity
matching plus the size difference (an upper bound).

Pure Python (no TensorFlow): the driver and the algorithm use it.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Optional, Sequence, TypeVar

from dpc_tf.search.errors import SearchError
from dpc_tf.search_space import FEATURES, Cell

OBJECTIVES = ("miou", "pareto")
_MAX_MATCHED_BRANCHES = 7
T = TypeVar("T")


def check_objective(objective: str) -> str:
  if objective not in OBJECTIVES:
    raise SearchError(f"search_algorithm.objective = {objective!r}; choose one of: "
                      f"{', '.join(OBJECTIVES)}")
  return objective


def _finite(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def pareto_ranks(points: Sequence[tuple[float, float]]) -> list[int]:
  """Rank (1 = non-dominated) of each (score, madds) point; higher score, lower madds win.

  One sweep per front, points sorted by (madds, -score): a point is dominated iff an earlier
  point has a higher score, or the same score at strictly lower madds.
  """
  ranks = [0] * len(points)
  remaining = sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][0]))
  rank = 0
  while remaining:
    rank += 1
    best, best_madds, rest = -math.inf, math.inf, []
    for i in remaining:
      score, madds = points[i]
      if score < best or (score == best and best_madds < madds):
        rest.append(i)
        continue
      ranks[i] = rank
      if score > best:
        best, best_madds = score, madds
    remaining = rest
  return ranks


def order(items: Sequence[T], objective: str, score: Callable[[T], float],
          madds: Callable[[T], Optional[float]], index: Callable[[T], int]) -> list[T]:
  """Items with a finite score, best first under the objective (ties: lower index)."""
  scored = [x for x in items if _finite(score(x))]
  if objective == "miou":
    return sorted(scored, key=lambda x: (-score(x), index(x)))
  costed = [x for x in scored if _finite(madds(x))]
  ranks = pareto_ranks([(score(x), madds(x)) for x in costed])
  return [x for _, x in sorted(zip(ranks, costed), key=lambda p: (p[0], -score(p[1]), index(p[1])))]


def cell_distance(a: Cell, b: Cell) -> int:
  """Branch edits between two cells (module doc)."""
  if len(a) > len(b):
    a, b = b, a
  extra = len(b) - len(a)
  if len(b) > _MAX_MATCHED_BRANCHES:
    return extra + _cost(a, b, tuple(range(len(a))))
  return extra + min(_cost(a, b, m) for m in itertools.permutations(range(len(b)), len(a)))


def _cost(a: Cell, b: Cell, matching: tuple[int, ...]) -> int:
  """Differing matched pairs; branch i of a is branch matching[i] of b."""
  edits = 0
  for i, branch in enumerate(a.branches):
    other = b.branches[matching[i]]
    wanted = FEATURES if branch.input == FEATURES else matching[branch.input]
    edits += branch.op != other.op or other.input != wanted
  return edits


def diverse(items: Sequence[T], count: int, min_distance: int,
            cell: Callable[[T], Cell]) -> list[T]:
  """The first `count` items (in the given order) no two of which are closer than
  min_distance branch edits: greedy, each item kept if far enough from every kept one."""
  kept: list[T] = []
  for item in items:
    if len(kept) >= count:
      break
    if all(cell_distance(cell(item), cell(k)) >= min_distance for k in kept):
      kept.append(item)
  return kept
