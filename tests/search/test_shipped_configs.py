"""Every shipped search config parses, and the per-dataset ones bind their data.

The search configs include every proxy config (gin/proxy/), so those are parsed here too;
the proxy CLI registers its own `proxy_trial`, which is why they are not parsed alone.
"""

import glob
import os

import gin
import pytest

from dpc_tf.proxy import config as proxy_config  # noqa: F401  registers feature_cache
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
