import math
import random

import pytest

from dpc_tf.utils import stats


def test_ranks_average_ties():
  assert stats.ranks([3, 1, 3, 2]) == [3.5, 1.0, 3.5, 2.0]
  assert stats.ranks([]) == []


@pytest.mark.parametrize("seed", [0, 1])
def test_spearman_matches_scipy_with_ties(seed):
  scipy_stats = pytest.importorskip("scipy.stats")
  rng = random.Random(seed)
  x = [rng.randint(0, 4) for _ in range(30)]
  y = [a + rng.random() * 3 for a in x]
  assert stats.spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic, abs=1e-12)


def test_spearman_edge_cases():
  assert stats.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
  assert math.isnan(stats.spearman([1], [2]))
  assert math.isnan(stats.spearman([1, 2, 3], [5, 5, 5]))
  with pytest.raises(ValueError, match="paired values"):
    stats.spearman([1, 2], [1])
