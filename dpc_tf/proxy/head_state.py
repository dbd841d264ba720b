"""A proxy head's training state between rungs (successive halving): save, then continue.

A folder holds `ckpt*` (tf.train.Checkpoint of the head model, its optimizer with the step
counter `iterations` and the dropout seed-generator state, all model variables) and
`state.json` (steps reached, the poly schedule's horizon, the seed and the head's identity).
Continuing from it restores all of that and replays the data order up to the saved step, so
with the schedule over the top rung's steps (TrialConfig.schedule_steps) a run continued
100 -> 300 trains exactly as an uninterrupted 300-step run (tests/proxy checks the weights).

The folder is written whole into a temporary sibling and renamed into place, so a reader
never sees half a state; a rerun of the same rung (the driver died before recording it)
replaces it.
"""

from __future__ import annotations

import os
from typing import Optional

import tensorflow as tf

from dpc_tf.errors import DpcError
from dpc_tf.utils import files

STATE_FILE = "state.json"
_PREFIX = "ckpt"


class ContinuationError(DpcError):
  """start_from is missing, unreadable or belongs to another head or schedule."""


def checkpoint_of(model, optimizer) -> tf.train.Checkpoint:
  """The head's whole training state. The dropout layers' seed-generator states are listed
  explicitly: tf.train.Checkpoint does not reach them through a Keras 3 model, and without
  them a continued run would draw other dropout masks than an uninterrupted one."""
  seeds = sorted((v for v in model.variables if "seed_generator" in v.path),
                 key=lambda v: v.path)
  return tf.train.Checkpoint(model=model, optimizer=optimizer,
                             **{f"seed_state_{i}": v.value for i, v in enumerate(seeds)})


def identity(head: str, fingerprint: Optional[str], schedule_steps: int, seed: int) -> dict:
  """What must match for a continuation to be the same training run."""
  return {"head": head, "cell_fingerprint": fingerprint, "schedule_steps": schedule_steps,
          "seed": seed}


def check(start_from: str, expected: dict, steps: int) -> int:
  """The steps `start_from` reached, if it is an earlier state of this very run (JSON only:
  a wrong folder is refused before any model is built)."""
  path = os.path.join(start_from, STATE_FILE)
  if not os.path.isfile(path):
    raise ContinuationError(f"cannot continue from {start_from}: no {STATE_FILE} (the rung "
                            "before was not saved there)")
  state = files.read_json(path, "proxy head state")
  for key, value in expected.items():
    if state.get(key) != value:
      raise ContinuationError(f"cannot continue from {start_from}: its {key} is "
                              f"{state.get(key)!r}, this trial's is {value!r}")
  reached = state.get("steps")
  if not isinstance(reached, int) or not 0 < reached < steps:
    raise ContinuationError(f"cannot continue from {start_from}: it reached {reached!r} steps, "
                            f"this trial trains to {steps}")
  return reached


def restore(checkpoint: tf.train.Checkpoint, start_from: str) -> None:
  """Restores every variable of `checkpoint` (model, optimizer, seed states) from start_from."""
  checkpoint.read(os.path.join(start_from, _PREFIX)).assert_consumed()


def save(checkpoint: tf.train.Checkpoint, save_to: str, state: dict) -> None:
  """Writes the checkpoint and state.json (`state` = identity + 'steps') into save_to."""
  parent = os.path.dirname(os.path.abspath(save_to))
  tmp = files.make_temp_dir(parent, ".tmp-" + os.path.basename(save_to))
  try:
    checkpoint.write(os.path.join(tmp, _PREFIX))
    files.write_json_atomic(os.path.join(tmp, STATE_FILE), state)
    if os.path.exists(save_to):
      files.remove_tree(save_to)  # an earlier try of this rung
    os.rename(tmp, save_to)
  except BaseException:
    if os.path.exists(tmp):
      files.remove_tree(tmp)
    raise


def saved_values(save_to: str) -> dict:
  """The model and optimizer variables (slots and step counter included) of a saved state,
  by checkpoint key: two states of one head compare key by key (the tests' 'continued equals
  uninterrupted', 'packed equals alone')."""
  reader = tf.train.load_checkpoint(os.path.join(save_to, _PREFIX))
  return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
          if "OPTIMIZER_SLOT" in name or name.startswith(("model/", "optimizer/"))}
