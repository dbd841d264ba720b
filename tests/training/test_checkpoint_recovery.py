"""Damaged checkpoints: the newest readable one is resumed (and the user told), a save
killed midway is cleaned up, nothing readable is one line."""

import glob
import os

import pytest
import tensorflow as tf

from dpc_tf.errors import DpcError
from dpc_tf.training import checkpointing


def _keeper(model_dir):
  model = tf.Module()
  model.w = tf.Variable(tf.zeros([64]))
  step = tf.Variable(0, dtype=tf.int64)
  keeper = checkpointing.CheckpointKeeper(str(model_dir), tf.distribute.get_strategy(), 5,
                                          model=model, step=step)
  return keeper, model, step


def _truncate(path):
  data = open(path, "rb").read()
  open(path, "wb").write(data[:len(data) // 2])


def test_unreadable_newest_checkpoint_falls_back_and_says_so(tmp_path, caplog):
  keeper, model, step = _keeper(tmp_path)
  for n in (1, 2):
    step.assign(n)
    model.w.assign(tf.fill([64], float(n)))
    keeper.save(n)
  _truncate(glob.glob(str(tmp_path / "ckpt-2.data-*"))[0])
  os.makedirs(tmp_path / "ckpt-3_temp" / "part-00000-of-00001")  # a save killed midway
  keeper, model, step = _keeper(tmp_path)
  assert not os.path.exists(tmp_path / "ckpt-3_temp")
  with caplog.at_level("WARNING"):
    path = keeper.restore_latest()
  assert path.endswith("ckpt-1") and int(step.numpy()) == 1 and float(model.w[0]) == 1.0
  assert any("ckpt-2 cannot be read" in r.getMessage() for r in caplog.records)

  _truncate(str(tmp_path / "ckpt-1.index"))
  keeper, _, _ = _keeper(tmp_path)
  with pytest.raises(DpcError, match="no checkpoint in model_dir .* can be read"):
    keeper.restore_latest()
  with pytest.raises(DpcError, match="cannot be read"):
    checkpointing.restore_for_inference(tf.Module(), str(tmp_path / "ckpt-2"))
