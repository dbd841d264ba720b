import keras
import numpy as np
import pytest

from dpc_tf import layers, search_space as ss

MIXED = ss.Cell.from_text("F:pool@2x4 F:conv1x1 1:sep3x3@3x21 2:pool@1x1 0:sep3x3@21x21")


def _serialization_round_trip(layer, x):
  y = layer(x, training=False).numpy()
  clone = keras.layers.deserialize(keras.layers.serialize(layer))
  clone(x, training=False)
  clone.set_weights(layer.get_weights())
  np.testing.assert_array_equal(clone(x, training=False).numpy(), y)
  assert clone.get_config() == layer.get_config()
  return clone


@pytest.mark.parametrize("crop, features", [(513, (33, 33)), (769, (49, 49)),
                                            ((1025, 2049), (65, 129))])
def test_released_cell_builds_at_odd_crops(crop, features):
  cell = ss.Cell.load(ss.released_cell_path())
  layer = layers.DensePredictionCell(cell, filters=8, projection_filters=5, crop_size=crop)
  x = np.zeros((1,) + features + (3,), "float32")
  assert tuple(layer(x).shape) == (1,) + features + (5,)
  assert [type(l).__name__ for l in layer.branch_layers] == ["SeparableConvBNReLU"] * 5
  assert [l.rate for l in layer.branch_layers] == [(1, 6), (18, 15), (6, 3), (1, 1), (6, 21)]


def test_output_stride_8_doubles_the_rates():
  layer = layers.DensePredictionCell(ss.CITYSCAPES_CELL, filters=4, rate_multiplier=2)
  assert [l.rate for l in layer.branch_layers] == [(2, 12), (36, 30), (12, 6), (2, 2), (12, 42)]


def test_branches_read_their_inputs_and_all_are_concatenated():
  layer = layers.DensePredictionCell(MIXED, filters=4, projection_filters=6, crop_size=129,
                                     dropout=0.5)
  x = np.random.default_rng(0).normal(size=(2, 9, 9, 3)).astype("float32")
  y = layer(x, training=False)
  assert tuple(y.shape) == (2, 9, 9, 6)
  # Branch inputs: features (3 channels) or an earlier branch (4 channels).
  assert layer.branch_layers[0].conv.conv.kernel.shape == (1, 1, 3, 4)
  assert layer.branch_layers[2].depthwise.kernel.shape == (3, 3, 4, 1)
  assert layer.concat_projection.conv.kernel.shape == (1, 1, 20, 6)
  # Dropout only in training: inference is deterministic, training is not.
  np.testing.assert_array_equal(layer(x, training=False), y)
  assert not np.allclose(layer(x, training=True), layer(x, training=True))


def test_cell_layer_accepts_json_and_text():
  a = layers.DensePredictionCell(MIXED.to_json(), filters=2)
  b = layers.DensePredictionCell(MIXED.text, filters=2)
  c = layers.DensePredictionCell(MIXED.to_json_string(), filters=2)
  assert a.cell == b.cell == c.cell == MIXED
  with pytest.raises(ss.CellError, match="branch 0: rate r_h=5"):
    layers.DensePredictionCell([{"kernel": 3, "rate": [5, 1], "op": "conv", "input": -1}])


def test_dpc_serialization_round_trip_gives_identical_outputs():
  layer = layers.DensePredictionCell(MIXED, filters=4, projection_filters=3, crop_size=129,
                                     rate_multiplier=2, weight_decay=1e-4, name="dpc")
  x = np.random.default_rng(1).normal(size=(1, 9, 9, 3)).astype("float32")
  clone = _serialization_round_trip(layer, x)
  assert clone.cell == MIXED and clone.rate_multiplier == 2


def test_aspp_structure_and_serialization():
  layer = layers.ASPP(filters=4, crop_size=129, rate_multiplier=2, name="aspp")
  x = np.random.default_rng(2).normal(size=(1, 9, 9, 3)).astype("float32")
  assert tuple(layer(x).shape) == (1, 9, 9, 4)
  names = [l.name for l in layer.branch_layers]
  assert names == ["image_pooling", "aspp0", "aspp1", "aspp2", "aspp3"]
  assert [l.rate for l in layer.branch_layers[2:]] == [(12, 12), (24, 24), (36, 36)]
  assert layer.branch_layers[0].kernel == (9, 9)  # the whole crop: image-level pooling
  assert layer.concat_projection.conv.kernel.shape == (1, 1, 20, 4)
  _serialization_round_trip(layer, x)


def test_operator_layers_round_trip():
  x = np.random.default_rng(3).normal(size=(1, 9, 11, 3)).astype("float32")
  for layer in (layers.ConvBNReLU(4, kernel_size=3, rate=2),
                layers.SeparableConvBNReLU(4, rate=(3, 6)),
                layers.PyramidPooling((4, 2), filters=4, crop_size=(129, 161))):
    _serialization_round_trip(layer, x)


def test_cell_in_a_functional_model_saves_and_loads(tmp_path):
  inputs = keras.Input((9, 9, 3))
  outputs = layers.DensePredictionCell(MIXED, filters=4, crop_size=129)(inputs)
  model = keras.Model(inputs, outputs)
  x = np.random.default_rng(4).normal(size=(2, 9, 9, 3)).astype("float32")
  path = str(tmp_path / "model.keras")
  model.save(path)
  loaded = keras.models.load_model(path)
  np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("make", [
    lambda: layers.DensePredictionCell(MIXED, filters=4, crop_size=129),
    lambda: layers.ASPP(filters=4, crop_size=129)], ids=["dpc", "aspp"])
def test_tf_checkpoint_holds_every_variable(tmp_path, make):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  layer = make()
  x = np.random.default_rng(5).normal(size=(1, 9, 9, 3)).astype("float32")
  y = layer(x, training=False).numpy()
  path = tf.train.Checkpoint(layer=layer).save(str(tmp_path / "ckpt"))
  stored = [n for n, _ in tf.train.list_variables(path) if n.startswith("layer/")]
  assert len(stored) == len(layer.weights)
  fresh = make()
  fresh(x, training=False)
  tf.train.Checkpoint(layer=fresh).restore(path).assert_existing_objects_matched()
  np.testing.assert_array_equal(fresh(x, training=False).numpy(), y)
