"""The halving study's table built by the real proxy on the tiny cache (the fixtures of the
other proxy tests). That a continued run equals an unbroken one is test_trial.py's; that
the table continues rung to rung with the top rung's schedule, tests/test_halving_table.py's."""

import functools

import pytest

from dpc_tf.proxy import run_proxy_trial
from dpc_tf.proxy.cache import FeatureCache
from dpc_tf.proxy.trial import cache_fields
from dpc_tf.reproduction import halving_table as ht

FAST = dict(batch_size=4, filters=8, bn_momentum=0.9, learning_rate=0.05)


def test_real_proxy_table_is_built_reused_and_refused(tiny_cache, tmp_path):
  settings = ht.TableSettings(num_cells=2, cells_seed=1, num_branches=1, rungs=(2, 5))
  identity = ht.table_identity(settings, FAST, cache_fields(FeatureCache(tiny_cache)))
  trial = functools.partial(run_proxy_trial, cache_dir=tiny_cache, **FAST)
  rows = ht.build_table(str(tmp_path), settings, trial, identity)
  assert [r["index"] for r in rows] == [0, 1]
  assert [r["fingerprint"] for r in rows] == [c.fingerprint() for c in ht.table_cells(settings)]
  assert all(0.0 <= s <= 1.0 for r in rows for s in r["scores"])
  # Rebuilt without retraining; another cache (a checkpoint fingerprint) is refused.
  assert ht.build_table(str(tmp_path), settings, None, identity) == rows
  other = ht.table_identity(settings, FAST, dict(identity["cache"], checkpoint_fingerprint="x"))
  with pytest.raises(ht.TableError, match="cache.checkpoint_fingerprint"):
    ht.build_table(str(tmp_path), settings, None, other)
