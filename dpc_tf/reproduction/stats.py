"""Statistics for the claims: Spearman p-values and best-so-far curves.

Ranks and Spearman's rho live in dpc_tf.utils.stats (the search uses them too).
"""

from __future__ import annotations

import math
from typing import Sequence

from dpc_tf.utils.stats import pearson, ranks, spearman  # pylint: disable=unused-import


def spearman_pvalue(rho: float, n: int) -> float:
  """Two-sided p-value of rho by the t approximation (as scipy.stats.spearmanr)."""
  if not math.isfinite(rho) or n < 3:
    return float("nan")
  if abs(rho) >= 1.0:
    return 0.0
  t = rho * math.sqrt((n - 2) / (1.0 - rho * rho))
  try:
    from scipy import stats  # pylint: disable=import-outside-toplevel
    return float(2 * stats.t.sf(abs(t), n - 2))
  except ImportError:
    return float("nan")


def best_so_far(scores: Sequence[float]) -> list[float]:
  out, best = [], float("-inf")
  for s in scores:
    best = max(best, s)
    out.append(best)
  return out


def mean_curve(curves: Sequence[Sequence[float]]) -> list[float]:
  """Pointwise mean over curves, up to the shortest one."""
  length = min(len(c) for c in curves)
  return [sum(c[i] for c in curves) / len(curves) for i in range(length)]
