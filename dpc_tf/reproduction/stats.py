"""Statistics for the claims: Spearman p-values, seed noise, best-so-far curves.

Ranks and Spearman's rho live in dpc_tf.utils.stats (the search uses them too).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

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


def sample_sd(xs: Sequence[float]) -> float:
  """Sample standard deviation (n - 1 denominator); 0 for fewer than two values."""
  if len(xs) < 2:
    return 0.0
  mean = sum(xs) / len(xs)
  return math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


def standard_error(xs: Sequence[float]) -> Optional[float]:
  """Standard error of the mean of xs (None below two values)."""
  return sample_sd(xs) / math.sqrt(len(xs)) if len(xs) >= 2 else None


def seed_noise(by_seed: Sequence[Sequence[float]]) -> dict:
  """How repeatable a ranking of cells is: by_seed[s][i] is cell i's score under seed s.

  retest_rho: mean Spearman rho between two seeds' scores of the same cells (a second run's
  agreement with the first); reliability: the Spearman-Brown reliability of the mean over
  all the seeds, k r / (1 + (k - 1) r) (0 when r <= 0); within_sd: mean over cells of the
  seed-to-seed standard deviation; between_sd: the standard deviation of the cells' means.
  """
  k, n = len(by_seed), len(by_seed[0])
  if k < 2 or n < 3:
    raise ValueError(f"seed noise needs >= 2 seeds and >= 3 cells, got {k} and {n}")
  pairs = [spearman(by_seed[a], by_seed[b]) for a in range(k) for b in range(a + 1, k)]
  r = sum(pairs) / len(pairs)
  per_cell = [[by_seed[s][i] for s in range(k)] for i in range(n)]
  means = [sum(c) / k for c in per_cell]
  return {"retest_rho": r, "retest_rhos": pairs,
          "reliability": k * r / (1 + (k - 1) * r) if r > 0 else 0.0,
          "within_sd": sum(sample_sd(c) for c in per_cell) / n, "between_sd": sample_sd(means)}


def rho_ceiling(reliability_a: float, reliability_b: float) -> float:
  """The rank correlation two noisy measurements can reach when the quantities they measure
  agree perfectly: sqrt of the product of their reliabilities (Spearman's attenuation)."""
  return math.sqrt(max(reliability_a, 0.0) * max(reliability_b, 0.0))
