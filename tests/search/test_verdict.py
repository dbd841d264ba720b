"""Baselines, multi-seed re-ranking and the verdict: by hand on a store, and the fake demo."""

import csv
import json
import math
import os
import statistics

import gin
import pytest

from dpc_tf.search import objectives, subjects, verdict
from dpc_tf.search.errors import SearchError
from dpc_tf.search.fake_trial import ASPP_MIOU, FakeTrial, fake_miou
from dpc_tf.search.pipeline import pipeline_settings, run_pipeline
from dpc_tf.search.store import Store
from dpc_tf.search_space import CITYSCAPES_CELL, Cell

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAKE_CONFIG = os.path.join(ROOT, "gin", "search", "fake_demo.gin")


def test_subjects_travel_as_json_and_plain_cells_as_before():
  cell = Cell.from_text("F:conv1x1 0:sep3x3@3x3")
  assert subjects.Subject(cell).to_json_string() == cell.to_json_string()
  for subject in (subjects.Subject(cell), subjects.Subject(None, "aspp"),
                  subjects.Subject(None, "aspp", 2), subjects.Subject(cell, "released", 0)):
    assert subjects.decode(subject.to_json_string()) == subject
  assert subjects.Subject(None, "aspp", 2).fingerprint() == "baseline:aspp#seed2"
  calls = []
  subjects.call_trial(lambda *a, **k: calls.append((a, k)), subjects.Subject(None, "aspp", 1))
  subjects.call_trial(lambda *a, **k: calls.append((a, k)), subjects.Subject(cell))
  assert calls == [(("aspp",), {"seed": 1}), ((cell,), {})]
  assert [s.text for s in subjects.resolve_baselines(["aspp", "released", "F:conv1x1"])] == \
      ["aspp", CITYSCAPES_CELL.text, "F:conv1x1"]
  with pytest.raises(SearchError, match="is the same cell as 'released'"):
    subjects.resolve_baselines(["released", CITYSCAPES_CELL.text])
  with pytest.raises(SearchError, match="'deeplab' is not 'aspp', 'released'"):
    subjects.resolve_baselines(["deeplab"])
  gin.parse_config("search_pipeline.baselines = ['aspp', 'nonsense']")
  with pytest.raises(SearchError, match="'nonsense' is not"):
    pipeline_settings()


def test_fake_trial_scores_baselines_and_seeds_deterministically():
  trial = FakeTrial(seed_noise=0.02)
  assert trial("aspp")["miou"] == ASPP_MIOU and trial(CITYSCAPES_CELL)["miou"] == \
      fake_miou(CITYSCAPES_CELL)
  by_seed = [trial("aspp", seed=s)["miou"] for s in range(4)]
  assert by_seed == [trial("aspp", seed=s)["miou"] for s in range(4)]  # deterministic
  assert len(set(by_seed)) == 4 and all(abs(m - ASPP_MIOU) <= 0.01 for m in by_seed)


def _finished(store, trial_id, cell_or_subject, score, madds, params, seeds=None, baseline=False):
  if baseline:
    store.add_baseline(-trial_id - 1, cell_or_subject)
  else:
    store.add(trial_id, cell_or_subject, "initial")
  store.start(trial_id)
  store.finish(trial_id, {"miou": score, "branch_madds": madds, "branch_params": params},
               score, 1.0)
  if seeds:
    store.set_rerank(trial_id, statistics.fmean(seeds.values()),
                     {"scores": [[k, v] for k, v in seeds.items()], "n": len(seeds)})


