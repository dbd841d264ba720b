"""train.steps_per_call: K steps per call of the step function give the same run as one step
per call (weights, per-step losses, checkpoint steps, image summaries), and the guard still
stops a diverging run inside a call before anything is saved."""

import os

import numpy as np
import pytest

from dpc_tf.errors import DpcError
from dpc_tf.training import checkpointing
from dpc_tf.training.config import TrainConfig
from dpc_tf.training.errors import NonFiniteLossError
from dpc_tf.training.trainer import Trainer


def _config(**overrides) -> TrainConfig:
  # checkpoint_every 3 is not a multiple of K = 2 or 4: calls are cut to land on it.
  base = dict(dataset="dpc_synthetic/tiny", batch_size=2, crop_size=33, num_steps=7,
              checkpoint_every=3, keep_checkpoints=10, log_every=1, summary_every=3,
              image_summary_every=5, seed=0, deterministic=True)
  base.update(overrides)
  return TrainConfig(**base)


def _train(model_dir, helpers, **overrides):
  seen = []
  trainer = Trainer(_config(**overrides), model_dir, model_fn=helpers.tiny_model,
                    step_callback=lambda step, values: seen.append((step, values["loss"])))
  result = trainer.train()
  return result, seen, [w.numpy() for w in trainer.model.weights]


def test_several_steps_per_call_train_the_same_weights(tmp_path, helpers):
  one, seen_one, weights_one = _train(str(tmp_path / "k1"), helpers, steps_per_call=1)
  four, seen_four, weights_four = _train(str(tmp_path / "k4"), helpers, steps_per_call=4)
  assert one.step == four.step == 7
  assert [s for s, _ in seen_four] == [s for s, _ in seen_one] == list(range(1, 8))
  np.testing.assert_allclose([l for _, l in seen_four], [l for _, l in seen_one], rtol=1e-5)
  for a, b in zip(weights_one, weights_four):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  for name in ("k1", "k4"):
    steps = sorted(int(f.split("-")[1].split(".")[0]) for f in os.listdir(tmp_path / name)
                   if f.startswith("ckpt-") and f.endswith(".index"))
    assert steps == [3, 6, 7], (name, steps)
    events = os.listdir(tmp_path / name / "train")
    assert events, name  # scalar and image summaries were written
  assert four.train_miou == pytest.approx(one.train_miou, abs=1e-6)


def test_guard_stops_inside_a_call_before_saving(tmp_path, helpers):
  model_dir = str(tmp_path)
  losses = []
  trainer = Trainer(_config(num_steps=40, checkpoint_every=40, summary_every=40,
                            image_summary_every=0, base_learning_rate=1e30, steps_per_call=8),
                    model_dir, model_fn=helpers.tiny_model,
                    step_callback=lambda step, values: losses.append(values["loss"]))
  with pytest.raises(NonFiniteLossError) as info:
    trainer.train()
  step = int(str(info.value).split("at step ")[1].split(";")[0])
  # The call (up to 8 steps) stopped at the failing step: no step after it ran, and the
  # guard raised before reporting it (as with one step per call).
  assert step == int(trainer.step.numpy()) < 9
  assert len(losses) == step - 1 and np.isfinite(losses).all()
  assert checkpointing.latest_checkpoint(model_dir) is None


def test_steps_per_call_must_be_positive():
  with pytest.raises(DpcError, match="steps_per_call"):
    _config(steps_per_call=0)
