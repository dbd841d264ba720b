"""Gin parsing errors are one-line UserErrors; the shipped gin/train configs all parse."""

import glob
import os

import gin
import pytest

from dpc_tf.training import config, gin_utils
from dpc_tf.errors import DpcError

pytestmark = pytest.mark.usefixtures("clean_gin")


def test_every_shipped_train_config_parses_and_builds_configs(helpers):
  files = sorted(glob.glob(os.path.join(helpers.ROOT, "gin", "train", "*.gin")))
  names = {os.path.basename(f) for f in files}
  assert {"cityscapes.gin", "cityscapes_aspp.gin", "voc2012.gin", "voc2012_aspp.gin",
          "pascal_person_part.gin", "pascal_person_part_aspp.gin", "synthetic.gin"} <= names
  for path in files:
    gin_utils.parse([path])
    train, evaluate = config.train_config(), config.eval_config()
    head = gin.query_parameter("deeplab_model.head")
    assert head == ("aspp" if path.endswith("_aspp.gin") else "dpc"), path
    if "cityscapes" in path:
      assert (train.crop_size, train.batch_size, train.num_steps) == ((769, 769), 16, 90000)
      assert evaluate.crop_size == (1025, 2049)
    elif "synthetic" not in path:
      assert train.crop_size == (513, 513) and train.batch_size == 16


def test_bindings_override_files(helpers):
  gin_utils.parse([helpers.SYNTHETIC_GIN], ["train.num_steps = 7"])
  assert config.train_config().num_steps == 7
  assert config.train_config(num_steps=3).num_steps == 3  # explicit beats bindings


def test_missing_gin_file_is_one_line():
  with pytest.raises(DpcError, match=r"^gin file not found: /nonexistent/x\.gin$"):
    gin_utils.parse(["/nonexistent/x.gin"])


def test_typo_in_a_binding_names_the_parameter(helpers):
  with pytest.raises(DpcError) as info:
    gin_utils.parse([helpers.SYNTHETIC_GIN], ["train.num_stepz = 3"])
  message = str(info.value)
  assert "\n" not in message and "num_stepz" in message and "train" in message


def test_unknown_configurable_and_bad_syntax(helpers):
  with pytest.raises(DpcError, match="trian"):
    gin_utils.parse([], ["trian.num_steps = 3"])
  with pytest.raises(DpcError, match="bad gin configuration"):
    gin_utils.parse([], ["train.num_steps = "])


def test_missing_include_names_the_file(tmp_path):
  path = tmp_path / "bad.gin"
  path.write_text("include 'train/no_such_file.gin'\n")
  with pytest.raises(DpcError, match="no_such_file.gin"):
    gin_utils.parse([str(path)])


def test_config_values_are_validated():
  with pytest.raises(DpcError, match="train.strategy"):
    config.TrainConfig(strategy="mirrorred")
  with pytest.raises(DpcError, match="train.batch_size"):
    config.TrainConfig(batch_size=0)
  with pytest.raises(DpcError, match="evaluate.scales"):
    config.EvalConfig(scales=[])
  assert config.TrainConfig(crop_size=65).crop_size == (65, 65)


def test_parse_twice_in_one_process(helpers):
  gin_utils.parse([helpers.SYNTHETIC_GIN], ["train.num_steps = 5"])
  gin_utils.parse([helpers.SYNTHETIC_GIN], ["train.num_steps = 6"])
  assert config.train_config().num_steps == 6
