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
from absl import logging

from dpc_tf.errors import DpcError, one_line
from dpc_tf.training import strategy as strategy_lib

CHECKPOINT_NAME = "ckpt"


UNREADABLE = (tf.errors.OpError, IndexError)
"""What restoring a damaged checkpoint raises (a truncated data file: IndexError 'Read less
bytes than requested'; a corrupt or missing file: DataLossError / NotFoundError)."""


def latest_checkpoint(model_dir: str) -> Optional[str]:
  """The newest complete checkpoint prefix in model_dir, or None."""
  candidates = readable_candidates(model_dir)
  return candidates[0] if candidates else None


def readable_candidates(model_dir: str) -> list[str]:
  """The checkpoint prefixes of model_dir whose .index exists, newest first (from the
  `checkpoint` state file; a damaged state file falls back to the files on disk)."""
  if not os.path.isdir(model_dir):
    return []
  paths = []
  try:
    state = tf.train.get_checkpoint_state(model_dir)
    if state is not None:
      paths = list(state.all_model_checkpoint_paths)
      if state.model_checkpoint_path and state.model_checkpoint_path not in paths:
        paths.append(state.model_checkpoint_path)
  except (tf.errors.OpError, ValueError, UnicodeDecodeError) as e:  # a damaged state file
    logging.warning("checkpoint state in %s cannot be read (%s); using the files on disk",
                    model_dir, one_line(e))
  if not paths:
    paths = [name[:-len(".index")] for name in os.listdir(model_dir)
             if name.startswith(CHECKPOINT_NAME + "-") and name.endswith(".index")]
  paths = [p if os.path.isabs(p) else os.path.join(model_dir, p) for p in paths]
  paths = [p for p in paths if os.path.exists(p + ".index")]
  return sorted(set(paths), key=_number_or_zero, reverse=True)


def _number_or_zero(path: str) -> int:
  try:
    return int(path.rsplit("-", 1)[1])
  except (IndexError, ValueError):
    return 0


def remove_half_written(model_dir: str) -> list[str]:
  """Removes what a save killed midway left (TensorFlow's `ckpt-N_temp*` folders and
  temporary state files); returns the names removed."""
  removed = []
  if not os.path.isdir(model_dir):
    return removed
  for name in os.listdir(model_dir):
    path = os.path.join(model_dir, name)
    if name.startswith(CHECKPOINT_NAME + "-") and "_temp" in name and os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)
      removed.append(name)
  if removed:
    logging.warning("removed half-written checkpoint folder(s) in %s: %s", model_dir,
                    ", ".join(sorted(removed)))
  return removed


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
    if self._chief:
      remove_half_written(model_dir)
    self._write_dir = strategy_lib.write_dir(model_dir, strategy)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, directory=self._write_dir, max_to_keep=max_to_keep,
        checkpoint_name=CHECKPOINT_NAME)

  def restore_latest(self) -> Optional[str]:
    """Restores the newest readable checkpoint of model_dir (every worker reads the chief's).

    One that cannot be read (truncated or missing data, a corrupt index) is skipped with a
    warning naming it, and the next older one is tried; one that does not fit the model is
    a DpcError (another config), as is having checkpoints none of which can be read.
    """
    candidates = readable_candidates(self.model_dir)
    skipped = []
    for path in candidates:
      try:
        self.checkpoint.restore(path).assert_existing_objects_matched()
      except UNREADABLE as e:
        if isinstance(e, tf.errors.InvalidArgumentError):
          raise DpcError(f"checkpoint {path} does not fit this model/optimizer (was model_dir "
                         f"trained with another config?): {one_line(e)}") from None
        skipped.append(path)
        logging.warning("checkpoint %s cannot be read (%s); falling back to the previous one",
                        path, one_line(e))
        continue
      except (AssertionError, ValueError) as e:
        raise DpcError(f"checkpoint {path} does not fit this model/optimizer (was model_dir "
                       f"trained with another config?): {one_line(e)}") from None
      if skipped:
        logging.warning("resumed from %s: the newer checkpoint(s) %s could not be read",
                        path, ", ".join(skipped))
      return path
    if skipped:
      raise DpcError(f"no checkpoint in model_dir {self.model_dir} can be read (tried "
                     f"{', '.join(skipped)}); move them away to start over")
    return None

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
  except UNREADABLE as e:
    if not isinstance(e, tf.errors.InvalidArgumentError):
      raise DpcError(f"checkpoint {path} cannot be read (damaged or incomplete): "
                     f"{one_line(e)}") from None
    raise DpcError(f"checkpoint {path} does not fit the model built from the gin config: "
                   f"{one_line(e)}") from None
  except (AssertionError, ValueError) as e:
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
