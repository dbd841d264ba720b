"""Every shipped search and proxy config parses; the per-dataset ones bind their data and the
real trial functions."""

import glob
import os

import gin
import pytest

from dpc_tf import gin_config
from dpc_tf.proxy import config as proxy_config
from dpc_tf.search import pipeline, stages
from dpc_tf.training.config import parse_gin

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_every_proxy_config_is_used_by_a_search_config():
  searches = "".join(open(p).read() for p in glob.glob(os.path.join(ROOT, "gin", "search", "*")))
  for path in glob.glob(os.path.join(ROOT, "gin", "proxy", "*.gin")):
    assert f"include 'proxy/{os.path.basename(path)}'" in searches, path


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "gin", "search", "*.gin"))),
                         ids=lambda p: os.path.relpath(p, ROOT))
def test_config_parses(path):
  parse_gin([path])
  expected = {"cityscapes": ("cityscapes", (769, 769)), "voc2012": ("voc2012", (513, 513)),
              "pascal_person_part": ("pascal_person_part", (513, 513))}
  for name, (want_dataset, want_crop) in expected.items():
    if os.path.basename(path).startswith(name):
      dataset = gin.query_parameter("feature_cache.dataset")
      crop = tuple(gin.query_parameter("feature_cache.train_crop"))
      assert (dataset, crop) == (want_dataset, want_crop)
      assert gin.query_parameter("proxy_trial.steps") == 30000
      assert gin.query_parameter("proxy_trial.batch_size") == 8
  if not os.path.basename(path).startswith("fake"):
    settings = pipeline.pipeline_settings()
    assert (settings.trial_factory, settings.rerank_factory) == (stages.proxy_task,
                                                                 stages.rerank_trial)
    assert stages.backbone_stage() == (None, stages.proxy_backbone)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "gin", "proxy", "*.gin"))),
                         ids=lambda p: os.path.relpath(p, ROOT))
def test_proxy_config_parses_alone(path):
  """`proxy_trial` means TrialConfig wherever it is parsed (the proxy CLI or the search)."""
  gin_config.parse([path], modules=proxy_config.MODULES)
  assert proxy_config.configured()[2].steps == gin.query_parameter("proxy_trial.steps")
