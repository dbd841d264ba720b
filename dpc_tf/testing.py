"""One test harness for every layer, backbone and model (keras-hub's run_layer_test pattern).

Each check used to be re-written per test file (a serialization round trip here, a .keras
save there, mixed precision only for the full model), so some layers had some checks and
none had all of them. `run_layer_test` runs them all on a factory:

  layer = run_layer_test(lambda: DensePredictionCell(cell, filters=4), x,
                         expected_output_shape=(1, 9, 9, 256),
                         expected_trainable_params=..., tmp_dir=str(tmp_path))

1. output shape: the eager output's shape(s) equal `compute_output_shape` (and the expected
   shape when given); works for dict and list outputs (backbones, the decoder).
2. weights: counts of trainable / non-trainable variables and parameters, regulariser losses.
3. serialization: serialize -> deserialize gives the same config, and with the same weights
   identical outputs (atol 0 unless given).
4. checkpoint: tf.train.Checkpoint stores every variable and restores it into a fresh
   instance with identical outputs (layers held in Keras-tracked lists were silently
   missing from checkpoints once; WORKSPACE_NOTES).
5. saving: a .keras file round trip (load_model) and a .weights.h5 round trip into a fresh
   instance, both with identical outputs (layers are wrapped in a functional model).
6. mixed precision: built and run under the mixed_float16 policy, outputs are finite and of
   the expected dtype (the policy is restored afterwards, also on failure).

It lives in the package (as keras-hub's TestCase) because tests run with
--import-mode=importlib, where test files cannot import a helper module from tests/. It uses
numpy's assertions only, so importing it does not need pytest.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Callable, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

ALL_CHECKS = ("output_shape", "weights", "serialization", "checkpoint", "saving",
              "mixed_precision")


def _count(weights) -> int:
  return int(sum(np.prod(w.shape) for w in weights))


def _shape(x) -> tuple:
  return tuple(int(d) for d in x.shape)


def _numpy(outputs):
  return keras.tree.map_structure(keras.ops.convert_to_numpy, outputs)


def _assert_same(actual, expected, atol: float, what: str) -> None:
  keras.tree.assert_same_structure(actual, expected)
  for a, e in zip(keras.tree.flatten(actual), keras.tree.flatten(expected)):
    if atol:
      np.testing.assert_allclose(a, e, rtol=0, atol=atol, err_msg=what)
    else:
      np.testing.assert_array_equal(a, e, err_msg=what)


def _input_shapes(inputs):
  return [_shape(x) for x in inputs] if isinstance(inputs, (list, tuple)) else _shape(inputs)


def _call(layer, inputs):
  return layer(inputs, training=False)


@contextlib.contextmanager
def dtype_policy(name: str):
  """Sets the global Keras dtype policy for the block; restores it even on failure."""
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy(name)
  try:
    yield
  finally:
    keras.config.set_dtype_policy(previous)


def as_functional(layer, inputs) -> keras.Model:
  """`layer` itself if it is a model, else a functional model around it (for .keras files)."""
  if isinstance(layer, keras.Model):
    return layer
  if isinstance(inputs, (list, tuple)):
    symbolic = [keras.Input(_shape(x)[1:]) for x in inputs]
  else:
    symbolic = keras.Input(_shape(inputs)[1:])
  return keras.Model(symbolic, layer(symbolic))


def _is_shape(value) -> bool:
  return isinstance(value, (tuple, list)) and all(
      d is None or isinstance(d, (int, np.integer)) for d in value)


def shape_leaves(structure) -> list[tuple]:
  """The shapes in a (nested dict / list) structure of shapes, in keras.tree's order (dict
  keys sorted), as tuples of ints and None."""
  if _is_shape(structure):
    return [tuple(None if d is None else int(d) for d in structure)]
  if isinstance(structure, dict):
    return [s for k in sorted(structure) for s in shape_leaves(structure[k])]
  return [s for item in structure for s in shape_leaves(item)]


def check_output_shape(layer, inputs, outputs, expected_output_shape=None) -> None:
  actual = [_shape(y) for y in keras.tree.flatten(outputs)]
  declared = shape_leaves(layer.compute_output_shape(_input_shapes(inputs)))
  assert actual == declared, \
      f"{layer.name}: output shapes {actual} != compute_output_shape {declared}"
  if expected_output_shape is not None:
    expected = shape_leaves(expected_output_shape)
    assert actual == expected, f"{layer.name}: output shapes {actual}, expected {expected}"


def check_weights(layer, expected_num_trainable_weights=None,
                  expected_num_non_trainable_weights=None, expected_trainable_params=None,
                  expected_non_trainable_params=None, expected_num_losses=None) -> None:
  figures = {"trainable weights": (len(layer.trainable_weights), expected_num_trainable_weights),
             "non-trainable weights": (len(layer.non_trainable_weights),
                                       expected_num_non_trainable_weights),
             "trainable params": (_count(layer.trainable_weights), expected_trainable_params),
             "non-trainable params": (_count(layer.non_trainable_weights),
                                      expected_non_trainable_params),
             "losses": (len(layer.losses), expected_num_losses)}
  for what, (actual, expected) in figures.items():
    assert expected is None or actual == expected, \
        f"{layer.name}: {actual:,} {what}, expected {expected:,}"


def check_serialization(layer, inputs, outputs, atol: float = 0.0):
  """serialize -> deserialize: same config; with the same weights, identical outputs."""
  clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
  assert clone.get_config() == layer.get_config(), f"{layer.name}: config changed in a round trip"
  if not clone.built:
    clone.build(_input_shapes(inputs))
  clone.set_weights(layer.get_weights())
  _assert_same(_numpy(_call(clone, inputs)), outputs, atol, f"{layer.name}: serialized clone")
  return clone


def check_checkpoint(make: Callable, layer, inputs, outputs, tmp_dir: str,
                     atol: float = 0.0) -> None:
  """tf.train.Checkpoint holds every variable and restores them into a fresh instance."""
  path = tf.train.Checkpoint(layer=layer).save(os.path.join(tmp_dir, "ckpt"))
  stored = [n for n, _ in tf.train.list_variables(path) if n.startswith("layer/")]
  assert len(stored) == len(layer.weights), \
      f"{layer.name}: the checkpoint holds {len(stored)} of {len(layer.weights)} variables"
  fresh = make()
  _call(fresh, inputs)
  tf.train.Checkpoint(layer=fresh).restore(path).assert_existing_objects_matched()
  _assert_same(_numpy(_call(fresh, inputs)), outputs, atol, f"{layer.name}: restored checkpoint")


def check_saving(make: Callable, layer, inputs, outputs, tmp_dir: str,
                 atol: float = 0.0) -> None:
  """A .keras file loads with identical outputs; .weights.h5 loads into a fresh instance."""
  model = as_functional(layer, inputs)
  path = os.path.join(tmp_dir, "model.keras")
  model.save(path)
  loaded = keras.models.load_model(path)
  _assert_same(_numpy(_call(loaded, inputs)), outputs, atol, f"{layer.name}: loaded .keras")
  weights = os.path.join(tmp_dir, "model.weights.h5")
  model.save_weights(weights)
  fresh = as_functional(make(), inputs)
  fresh.load_weights(weights)
  _assert_same(_numpy(_call(fresh, inputs)), outputs, atol, f"{layer.name}: loaded .weights.h5")


def check_mixed_precision(make: Callable, inputs, expected_output_dtype=None) -> None:
  """Built under mixed_float16, the layer computes in float16 and its outputs are finite."""
  with dtype_policy("mixed_float16"):
    layer = make()
    outputs = _call(layer, inputs)
  assert layer.compute_dtype == "float16", f"{layer.name}: computes in {layer.compute_dtype}"
  dtype = expected_output_dtype or layer.compute_dtype
  for y in keras.tree.flatten(outputs):
    assert keras.backend.standardize_dtype(y.dtype) == dtype, \
        f"{layer.name}: a {y.dtype} output under mixed_float16, expected {dtype}"
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(y))), \
        f"{layer.name}: non-finite outputs under mixed_float16"


def run_layer_test(make: Callable[[], keras.layers.Layer], inputs, *,
                   expected_output_shape=None, expected_num_trainable_weights: Optional[int] = None,
                   expected_num_non_trainable_weights: Optional[int] = None,
                   expected_trainable_params: Optional[int] = None,
                   expected_non_trainable_params: Optional[int] = None,
                   expected_num_losses: Optional[int] = None, expected_output_dtype=None,
                   checks: Sequence[str] = ALL_CHECKS, skip: Sequence[str] = (),
                   tmp_dir: Optional[str] = None, atol: float = 0.0):
  """Runs `checks` (less `skip`) on `make()` called on `inputs`; returns the layer.

  make: a zero-argument factory (a fresh instance is needed for the checkpoint, weights-file
  and mixed-precision checks). inputs: an array, or a list of arrays for multi-input layers.
  tmp_dir: where checkpoint and saving write (a temporary folder when None). Skip "saving"
  for big models (Xception writes 100+ MB); everything else is cheap at tiny shapes.
  """
  unknown = (set(checks) | set(skip)) - set(ALL_CHECKS)
  if unknown:
    raise ValueError(f"unknown checks {sorted(unknown)}; choose from {', '.join(ALL_CHECKS)}")
  todo = [c for c in checks if c not in skip]
  layer = make()
  outputs = _numpy(_call(layer, inputs))
  if "output_shape" in todo:
    check_output_shape(layer, inputs, outputs, expected_output_shape)
  if "weights" in todo:
    check_weights(layer, expected_num_trainable_weights, expected_num_non_trainable_weights,
                  expected_trainable_params, expected_non_trainable_params, expected_num_losses)
  if "serialization" in todo:
    check_serialization(layer, inputs, outputs, atol)
  with contextlib.ExitStack() as stack:
    folder = tmp_dir or stack.enter_context(tempfile.TemporaryDirectory())
    if "checkpoint" in todo:
      os.makedirs(os.path.join(folder, "checkpoint"), exist_ok=True)
      check_checkpoint(make, layer, inputs, outputs, os.path.join(folder, "checkpoint"), atol)
    if "saving" in todo:
      os.makedirs(os.path.join(folder, "saving"), exist_ok=True)
      check_saving(make, layer, inputs, outputs, os.path.join(folder, "saving"), atol)
  if "mixed_precision" in todo:
    check_mixed_precision(make, inputs, expected_output_dtype)
  return layer


def missing_gradients(model: keras.Model, inputs, seed: int = 0) -> list[str]:
  """Paths of trainable weights whose gradient is None or zero everywhere.

  The loss is a fixed random projection of every output (in training mode: BN uses batch
  statistics, so pass a batch of 2 or more, or a 1x1 pooling branch normalises to a
  constant and its conv gets a zero gradient legitimately).
  """
  with tf.GradientTape() as tape:
    outputs = keras.tree.flatten(model(inputs, training=True))
    loss = 0.0
    for i, y in enumerate(outputs):
      y = tf.cast(y, tf.float32)
      weights = tf.random.stateless_normal(tf.shape(y), seed=(seed, i))
      loss += tf.reduce_sum(y * weights)
  grads = tape.gradient(loss, model.trainable_weights)
  return [w.path for w, g in zip(model.trainable_weights, grads)
          if g is None or not bool(tf.reduce_any(tf.not_equal(g, 0)))]
