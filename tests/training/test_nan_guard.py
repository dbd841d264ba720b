"""A NaN/Inf loss stops training with a clear error and leaves the last good checkpoint."""

import os

import numpy as np
import pytest
import tensorflow as tf

from dpc_tf.training import checkpointing
from dpc_tf.training.config import TrainConfig
from dpc_tf.training.errors import NonFiniteLossError
from dpc_tf.training.trainer import Trainer


def _config(**overrides) -> TrainConfig:
  base = dict(dataset="dpc_synthetic/tiny", batch_size=2, crop_size=33, num_steps=4,
              checkpoint_every=2, log_every=1, summary_every=2, image_summary_every=0, seed=0)
  base.update(overrides)
  return TrainConfig(**base)


def _files(model_dir):
  return {name: open(os.path.join(model_dir, name), "rb").read()
          for name in sorted(os.listdir(model_dir)) if name.startswith(("ckpt", "checkpoint"))}


def test_exploding_run_stops_before_saving(tmp_path, helpers):
  model_dir = str(tmp_path)
  good = Trainer(_config(), model_dir, model_fn=helpers.tiny_model).train()
  assert good.step == 4 and good.checkpoint.endswith("ckpt-4")
  before = _files(model_dir)

  losses = []
  exploding = Trainer(_config(num_steps=40, checkpoint_every=40, base_learning_rate=1e30),
                      model_dir, model_fn=helpers.tiny_model,
                      step_callback=lambda step, values: losses.append(values["loss"]))
  with pytest.raises(NonFiniteLossError) as info:
    exploding.train()
  message = str(info.value)
  assert "\n" not in message and "at step" in message and "ckpt-4" in message
  assert len(losses) < 36  # it stopped early (the final step would have saved)
  assert _files(model_dir) == before  # nothing written, nothing deleted
  assert checkpointing.latest_checkpoint(model_dir).endswith("ckpt-4")
  # The kept checkpoint is finite and resumable.
  for name, _ in tf.train.list_variables(os.path.join(model_dir, "ckpt-4")):
    value = tf.train.load_variable(os.path.join(model_dir, "ckpt-4"), name)
    if np.issubdtype(np.asarray(value).dtype, np.floating):
      assert np.isfinite(value).all(), name
