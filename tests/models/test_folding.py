"""models.fold_batch_norm: an inference copy with BN folded, the original untouched."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from dpc_tf import models
from dpc_tf.layers.folding import FoldedTrainingError
from dpc_tf.training.inference import Predictor

IMAGES = np.random.default_rng(0).uniform(0, 255, (2, 33, 41, 3)).astype(np.float32)


def _trained_looking(model):
  """Non-trivial BN statistics everywhere (a fresh model's identity BNs would hide errors)."""
  rng = np.random.default_rng(1)
  for w in model.weights:
    name = w.path.rsplit("/", 1)[-1]
    if name in ("gamma", "moving_variance"):
      w.assign(rng.uniform(0.5, 2.0, w.shape))
    elif name in ("beta", "moving_mean"):
      w.assign(rng.normal(0, 0.3, w.shape))
  return model


@pytest.mark.parametrize("backbone, decoder", [("mobilenet_v2", 4), ("xception_41", None)])
def test_folded_copy_predicts_what_the_model_does_and_leaves_it_alone(backbone, decoder):
  depth = dict(depth_multiplier=0.25) if backbone == "mobilenet_v2" else {}
  model = _trained_looking(models.build_deeplab(
      5, backbone, crop_size=(33, 41), decoder_output_stride=decoder, **depth))
  before = {w.path: w.numpy().copy() for w in model.weights}
  folded = models.fold_batch_norm(model)
  assert folded is not model
  # Same variables (names, shapes) in the copy; the original's values bit for bit unchanged.
  assert [(w.path, w.shape) for w in folded.weights] == [(w.path, w.shape) for w in model.weights]
  for w in model.weights:
    np.testing.assert_array_equal(w.numpy(), before[w.path], err_msg=w.path)
  expected = model(IMAGES, training=False).numpy()
  actual = tf.function(lambda x: folded(x, training=False))(IMAGES).numpy()
  scale = np.abs(expected).max()
  np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5 * scale)
  assert np.abs(actual - expected).max() > 0  # folded for real: rounding differs somewhere
  assert models.fold_batch_norm(folded) is folded
  with pytest.raises(FoldedTrainingError):
    folded(IMAGES, training=True)


def test_predictor_folds_by_default_and_models_without_batch_norm_pass_through():
  model = _trained_looking(models.build_deeplab(3, "mobilenet_v2", crop_size=(33, 33),
                                                depth_multiplier=0.25))
  folded, plain = Predictor(model, scales=(0.75, 1.0), flip=True), Predictor(model, fold=False)
  assert plain.model is model and folded.model is not model
  assert all(block.folded for block in models.foldable_layers(folded.model))
  np.testing.assert_allclose(folded.probabilities(IMAGES).numpy(),
                             Predictor(model, (0.75, 1.0), True, fold=False)
                             .probabilities(IMAGES).numpy(), atol=1e-5)
  inputs = keras.Input((None, None, 3))
  no_bn = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))
  assert models.fold_batch_norm(no_bn) is no_bn
