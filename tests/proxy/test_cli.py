"""The command lines (in subprocesses), the random-backbone refusal and backbone pretraining."""

import json
import os

import pytest

from dpc_tf.errors import DpcError
from dpc_tf.errors import EXIT_USER_ERROR

from dpc_tf.proxy import (CacheConfig, PretrainConfig, backbone_fingerprint, build_feature_cache,
                          make_cache)
from dpc_tf.checkpoints import as_part, load_initial_weights
from dpc_tf.proxy.backbone_weights import BackboneWeightsError
from dpc_tf.proxy.pretrain import checkpoint_dir, pretrained_checkpoint
from dpc_tf.training.errors import NonFiniteLossError

GIN = """
feature_cache.backbone = "mobilenet_v2"
feature_cache.depth_multiplier = 0.25
feature_cache.allow_random_init = True
feature_cache.dataset = "dpc_synthetic/tiny"
feature_cache.shard_size = 16
proxy_trial.steps = 4
proxy_trial.batch_size = 4
proxy_trial.filters = 16
"""


def test_cache_and_proxy_command_lines(tmp_path, commands):
  gin_file = tmp_path / "tiny.gin"
  gin_file.write_text(GIN)
  cache_dir = str(tmp_path / "cache")
  made = commands.run("dpc_tf.cache_features", f"--gin_file={gin_file}",
                      f"--cache_dir={cache_dir}")
  assert made.returncode == 0, made.stderr[-2000:]
  summary = json.loads(made.stdout.strip().splitlines()[-1])
  assert summary["train"] == {"count": 32, "shards": 2, "feature_shape": [9, 9, 80],
                              "label_shape": [129, 129, 1]}
  assert summary["eval"]["count"] == 16
  assert "RANDOMLY INITIALISED" in made.stderr  # said loudly

  refused = commands.run("dpc_tf.cache_features", f"--gin_file={gin_file}",
                         f"--cache_dir={cache_dir}",
                 "--gin_bindings=feature_cache.train_views = 2")
  assert refused.returncode == EXIT_USER_ERROR
  assert commands.error_line(refused).startswith(f"dpc_tf.cache_features: error: cache {cache_dir} was made "
                                         f"with different settings: train.views: cache has 1, "
                                         f"asked for 2")

  trial = commands.run("dpc_tf.proxy", f"--gin_file={gin_file}", f"--cache_dir={cache_dir}",
               "--cell=F:sep3x3@1x6 0:pool@2x2", f"--output={tmp_path / 'record.json'}")
  assert trial.returncode == 0, trial.stderr[-2000:]
  record = json.loads(trial.stdout.strip().splitlines()[-1])
  assert {"miou", "branch_params", "branch_madds", "steps", "seconds"} <= set(record)
  assert record["steps"] == 4 and record["cell_text"] == "F:sep3x3@1x6 0:pool@2x2"
  assert json.loads((tmp_path / "record.json").read_text()) == record

  bad = commands.run("dpc_tf.proxy", f"--gin_file={gin_file}", f"--cache_dir={cache_dir}",
             "--cell=F:sep3x3@5x5")
  assert bad.returncode == EXIT_USER_ERROR
  assert commands.error_line(bad) == "dpc_tf.proxy: error: branch 0: rate r_h=5 is not in {1,3,6,9,12,15,18,21}"


def test_search_cache_builder_refuses_unknown_settings(tmp_path):
  with pytest.raises(DpcError, match="unknown feature_cache setting.*crop_size"):
    build_feature_cache(str(tmp_path), checkpoint="/nowhere", crop_size=3)


def test_random_backbone_is_refused_unless_allowed(tmp_path):
  config = CacheConfig(backbone="mobilenet_v2", dataset="dpc_synthetic/tiny")
  with pytest.raises(BackboneWeightsError, match="no backbone checkpoint configured .*"
                                                 "allow_random_init = True"):
    make_cache(str(tmp_path), config, PretrainConfig())
  assert not os.listdir(tmp_path)


def test_pretrained_backbone_is_made_once_and_loads_back(tmp_path):
  from dpc_tf.backbones import build_backbone  # pylint: disable=import-outside-toplevel
  config = CacheConfig(backbone="mobilenet_v2", depth_multiplier=0.25,
                       dataset="dpc_synthetic/tiny")
  pretrain = PretrainConfig(steps=3, batch_size=2, crop=(65, 65), output_root=str(tmp_path))
  path = pretrained_checkpoint(config, pretrain)
  stamp = os.stat(os.path.join(path, "weights.h5")).st_mtime_ns
  assert pretrained_checkpoint(config, pretrain) == path  # reused, not retrained
  assert os.stat(os.path.join(path, "weights.h5")).st_mtime_ns == stamp
  source = json.loads(open(os.path.join(path, "model_config.json")).read())["source"]
  assert source["pretrain"]["steps"] == 3 and source["pretrain"]["crop"] == [65, 65]
  first, second = (build_backbone("mobilenet_v2", 16, depth_multiplier=0.25) for _ in range(2))
  load_initial_weights(as_part(first), path, ["backbone"])
  load_initial_weights(as_part(second), path, ["backbone"])
  assert backbone_fingerprint(first) == backbone_fingerprint(second)
  other = PretrainConfig(steps=2, batch_size=2, crop=(65, 65), output_root=str(tmp_path))
  assert checkpoint_dir(config, other) != path  # any other setting: another checkpoint


def test_diverging_pretraining_is_stopped_by_the_guard_and_saves_nothing(tmp_path):
  config = CacheConfig(backbone="mobilenet_v2", depth_multiplier=0.25,
                       dataset="dpc_synthetic/tiny")
  pretrain = PretrainConfig(steps=12, batch_size=2, crop=(65, 65), learning_rate=1e30,
                            output_root=str(tmp_path))
  with pytest.raises(NonFiniteLossError) as info:
    pretrained_checkpoint(config, pretrain)
  message = str(info.value)
  assert message.startswith("backbone pretraining: ") and "at step" in message
  assert "pretrain_backbone.learning_rate" in message and "\n" not in message
  assert not os.path.exists(checkpoint_dir(config, pretrain))


@pytest.mark.parametrize("binding, message", [
    ("feature_cache.batch_size = 'a'", "feature_cache.batch_size = 'a' is not an int"),
    ("feature_cache.pretrain = 'yes'", "feature_cache.pretrain = 'yes' is not a bool"),
    ("pretrain_backbone.learning_rate = 'x'",
     "pretrain_backbone.learning_rate = 'x' is not a float"),
])
def test_gin_values_of_the_wrong_type_name_the_setting(binding, message):
  import gin  # pylint: disable=import-outside-toplevel
  from dpc_tf.errors import DpcError, one_line  # pylint: disable=import-outside-toplevel
  from dpc_tf.proxy import config  # pylint: disable=import-outside-toplevel
  gin.clear_config()
  try:
    gin.parse_config(binding)
    with pytest.raises(DpcError) as error:
      config.configured()
    assert one_line(error.value) == message
  finally:
    gin.clear_config()
