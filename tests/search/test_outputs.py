"""results.csv, best cells, plots helpers, progress lines, config identity, stage wiring."""

import csv
import json
import math
import os
import random
import sys

import gin
import pytest
from scipy import stats

from dpc_tf.search import identity, plots, results, stages
from dpc_tf.search.errors import SearchError
from dpc_tf.search.progress import Progress, format_duration
from dpc_tf.search.store import Store
from dpc_tf.search_space import Cell

CELLS = [Cell.from_text(t) for t in ("F:conv1x1", "F:pool@1x1", "F:sep3x3@1x1", "F:sep3x3@3x3")]


def _store(tmp_path, scores, reranks=None):
  store = Store(str(tmp_path / "t.sqlite"))
  for i, (cell, score) in enumerate(zip(CELLS, scores)):
    store.add(i, cell, "initial")
    store.start(i)
    if score is None:
      store.fail(i, "ValueError: bad\n\ntraceback", max_attempts=1)
    else:
      store.finish(i, {"miou": score, "branch_params": 10 * i, "branch_madds": 100 * i}, score, 1.5)
  for i, value in (reranks or {}).items():
    store.set_rerank(i, value, {"miou": value})
  return store


def test_results_csv_rows_and_best_cells(tmp_path):
  store = _store(tmp_path, [0.5, None, 0.7, 0.6], reranks={0: 0.9, 3: 0.8})
  results.write_results_csv(store, str(tmp_path / "results.csv"))
  with open(tmp_path / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["trial_id"] for r in rows] == ["0", "1", "2", "3"]
  assert rows[1]["status"] == "failed" and rows[1]["error"] == "ValueError: bad"
  assert rows[1]["proxy_miou"] == "" and rows[0]["rerank_miou"] == "0.9"
  assert (rows[3]["cell"], rows[3]["branch_params"], rows[3]["seconds"]) == \
      ("F:sep3x3@3x3", "30", "1.5")
  # re-ranked first by re-rank score (0, 3), then by proxy score (2)
  assert [t.id for t in results.ranking(store)] == [0, 3, 2]
  paths = results.write_best_cells(store, str(tmp_path / "best"), count=2)
  assert [os.path.basename(p) for p in paths] == ["rank_1.json", "rank_2.json"]
  assert Cell.load(paths[1]).text == "F:sep3x3@3x3"
  assert json.loads(open(paths[0]).read()) == [{"kernel": 1, "op": "conv", "input": -1}]


def test_results_writer_rate_limit(tmp_path):
  store = _store(tmp_path, [0.5])
  writer = results.ResultsWriter(str(tmp_path / "r.csv"), min_interval_s=3600)

  class FakeCoordinator:
    def __init__(self, done):
      self.store, self._done = store, done

    def finished(self):
      return self._done

  writer(FakeCoordinator(False), store.get(0))
  first = os.stat(tmp_path / "r.csv").st_mtime_ns
  os.remove(tmp_path / "r.csv")
  writer(FakeCoordinator(False), store.get(0))  # inside the interval: not rewritten
  assert not os.path.exists(tmp_path / "r.csv")
  writer(FakeCoordinator(True), store.get(0))  # the last one always is
  assert os.path.exists(tmp_path / "r.csv") and first > 0


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
def test_spearman_matches_scipy_with_ties():
  rng = random.Random(0)
  for _ in range(20):
    n = rng.randrange(2, 30)
    x = [rng.choice([0.1, 0.2, 0.3, rng.random()]) for _ in range(n)]
    y = [rng.random() for _ in range(n)]
    expected = stats.spearmanr(x, y).statistic
    got = plots.spearman(x, y)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)
  assert plots.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
  assert math.isnan(plots.spearman([1], [2]))


def test_progress_line_and_eta():
  now = [100.0]
  lines = []
  progress = Progress(budget=10, min_interval_s=60, clock=lambda: now[0], log=lines.append)
  progress.begin({"pending": 0, "running": 0, "done": 2, "failed": 0})
  now[0] += 30  # three more finished in 30 s: 10 s each, 5 to go
  line = progress.line({"pending": 1, "running": 2, "done": 4, "failed": 1}, None)
  assert line.startswith("search: 5/10 finished (4 done, 1 failed), 2 running, 1 queued")
  assert "360.0 trials/h" in line and "ETA 50s" in line
  assert format_duration(3 * 3600 + 61) == "3h01m" and format_duration(2 * 86400) == "2d00h"
  assert format_duration(float("nan")) == "?"


def test_identity_ignores_how_long_and_where_but_not_what():
  base = "search_algorithm.seed = 0\nsearch_algorithm.budget = 10\nlocal_engine.workers = 2\n"
  same = "# Parameters\nsearch_algorithm.budget = 99\nsearch_algorithm.seed = 0\n"
  assert identity.identity_lines(base) == identity.identity_lines(same)
  assert identity.identity_lines(base) != identity.identity_lines(base + "proxy_trial.steps = 5")
  assert identity.binding_lines("a.b = [1,\n    2]\n# c\n") == ["a.b = [1, 2]"]


def test_identity_check_on_a_store(tmp_path):
  store = _store(tmp_path, [0.5])
  identity.check_identity(store, "search_algorithm.seed = 0", "DIR")
  identity.check_identity(store, "search_algorithm.seed = 0\nlocal_engine.workers = 4", "DIR")
  with pytest.raises(SearchError, match="seed = 0 -> search_algorithm.seed = 1"):
    identity.check_identity(store, "search_algorithm.seed = 1", "DIR")


def test_stage_wiring(tmp_path):
  missing = stages.LazyFunction("dpc_tf.no_such_module:f", {}, "stage (x)")
  with pytest.raises(SearchError, match=r"stage \(x\) needs dpc_tf.no_such_module.f"):
    missing(None)
  with pytest.raises(SearchError, match="does not define"):
    stages.LazyFunction("dpc_tf.search.plots:no_such_function")()
  assert stages.LazyFunction("dpc_tf.search.plots:spearman", {"y": [1, 2]})([2, 1]) == -1.0
  gin.parse_config(f"search_cache.cache_dir = '{tmp_path}/cache'\nsearch_cache.build = True\n"
                   "proxy_trial.steps = 7")
  cache_dir, builder = stages.cache_stage()
  assert cache_dir == f"{tmp_path}/cache" and builder.target == "dpc_tf.proxy:build_feature_cache"
  assert builder.with_defaults(checkpoint="ckpt").kwargs == {"cache_dir": cache_dir,
                                                             "checkpoint": "ckpt"}
  os.makedirs(cache_dir)
  with open(os.path.join(cache_dir, "manifest.json"), "w") as f:
    json.dump({"roles": {"train": {"complete": True}, "eval": {"complete": True}}}, f)
  assert stages.cache_stage() == (cache_dir, None)  # complete: reused, not rebuilt
  trial = stages.proxy_trial(cache_dir)
  assert trial.target == "dpc_tf.proxy.trial:run_proxy_trial"
  assert trial.kwargs == {"cache_dir": cache_dir, "steps": 7}
  assert stages.backbone_stage() == (None, None)


def test_missing_ray_is_a_one_line_error(monkeypatch):
  from dpc_tf.search.engines import ray_tune  # pylint: disable=import-outside-toplevel
  monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without the extra sees
  with pytest.raises(SearchError, match=r"the ray engine needs Ray Tune: pip install") as info:
    ray_tune.import_ray()
  assert "\n" not in str(info.value)
