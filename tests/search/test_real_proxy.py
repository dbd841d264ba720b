"""The whole pipeline with the real proxy and the real trainer on tiny synthetic data.

gin/search/synthetic_demo.gin shrunk to dpc_synthetic/tiny (32 train / 16 validation
images), a random MobileNet-v2 at depth 0.25, 4-step proxy trials and a 2-step end-to-end
re-rank of the best cell and of the ASPP baseline: the backbone stage and the cache build run in their subprocess,
the trials in local workers, as in a real run.
"""

import csv
import json
import os

from dpc_tf import gin_config
from dpc_tf.search import pipeline, stages
from dpc_tf.search.pipeline import run_pipeline
from dpc_tf.search.store import Store
from dpc_tf.search_space import Cell

TINY = [
    "feature_cache.dataset = 'dpc_synthetic/tiny'", "feature_cache.depth_multiplier = 0.25",
    "feature_cache.pretrain = False", "feature_cache.allow_random_init = True",
    "feature_cache.shard_size = 16", "proxy_trial.steps = 4", "proxy_trial.filters = 16",
    "proxy_trial.cells_per_program = 2",  # the ASPP baseline and trial 0 in one pack
    "search_pipeline.rerank_top_k = 1", "search_pipeline.plots = False",
    "search_pipeline.baselines = ['aspp']", "search_pipeline.rerank_seeds = 1",
    "rerank_trial.num_steps = 2", "train.dataset = 'dpc_synthetic/tiny'",
    "rerank_trial.max_eval_examples = 8", "rerank_trial.model_overrides = {'depth_multiplier': 0.25}"]


def test_synthetic_demo_with_the_real_proxy(tmp_path):
  gin_config.parse(["gin/search/synthetic_demo.gin"], TINY, modules=("dpc_tf.search.pipeline",))
  summary = run_pipeline(str(tmp_path), budget=2)
  with open(tmp_path / "feature_cache" / "manifest.json") as f:
    manifest = json.load(f)
  assert manifest["roles"]["train"]["complete"] and manifest["roles"]["eval"]["count"] == 16
  with open(tmp_path / "results.csv") as f:
    every = list(csv.DictReader(f))
  # the ASPP baseline: the same proxy on the same cache, outside the budget of 2
  aspp, rows = every[0], every[1:]
  assert (aspp["trial_id"], aspp["cell"], aspp["origin"], aspp["status"]) == \
      ("-1", "aspp", "baseline", "done")
  assert [r["status"] for r in rows] == ["done", "done"]
  with Store(str(tmp_path / "trials.sqlite")) as store:
    assert [store.get(i).record.get("pack_size") for i in (-1, 0, 1)] == [2, 2, None]
  pricer = stages.ProxyTrial(str(tmp_path / "feature_cache"), {"filters": 16})
  for row in every:
    assert 0.0 <= float(row["proxy_miou"]) <= 1.0
    # the proxy's cost convention: branch kernels at 16 filters on 80 backbone channels
    assert int(row["branch_params"]) > 0 and int(row["branch_madds"]) > int(row["branch_params"])
  for row in rows:  # the analytic price the cost limits use counts the same kernels
    assert pricer.branch_costs(Cell.from_text(row["cell"]))[0] == int(row["branch_params"])
  assert summary["counts"]["done"] == 2
  # (d): the proxy's best cell trained end to end (2 steps) and scored; it ranks first
  top = max(rows, key=lambda r: (float(r["proxy_miou"]), -int(r["trial_id"])))
  reranked = [r for r in rows if r["rerank_miou"]]
  assert [r["trial_id"] for r in reranked] == [top["trial_id"]]
  assert 0.0 <= float(top["rerank_miou"]) <= 1.0 and summary["reranked"] == 1
  assert 0.0 <= float(aspp["rerank_miou"]) <= 1.0  # the ASPP head trained end to end too
  assert os.path.isdir(os.path.join(tmp_path, "rerank_models", "aspp"))
  assert summary["verdict"]["score"] == "rerank" and summary["verdict"]["n"] == 1
  model_dir = os.path.join(tmp_path, "rerank_models", top["fingerprint"])
  assert any(f.startswith("ckpt") or f == "checkpoint" for f in os.listdir(model_dir))
  assert Cell.load(str(tmp_path / "best_cells" / "rank_1.json")).text == top["cell"]
  # the generated examples its processes shared are gone once every stage ran
  assert not os.path.exists(tmp_path / "synthetic_examples")
  assert pipeline.SYNTHETIC_EXAMPLES_VARIABLE not in os.environ


def test_the_search_points_its_processes_at_one_folder_of_generated_examples(monkeypatch,
                                                                            tmp_path):
  from dpc_tf.data import synthetic_memo  # pylint: disable=import-outside-toplevel
  assert pipeline.SYNTHETIC_EXAMPLES_VARIABLE == synthetic_memo.DIR_VARIABLE
  monkeypatch.delenv(synthetic_memo.DIR_VARIABLE, raising=False)
  paths = pipeline.SearchPaths(str(tmp_path))
  with pipeline.shared_synthetic_examples(paths):
    assert os.environ[synthetic_memo.DIR_VARIABLE] == str(tmp_path / "synthetic_examples")
  assert synthetic_memo.DIR_VARIABLE not in os.environ
  monkeypatch.setenv(synthetic_memo.DIR_VARIABLE, "/the/users/own")
  with pipeline.shared_synthetic_examples(paths):
    assert os.environ[synthetic_memo.DIR_VARIABLE] == "/the/users/own"
  assert os.environ[synthetic_memo.DIR_VARIABLE] == "/the/users/own"
