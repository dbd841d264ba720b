"""results.csv, best cells, plots, progress lines, config identity, stage wiring."""

import csv
import dataclasses
import inspect
import json
import math
import os
import pickle
import random
import sys

import gin
import pytest
from scipy import stats

from dpc_tf.proxy.trial import TrialConfig
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

  writer(FakeCoordinator(False), store.get(0))  # the first result is written at once
  with open(tmp_path / "r.csv") as f:
    assert [r["cell"] for r in csv.DictReader(f)] == [CELLS[0].text]
  os.remove(tmp_path / "r.csv")
  writer(FakeCoordinator(False), store.get(0))  # inside the interval: not rewritten
  assert not os.path.exists(tmp_path / "r.csv")
  writer(FakeCoordinator(True), store.get(0))  # the last one always is
  assert os.path.exists(tmp_path / "r.csv")


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


def test_plots_show_the_store(tmp_path):
  """Each figure is drawn from the store's numbers (SVG keeps the text, so it can be read)."""
  pytest.importorskip("matplotlib")
  store = _store(tmp_path, [0.5, None, 0.7, 0.6], reranks={0: 0.9, 2: 0.95, 3: 0.8})
  written = plots.write_plots(store, str(tmp_path / "plots"))
  assert written == {
      "proxy_scores": str(tmp_path / "plots" / "proxy_scores.png"),
      "proxy_vs_rerank": str(tmp_path / "plots" / "proxy_vs_rerank.png"),
      "spearman_rho": pytest.approx(0.5),  # trials 0, 2, 3: proxy ranks 1, 3, 2, re-rank 2, 3, 1
      "spearman_n": 3,
      "pareto": str(tmp_path / "plots" / "pareto.png"),
      "best_cell": str(tmp_path / "plots" / "best_cell.png")}
  for key in ("proxy_scores", "proxy_vs_rerank", "pareto", "best_cell"):
    with open(written[key], "rb") as f:
      assert f.read(4) == b"\x89PNG"
  svg = tmp_path / "scores.svg"
  plots.plot_score_distribution([0.5, 0.7, 0.6], str(svg))
  assert "Proxy scores of 3 cells" in svg.read_text() and "best 0.7000" in svg.read_text()
  _, rho = plots.plot_proxy_vs_rerank([0.5, 0.7, 0.6], [0.9, 0.95, 0.8], str(svg))
  assert rho == pytest.approx(0.5) and "Spearman rho = 0.500 (n = 3 cells)" in svg.read_text()
  plots.draw_cell(CELLS[3], str(svg), "trial 3")
  assert "trial 3" in svg.read_text() and "rate 3x3" in svg.read_text()


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
  gin.parse_config(f"search_cache.cache_dir = '{tmp_path}/cache'\nsearch_cache.build = True\n"
                   "search_backbone.maker = @proxy_backbone")
  assert stages.backbone_stage() == (None, stages.proxy_backbone)
  cache_dir, builder = stages.cache_stage()
  assert (cache_dir, builder) == (f"{tmp_path}/cache", stages.build_proxy_cache)
  os.makedirs(cache_dir)
  with open(os.path.join(cache_dir, "manifest.json"), "w") as f:
    json.dump({"roles": {"train": {"complete": True}, "eval": {"complete": False}}}, f)
  assert stages.cache_stage() == (cache_dir, stages.build_proxy_cache)  # unfinished: rebuilt
  with open(os.path.join(cache_dir, "manifest.json"), "w") as f:
    json.dump({"roles": {"train": {"complete": True}, "eval": {"complete": True}}}, f)
  # complete: still through the builder, which checks the cache's identity before reusing it
  assert stages.cache_stage() == (cache_dir, stages.build_proxy_cache)
  gin.parse_config("search_cache.build = False")
  assert stages.cache_stage() == (cache_dir, None)  # complete and build=False: trusted
  with pytest.raises(SearchError, match="needs a feature cache"):
    stages.proxy_task(None)
  # What the stage subprocess and the workers receive travels by reference, not by value.
  for fn in (stages.proxy_backbone, stages.build_proxy_cache):
    assert pickle.loads(pickle.dumps(fn)) is fn


def test_trial_functions_carry_their_settings(tmp_path):
  from dpc_tf.proxy import config as proxy_config  # noqa: F401  registers proxy_trial
  gin.parse_config("proxy_trial.steps = 7\nproxy_trial.learning_rate = 1\n"
                   "rerank_trial.num_steps = 3\nrerank_trial.train_overrides = {'seed': 2}\n"
                   "rerank_trial.model_overrides = {'depth_multiplier': 0.5}")
  trial = pickle.loads(pickle.dumps(stages.proxy_task(str(tmp_path))))
  defaults = dataclasses.asdict(TrialConfig())
  assert trial == stages.ProxyTrial(str(tmp_path), dict(defaults, steps=7, learning_rate=1))
  rerank = pickle.loads(pickle.dumps(stages.rerank_trial("ckpt", str(tmp_path))))
  assert rerank == stages.RerankTrial(str(tmp_path), "ckpt", True, {"seed": 2}, {
      "num_steps": 3, "model_overrides": {"depth_multiplier": 0.5}})


def test_rerank_settings_are_train_and_evaluate_arguments():
  """rerank_trial spells train_and_evaluate's arguments out (so gin checks the names in the
  driver); this keeps the two lists from drifting apart."""
  from dpc_tf.training import train_and_evaluate  # pylint: disable=import-outside-toplevel
  own = {"checkpoint", "work_dir", "init_from_checkpoint"}
  forwarded = set(inspect.signature(stages.rerank_trial).parameters) - own
  assert forwarded <= set(inspect.signature(train_and_evaluate).parameters)
  assert {"num_steps", "dataset", "max_eval_examples", "model_overrides"} <= forwarded


def test_missing_ray_is_a_one_line_error(monkeypatch):
  from dpc_tf.search.engines import ray_tune  # pylint: disable=import-outside-toplevel
  monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without the extra sees
  with pytest.raises(SearchError, match=r"the ray engine needs Ray Tune: pip install") as info:
    ray_tune.import_ray()
  assert "\n" not in str(info.value)
