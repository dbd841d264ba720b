"""Rank statistics in pure Python (no numpy / scipy needed): Spearman's rho with ties."""

from __future__ import annotations

import math
from typing import Sequence


def ranks(values: Sequence[float]) -> list[float]:
  """1-based ranks; ties share the mean of the ranks they span (scipy's 'average')."""
  order = sorted(range(len(values)), key=lambda i: values[i])
  result = [0.0] * len(values)
  i = 0
  while i < len(order):
    j = i
    while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
      j += 1
    for k in range(i, j + 1):
      result[order[k]] = (i + j) / 2.0 + 1.0
    i = j + 1
  return result


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
  """Pearson's r; NaN when either side is constant."""
  n = len(x)
  mx, my = sum(x) / n, sum(y) / n
  sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
  sxx = sum((a - mx) ** 2 for a in x)
  syy = sum((b - my) ** 2 for b in y)
  if sxx == 0 or syy == 0:
    return math.nan
  return sxy / math.sqrt(sxx * syy)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
  """Spearman's rho (Pearson's r of the tie-averaged ranks); NaN if undefined."""
  if len(x) != len(y):
    raise ValueError(f"spearman needs paired values, got {len(x)} and {len(y)}")
  if len(x) < 2:
    return math.nan
  return pearson(ranks(x), ranks(y))
