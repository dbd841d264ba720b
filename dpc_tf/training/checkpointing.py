"""Checkpoints: save every K steps keeping N, resume from the newest, read for evaluation.

A checkpoint holds the model, the optimizer (momentum slots, loss scale) and a `step`
variable. (Layers must not hold sub-layers in Python lists: tf.train.Checkpoint does not
see them, so dpc_tf's layers use named attributes.) tf.train.CheckpointManager writes the
data files first and then atomically replaces the small `checkpoint` index file, so a run
killed mid-save leaves the index
pointing at the previous complete checkpoint: restarting never loses more than the steps
since the last save, and never reads a half-written one.
"""

from __future__ import annotations

import os
import shutil
from typing import Optional

import tensorflow as tf

from dpc_tf.errors import DpcError, one_line
from dpc_tf.training import strategy as strategy_lib

CHECKPOINT_NAME = "ckpt"


def latest_checkpoint(model_dir: str) -> Optional[str]:
  """The newest complete checkpoint prefix in model_dir, or None."""
  return tf.train.latest_checkpoint(model_dir) if os.path.isdir(model_dir) else None


def checkpoint_step(path: str) -> int:
  """The step a checkpoint was saved at (its number: the manager saves with the step)."""
  try:
    return int(path.rsplit("-", 1)[1])
  except (IndexError, ValueError):
    return int(tf.train.load_variable(path, "step/.ATTRIBUTES/VARIABLE_VALUE"))


class CheckpointKeeper:
  """Wraps tf.train.Checkpoint + CheckpointManager for one model_dir and one strategy."""

  def __init__(self, model_dir: str, strategy: tf.distribute.Strategy, max_to_keep: int,
               model, **trackables):
    self.model_dir = model_dir
    self.checkpoint = tf.train.Checkpoint(model=model, **trackables)
    self._chief = strategy_lib.is_chief(strategy)
    self._write_dir = strategy_lib.write_dir(model_dir, strategy)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, directory=self._write_dir, max_to_keep=max_to_keep,
        checkpoint_name=CHECKPOINT_NAME)

  def restore_latest(self) -> Optional[str]:
    """Restores the newest checkpoint of model_dir (every worker reads the chief's)."""
    path = latest_checkpoint(self.model_dir)
    if path is None:
      return None
    try:
      self.checkpoint.restore(path).assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
      raise DpcError(f"checkpoint {path} does not fit this model/optimizer (was model_dir "
                      f"trained with another config?): {one_line(e)}") from None
    return path

  def save(self, step: int) -> Optional[str]:
    """Saves as ckpt-<step>. Every worker must call it (the save is a collective)."""
    path = self.manager.save(checkpoint_number=step)
    if not self._chief:
      shutil.rmtree(self._write_dir, ignore_errors=True)
      return None
    return path


def restore_for_inference(model: tf.Module, path: str) -> int:
  """Loads only the model's variables from a training checkpoint; returns its step."""
  step = tf.Variable(0, dtype=tf.int64, trainable=False)
  checkpoint = tf.train.Checkpoint(model=model, step=step)
  try:
    status = checkpoint.read(path)
    status.assert_existing_objects_matched()
  except (AssertionError, ValueError, tf.errors.OpError) as e:
    raise DpcError(f"checkpoint {path} does not fit the model built from the gin config: "
                    f"{one_line(e)}") from None
  status.expect_partial()  # The optimizer's slots are in the file but not wanted here.
  return int(step.numpy())


def require_checkpoint(model_dir: str, checkpoint: Optional[str] = None) -> str:
  """An explicit checkpoint prefix, or model_dir's newest; DpcError when there is none."""
  if checkpoint:
    if not tf.io.gfile.glob(checkpoint + ".index"):
      raise DpcError(f"no checkpoint at {checkpoint} (expected {checkpoint}.index)")
    return checkpoint
  path = latest_checkpoint(model_dir)
  if path is None:
    raise DpcError(f"no checkpoint in model_dir {model_dir}; train first "
                    f"(python -m dpc_tf.train --model_dir={model_dir} ...)")
  return path
