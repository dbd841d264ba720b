"""The shipped gin/train configs all parse into valid configs; values are validated.

Parsing itself (includes, one-line errors) is tested once, in tests/test_gin_config.py.
"""

import glob
import os

import gin
import pytest

from dpc_tf.training import config
from dpc_tf.errors import DpcError, one_line

pytestmark = pytest.mark.usefixtures("clean_gin")


def test_every_shipped_train_config_parses_and_builds_configs(helpers):
  files = sorted(glob.glob(os.path.join(helpers.ROOT, "gin", "train", "*.gin")))
  names = {os.path.basename(f) for f in files}
  assert {"cityscapes.gin", "cityscapes_aspp.gin", "voc2012.gin", "voc2012_aspp.gin",
          "pascal_person_part.gin", "pascal_person_part_aspp.gin", "synthetic.gin"} <= names
  for path in files:
    config.parse_gin([path])
    train, evaluate = config.train_config(), config.eval_config()
    head = gin.query_parameter("deeplab_model.head")
    assert head == ("aspp" if path.endswith("_aspp.gin") else "dpc"), path
    if "cityscapes" in path:
      assert (train.crop_size, train.batch_size, train.num_steps) == ((769, 769), 16, 90000)
      assert evaluate.crop_size == (1025, 2049)
    elif "folder" in path:  # crops come from the data (dpc_tf.data.folder) unless bound
      assert train.dataset == "folder" and train.crop_size is None
    elif "synthetic" not in path:
      assert train.crop_size == (513, 513) and train.batch_size == 16


def test_bindings_override_files(helpers):
  config.parse_gin([helpers.SYNTHETIC_GIN], ["train.num_steps = 7"])
  assert config.train_config().num_steps == 7
  assert config.train_config(num_steps=3).num_steps == 3  # explicit beats bindings


def test_config_values_are_validated():
  with pytest.raises(DpcError, match="train.strategy"):
    config.TrainConfig(strategy="mirrorred")
  with pytest.raises(DpcError, match="train.batch_size"):
    config.TrainConfig(batch_size=0)
  with pytest.raises(DpcError, match="evaluate.scales"):
    config.EvalConfig(scales=[])
  assert config.TrainConfig(crop_size=65).crop_size == (65, 65)


@pytest.mark.parametrize("binding, message", [
    ("train.base_learning_rate = 'a'", "train.base_learning_rate = 'a' is not a float"),
    ("train.num_steps = 10.5", "train.num_steps = 10.5 is not an int"),
    ("train.fine_tune_batch_norm = 1", "train.fine_tune_batch_norm = 1 is not a bool"),
    ("train.last_layers = 'logits'", "train.last_layers = 'logits' is not Sequence[str]"),
    ("evaluate.flip = 'yes'", "evaluate.flip = 'yes' is not a bool"),
])
def test_gin_values_of_the_wrong_type_name_the_setting(helpers, binding, message):
  config.parse_gin([helpers.SYNTHETIC_GIN], [binding])
  with pytest.raises(DpcError) as error:
    config.train_config()
    config.eval_config()
  assert one_line(error.value) == message  # gin appends where it was called