def test_verdict_by_hand(tmp_path):
  store = Store(str(tmp_path / "t.sqlite"))
  _finished(store, -1, subjects.Subject(None, "aspp"), 0.60, 200, 60,
            {0: 0.65, 1: 0.70, 2: 0.66, 3: 0.5}, baseline=True)
  _finished(store, 0, Cell.from_text("F:conv1x1"), 0.62, 100, 30, {0: 0.70, 1: 0.72, 2: 0.69})
  result = verdict.verdict(store, store.get(0))
  # paired seeds 0, 1, 2 (ASPP's seed 3 has no partner): deltas 0.05, 0.02, 0.03
  assert result["seeds"] == [0, 1, 2] and result["n"] == 3 and result["score"] == "rerank"
  assert result["delta_miou"] == pytest.approx(0.1 / 3)
  sd = math.sqrt(((0.05 - 0.1 / 3) ** 2 + (0.02 - 0.1 / 3) ** 2 + (0.03 - 0.1 / 3) ** 2) / 2)
  assert result["stderr"] == pytest.approx(sd / math.sqrt(3))  # 0.00882: 2 s.e. < 0.0333
  assert (result["madds_ratio"], result["params_ratio"]) == (0.5, 0.5)
  assert result["label"] == "better, and cheaper"
  assert result["sentence"] == ("the chosen cell (trial 0) against ASPP: +0.0333 rerank mIOU "
                                "(+- 0.0088 over 3 paired seeds), at 0.50x its branch MAdds, "
                                "0.50x its branch params: better, and cheaper")
  assert verdict.judge(0.01, 0.006, 0.5) == "cheaper at equal accuracy"
  assert verdict.judge(0.01, 0.006, 1.5) == "within noise"
  assert verdict.judge(-0.02, 0.006, 1.5) == "worse"
  assert verdict.judge(0.01, None, 0.5) == ("higher on one run each, untested against noise, "
                                            "and cheaper")
  assert verdict.judge(-0.01, None, 1.5) == "lower on one run each, untested against noise"
  summary = verdict.baselines_summary(store)
  assert summary["aspp"]["proxy_miou"] == 0.60 and summary["aspp"]["branch_madds"] == 200
  assert summary["aspp"]["rerank_miou"] == pytest.approx(0.6275)
  # without a re-rank: the proxy scores, one run each, no error bar
  _finished(store, 1, Cell.from_text("F:pool@1x1"), 0.70, 400, 30)
  result = verdict.verdict(store, store.get(1))
  assert (result["score"], result["n"], result["stderr"]) == ("proxy", 1, None)
  assert result["delta_miou"] == pytest.approx(0.10)
  assert result["label"] == "higher on one run each, untested against noise"
  assert "no error bar" in result["sentence"]
  assert verdict.verdict(store, None)["sentence"].startswith("no verdict")


def test_fake_demo_baselines_seeds_diversity_and_verdict(tmp_path):
  """gin/search/fake_demo.gin as shipped: Pareto objective under a MAdds limit, baselines,
  a diverse re-rank under 3 seeds, and a verdict recomputed here from the re-rank store."""
  gin.parse_config_files_and_bindings([FAKE_CONFIG], ["search_algorithm.budget = 20"])
  summary = run_pipeline(str(tmp_path))
  with open(tmp_path / "results.csv") as f:
    rows = list(csv.DictReader(f))
  searched = [r for r in rows if r["origin"] != "baseline"]
  assert len(searched) == 20 and summary["counts"]["done"] == 20  # baselines: not in the budget
  assert all(float(r["branch_madds"]) <= 4.0e8 for r in searched)  # the limit held
  # the warm start (warm_start_cells = 3): the first three trials, and never again
  assert [r["origin"] for r in searched].count("warm_start") == 3
  assert [r["origin"] for r in searched[:3]] == ["warm_start"] * 3
  assert {r["cell"] for r in rows if r["origin"] == "baseline"} == {"aspp", CITYSCAPES_CELL.text}
  assert all(r["rerank_seeds"] == "3" and r["rerank_stderr"] for r in rows if r["rerank_miou"])
  with Store(str(tmp_path / "rerank.sqlite")) as rerank_store:
    runs = rerank_store.trials()
  assert all(t.status == "done" for t in runs) and len(runs) == (5 + 2) * 3
  by_parent = {}
  for t in runs:
    by_parent.setdefault(t.parent, {})[t.subject.seed or 0] = t.score  # seed 0: the plain subject
  assert all(sorted(seeds) == [0, 1, 2] for seeds in by_parent.values())
  cells = [Cell.from_text(r["cell"]) for r in searched if r["rerank_miou"]]
  assert len(cells) == 5
  assert all(objectives.cell_distance(a, b) >= 2 for i, a in enumerate(cells) for b in cells[i + 1:])
  chosen, aspp = summary["verdict"]["trial_id"], -1
  deltas = [by_parent[chosen][k] - by_parent[aspp][k] for k in range(3)]
  assert summary["verdict"]["delta_miou"] == pytest.approx(statistics.fmean(deltas))
  assert summary["verdict"]["stderr"] == pytest.approx(statistics.stdev(deltas) / math.sqrt(3))
  chosen_row = next(r for r in rows if r["trial_id"] == str(chosen))
  aspp_row = next(r for r in rows if r["cell"] == "aspp")
  assert summary["verdict"]["madds_ratio"] == pytest.approx(
      float(chosen_row["branch_madds"]) / float(aspp_row["branch_madds"]))
  assert summary["baselines"]["aspp"]["rerank_miou"] == pytest.approx(
      statistics.fmean(by_parent[aspp].values()))
  assert os.path.exists(tmp_path / "plots" / "pareto.png")
  assert json.loads((tmp_path / "summary.json").read_text())["verdict"] == summary["verdict"]
