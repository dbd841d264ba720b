"""TensorBoard's HParams dashboard for a search (DIR/hparams), read back by TensorBoard itself."""

import csv
import os
import sys

import gin
import pytest

from dpc_tf.search import hparams
from dpc_tf.search.pipeline import run_pipeline
from dpc_tf.search.store import Store

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAKE_CONFIG = os.path.join(ROOT, "gin", "search", "fake_demo.gin")


def _dashboard(logdir):
  """{run: (hparams, metrics)} as TensorBoard's HParams plugin lists its session groups."""
  # pylint: disable=import-outside-toplevel
  from tensorboard import context
  from tensorboard.backend.event_processing import data_provider
  from tensorboard.backend.event_processing import plugin_event_multiplexer
  from tensorboard.plugins import base_plugin
  from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups
  multiplexer = plugin_event_multiplexer.EventMultiplexer()
  multiplexer.AddRunsFromDirectory(logdir)
  multiplexer.Reload()
  tb_context = base_plugin.TBContext(
      data_provider=data_provider.MultiplexerDataProvider(multiplexer, logdir), logdir=logdir,
      multiplexer=multiplexer)
  request = api_pb2.ListSessionGroupsRequest(start_index=0, slice_size=1000, allowed_statuses=[
      api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE])
  response = list_session_groups.Handler(context.RequestContext(),
                                         backend_context.Context(tb_context), "", request).run()
  groups = {}
  for group in response.session_groups:
    values = {k: v.string_value or v.number_value for k, v in group.hparams.items()}
    assert len(group.sessions) == 1  # no two trials merged into one group
    groups[group.sessions[0].name] = (values, {m.name.tag: m.value for m in group.metric_values})
  return groups


def _files(folder):
  return {os.path.join(d, n): os.stat(os.path.join(d, n)).st_mtime_ns
          for d, _, names in os.walk(folder) for n in names}


def test_every_trial_lands_in_the_hparams_dashboard_once(tmp_path):
  pytest.importorskip("tensorboard.plugins.hparams")
  gin.parse_config_files_and_bindings([FAKE_CONFIG], [
      "search_algorithm.budget = 6", "search_pipeline.rerank_top_k = 2",
      "search_pipeline.rerank_seeds = 2", "search_pipeline.plots = False",
      "local_engine.workers = 1"])
  run_pipeline(str(tmp_path))
  with open(tmp_path / "results.csv") as f:
    rows = {int(r["trial_id"]): r for r in csv.DictReader(f)}
  groups = _dashboard(str(tmp_path))
  assert len(rows) == 8 and len(groups) == 8  # 6 trials and the 2 baselines
  for trial_id, row in rows.items():
    name = f"hparams/baseline_{-trial_id}" if trial_id < 0 else f"hparams/trial_{trial_id:05d}"
    values, metrics = groups[name]
    assert (values["cell"], values["origin"], values["status"]) == \
        (row["cell"], row["origin"], "done")
    assert values["branch_madds"] == pytest.approx(float(row["branch_madds"]), rel=1e-6)
    assert metrics["proxy_miou"] == pytest.approx(float(row["proxy_miou"]), rel=1e-5)
    if row["rerank_miou"]:
      assert metrics["rerank_miou"] == pytest.approx(float(row["rerank_miou"]), rel=1e-5)
      assert metrics["rerank_seeds"] == 2
    else:
      assert "rerank_miou" not in metrics
  assert sum(1 for r in rows.values() if r["rerank_miou"]) == 4  # 2 cells and 2 baselines
  assert {v["origin"] for v, _ in groups.values()} >= {"baseline", "warm_start"}

  # Resumed (a kill -9 had lost one run): only the missing run is written, nothing twice.
  before = _files(tmp_path / "hparams")
  lost = tmp_path / "hparams" / "trial_00003"
  for name in os.listdir(lost):
    os.remove(lost / name)
  run_pipeline(str(tmp_path))
  after = _files(tmp_path / "hparams")
  assert set(after) == set(before)  # the lost run is back, under the same name
  assert all(after[k] == before[k] for k in after if not k.startswith(str(lost) + os.sep))

  # A re-rank score that changes (more seeds on a rerun) replaces the run's re-rank file.
  with Store(str(tmp_path / "trials.sqlite")) as store:
    store.set_rerank(-1, 0.125, {"n": 5, "stderr": 0.01})
    hparams.sync(store, str(tmp_path))
  assert len([n for n in os.listdir(tmp_path / "hparams" / "baseline_1") if "rerank" in n]) == 1
  assert _dashboard(str(tmp_path))["hparams/baseline_1"][1]["rerank_miou"] == 0.125


def test_without_tensorboard_the_search_says_so_and_goes_on(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard -> ImportError
  monkeypatch.setattr(hparams, "_warned", False)
  gin.parse_config_files_and_bindings([FAKE_CONFIG], [
      "search_algorithm.budget = 2", "search_pipeline.rerank_top_k = 0",
      "search_pipeline.plots = False", "local_engine.workers = 1"])
  summary = run_pipeline(str(tmp_path))
  assert summary["counts"]["done"] == 2 and not os.path.exists(tmp_path / "hparams")
  assert hparams._warned  # pylint: disable=protected-access
