"""The driver checks every search binding before any process starts, and imports no TensorFlow."""

import json
import os
import subprocess
import sys

import gin
import pytest

from dpc_tf.proxy import config as proxy_config  # noqa: F401  registers proxy_trial
from dpc_tf.search.errors import SearchError
from dpc_tf.search.pipeline import run_pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAKE = os.path.join(ROOT, "gin", "search", "fake_demo.gin")
SYNTHETIC = os.path.join(ROOT, "gin", "search", "synthetic_demo.gin")


@pytest.fixture
def real_trials(tmp_path):
  """Bindings that make the fake demo use the real proxy and re-rank trial functions, on a
  complete (empty) feature cache: nothing of them runs unless a worker starts."""
  cache = tmp_path / "cache"
  cache.mkdir()
  (cache / "manifest.json").write_text(json.dumps(
      {"roles": {"train": {"complete": True}, "eval": {"complete": True}}}))
  return ["search_pipeline.trial_factory = @proxy_task", f"search_cache.cache_dir = '{cache}'",
          "search_pipeline.rerank_factory = @rerank_trial"]


@pytest.mark.parametrize("binding, message", [
    ("proxy_trial.steps = 3.5", "proxy_trial.steps = 3.5 is not an int"),
    ("proxy_trial.deterministic = 'yes'", "proxy_trial.deterministic = 'yes' is not a bool"),
    ("rerank_trial.num_steps = '300'", "rerank_trial.num_steps = '300' is not Optional[int]"),
    ("rerank_trial.model_overrides = ['backbone']",
     "rerank_trial.model_overrides = ['backbone'] is not Optional[dict]"),
    ("search_cache.build = 1", "search_cache.build = 1 is not a bool"),
    ("search_backbone.maker = 'dpc_tf.search.stages:proxy_backbone'",
     "search_backbone.maker = 'dpc_tf.search.stages:proxy_backbone' is not Optional[Callable]"),
    ("search_pipeline.max_attempts = 2.0", "search_pipeline.max_attempts = 2.0 is not an int"),
    ("search_algorithm.top_k = '3'", "search_algorithm.top_k = '3' is not an int"),
    ("local_engine.visible_devices = '0,1'",
     "local_engine.visible_devices = '0,1' is not Sequence[str]"),
])
def test_a_wrong_type_stops_the_driver_before_any_process(tmp_path, real_trials, binding,
                                                          message):
  gin.parse_config_files_and_bindings([FAKE], [*real_trials, binding])
  search_dir = tmp_path / "search"
  with pytest.raises(SearchError) as info:
    run_pipeline(str(search_dir))
  assert str(info.value).splitlines()[0] == message
  assert not search_dir.exists()  # no store, no stage subprocess, no worker


def test_the_fake_trials_settings_are_checked_too(tmp_path):
  gin.parse_config_files_and_bindings([FAKE], ["fake_trial.sleep_s = 'fast'"])
  with pytest.raises(SearchError, match=r"^fake_trial.sleep_s = 'fast' is not a float"):
    run_pipeline(str(tmp_path / "search"))


@pytest.mark.parametrize("binding", [
    "proxy_trial.stepz = 3", "rerank_trial.num_stpes = 3", "search_cache.cache_dri = 'c'",
    "search_backbone.maker_kwargs = {}", "search_algorithm.budgte = 3"])
def test_a_misspelt_binding_is_refused_when_the_config_is_parsed(binding):
  with pytest.raises(ValueError, match="doesn't have a parameter named"):
    gin.parse_config(binding)


def test_a_misspelt_pipeline_setting_is_refused(tmp_path):
  gin.parse_config_files_and_bindings([FAKE], ["search_pipeline.rerank_topk = 3"])
  with pytest.raises(SearchError, match="unknown search_pipeline setting.s. rerank_topk"):
    run_pipeline(str(tmp_path / "search"))


_DRIVER = """
import pickle, sys
import gin
from dpc_tf.search import pipeline, stages
search_dir, fake, synthetic = sys.argv[1:]
gin.parse_config_files_and_bindings([fake], ["search_pipeline.rerank_top_k = 2"])
summary = pipeline.run_pipeline(search_dir, budget=3)
assert summary["counts"]["done"] == 3 and summary["reranked"] == 2, summary
# The synthetic demo's own search bindings (its import lines load dpc_tf.proxy and
# dpc_tf.training, whose packages import TensorFlow, so they are left out here).
gin.clear_config()
lines = [l for l in open(synthetic) if l.startswith(("search_", "rerank_trial."))]
gin.parse_config("".join(lines))
checkpoint, maker = stages.backbone_stage()
cache_dir, builder = stages.cache_stage(search_dir)
settings = pipeline.pipeline_settings()
built = [maker, builder, settings.trial_factory(cache_dir),
         pipeline.rerank_trial_fn(settings, checkpoint, pipeline.SearchPaths(search_dir))]
assert [type(b).__name__ for b in built[2:]] == ["ProxyTrial", "RerankTrial"], built
pickle.dumps(built)
print(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")))
"""


def test_the_driver_imports_no_tensorflow(tmp_path):
  """A whole fake search, then the synthetic demo's trial functions built and pickled."""
  result = subprocess.run([sys.executable, "-c", _DRIVER, str(tmp_path), FAKE, SYNTHETIC],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().splitlines()[-1] == "[]"


def test_a_stage_subprocess_error_comes_back_as_one_line(tmp_path):
  """Stage (a) runs proxy_backbone in its subprocess; what it refuses reaches the driver."""
  gin.parse_config_files_and_bindings([FAKE], [
      "import dpc_tf.proxy.config", "search_backbone.maker = @proxy_backbone",
      "feature_cache.checkpoint = '/nonexistent/ckpt'"])
  with pytest.raises(SearchError) as info:
    run_pipeline(str(tmp_path / "search"))
  assert str(info.value) == "feature_cache.checkpoint /nonexistent/ckpt does not exist"
