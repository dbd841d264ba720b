"""Starting from converted TF1 weights, with or without the last layer; resume wins."""

import numpy as np
import pytest

from dpc_tf import checkpoints, models
from dpc_tf.training.config import TrainConfig
from dpc_tf.errors import DpcError
from dpc_tf.training.trainer import Trainer

pytestmark = pytest.mark.usefixtures("clean_gin")  # deeplab_model reads global bindings
OVERRIDES = dict(backbone="mobilenet_v2", depth_multiplier=0.25, decoder_output_stride=None)


def _converted_folder(path) -> dict:
  """A converted-weights folder (dpc_tf.checkpoints format) from a fresh random model."""
  source = models.build_deeplab(7, crop_size=(65, 65), **OVERRIDES)
  rng = np.random.default_rng(0)
  arrays = {key: rng.normal(size=v.shape).astype(np.float32)
            for key, v in checkpoints.weight_keys(source).items()}
  path.mkdir()
  checkpoints.converted.write_weights(str(path / checkpoints.WEIGHTS_FILE), arrays, {})
  return arrays


def _config(**overrides):
  return TrainConfig(dataset="dpc_synthetic/tiny", batch_size=2, crop_size=65, num_steps=2,
                     **overrides)


@pytest.mark.parametrize("initialize_last_layer", [True, False])
def test_converted_weights_are_loaded(tmp_path, initialize_last_layer):
  arrays = _converted_folder(tmp_path / "converted")
  trainer = Trainer(_config(init_weights=str(tmp_path / "converted"),
                            initialize_last_layer=initialize_last_layer),
                    str(tmp_path / "run"), model_overrides=OVERRIDES)
  assert trainer._restore_or_initialize() is None  # pylint: disable=protected-access
  loaded = {k: v.numpy() for k, v in checkpoints.weight_keys(trainer.model).items()}
  for key, value in arrays.items():
    if key.startswith("logits/") and not initialize_last_layer:
      assert not np.array_equal(loaded[key], value), key
    else:
      np.testing.assert_array_equal(loaded[key], value, err_msg=key)


def test_bad_converted_folder_is_a_user_error(tmp_path):
  trainer = Trainer(_config(init_weights=str(tmp_path)), str(tmp_path / "run"),
                    model_overrides=OVERRIDES)
  with pytest.raises(DpcError, match="cannot initialise from"):
    trainer._restore_or_initialize()  # pylint: disable=protected-access


def test_backbone_keras_weights_file(tmp_path):
  source = models.build_deeplab(7, crop_size=(65, 65), **OVERRIDES)
  backbone = source.get_layer("backbone")
  path = str(tmp_path / "backbone.weights.h5")
  backbone.save_weights(path)
  trainer = Trainer(_config(init_weights=path), str(tmp_path / "run"), model_overrides=OVERRIDES)
  trainer._restore_or_initialize()  # pylint: disable=protected-access
  for mine, theirs in zip(trainer.model.get_layer("backbone").weights, backbone.weights):
    np.testing.assert_array_equal(mine.numpy(), theirs.numpy(), err_msg=mine.path)


def test_seed_sets_the_initialisation(tmp_path):
  def weights(seed, name):
    trainer = Trainer(_config(seed=seed), str(tmp_path / name), model_overrides=OVERRIDES)
    return [v.numpy() for v in trainer.model.trainable_variables]
  first, again, other = weights(3, "a"), weights(3, "b"), weights(4, "c")
  assert all(np.array_equal(a, b) for a, b in zip(first, again))
  assert not all(np.array_equal(a, b) for a, b in zip(first, other))
