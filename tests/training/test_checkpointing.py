"""Checkpoints hold every model variable (the DPC's branch list included) and restore them."""

import os

import numpy as np
import pytest
import tensorflow as tf

from dpc_tf import models
from dpc_tf.training import checkpointing
from dpc_tf.errors import DpcError

CELL = "F:pool@2x2 0:sep3x3@3x6 F:conv1x1 1:sep3x3@1x1 2:pool@1x1"


def _model(head="dpc"):
  return models.build_deeplab(7, backbone="mobilenet_v2", depth_multiplier=0.25, head=head,
                              cell=CELL if head == "dpc" else None, crop_size=(65, 65),
                              decoder_output_stride=None)


def _randomise(model, seed):
  rng = np.random.default_rng(seed)
  for variable in model.variables:
    if variable.dtype in ("float32", tf.float32):
      variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype(np.float32))


@pytest.mark.parametrize("head", ["dpc", "aspp"])
def test_every_variable_round_trips(tmp_path, head):
  source = _model(head)
  _randomise(source, 0)
  keeper = checkpointing.CheckpointKeeper(str(tmp_path), tf.distribute.get_strategy(), 2,
                                          model=source, step=tf.Variable(7, dtype=tf.int64))
  path = keeper.save(7)
  assert path.endswith("ckpt-7") and checkpointing.checkpoint_step(path) == 7
  target = _model(head)
  _randomise(target, 1)
  assert checkpointing.restore_for_inference(target, path) == 7
  weights = [(w.path, w) for w in source.weights]
  assert len(weights) == len(target.weights)
  for (key, variable), mine in zip(weights, target.weights):
    assert mine.path == key
    np.testing.assert_array_equal(variable.numpy(), mine.numpy(), err_msg=key)
  # Every weight is in the file: the head's branches included.
  stored = [n for n, _ in tf.train.list_variables(path) if n.startswith("model/")]
  assert len(stored) >= len(source.weights)
  assert any("branch" in n or "aspp" in n for n in stored)


def test_missing_and_mismatched_checkpoints_are_user_errors(tmp_path):
  with pytest.raises(DpcError, match="no checkpoint in model_dir"):
    checkpointing.require_checkpoint(str(tmp_path))
  with pytest.raises(DpcError, match="no checkpoint at"):
    checkpointing.require_checkpoint(str(tmp_path), os.path.join(str(tmp_path), "ckpt-3"))
  source = _model("dpc")
  keeper = checkpointing.CheckpointKeeper(str(tmp_path), tf.distribute.get_strategy(), 2,
                                          model=source)
  path = keeper.save(1)
  other = models.build_deeplab(7, backbone="mobilenet_v2", depth_multiplier=0.5,
                               crop_size=(65, 65), decoder_output_stride=None)
  with pytest.raises(DpcError, match="does not fit"):
    checkpointing.restore_for_inference(other, path)
