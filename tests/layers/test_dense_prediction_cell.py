"""The DPC and ASPP layers: structure, rates, and the shared harness (dpc_tf.testing)."""

import numpy as np
import pytest

from dpc_tf import layers, search_space as ss
from dpc_tf.testing import run_layer_test

MIXED = ss.Cell.from_text("F:pool@2x4 F:conv1x1 1:sep3x3@3x21 2:pool@1x1 0:sep3x3@21x21")


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
  layer = layers.DensePredictionCell(ss.CITYSCAPES_CELL, filters=4, output_stride=8)
  assert layer.rate_multiplier == 2
  assert [l.rate for l in layer.branch_layers] == [(2, 12), (36, 30), (12, 6), (2, 2), (12, 42)]
  aspp = layers.ASPP(filters=4, output_stride=8, crop_size=65)
  assert aspp.rate_multiplier == 2
  assert [l.rate for l in aspp.branch_layers[2:]] == [(12, 12), (24, 24), (36, 36)]


@pytest.mark.parametrize("make", [
    lambda **kw: layers.DensePredictionCell(ss.CITYSCAPES_CELL, filters=4, **kw),
    lambda **kw: layers.ASPP(filters=4, crop_size=65, **kw)], ids=["dpc", "aspp"])
def test_configs_from_before_output_stride_was_enough_still_load(make):
  """Configs saved when callers passed rate_multiplier (= 16 // output_stride) load; one
  that contradicts its output_stride is refused rather than silently given other rates."""
  config = make(output_stride=8).get_config()
  assert "rate_multiplier" not in config
  old = type(make()).from_config({**config, "rate_multiplier": 2})
  assert old.get_config() == config and old.rate_multiplier == 2
  with pytest.raises(layers.LayerArgumentError,
                     match="rate_multiplier=1 contradicts output_stride=8"):
    type(make())(**{**config, "rate_multiplier": 1})
  with pytest.raises(TypeError, match="rate_multiplier=1 contradicts"):  # Keras wraps it
    type(make()).from_config({**config, "rate_multiplier": 1})
  with pytest.raises(layers.LayerArgumentError, match="output_stride must divide 16"):
    make(output_stride=32)


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


def test_dpc_passes_the_layer_harness(tmp_path):
  x = np.random.default_rng(1).normal(size=(2, 9, 9, 3)).astype("float32")
  # Counted by hand (C=3 in, 4 per branch, 3 out): 1x1 convs 3*4 (+ BN 2*4 trainable, 2*4
  # moving), separables 9*4 + 4*4 (+ two BNs), pooling 1x1s 3*4 / 4*4, projection 20*3.
  layer = run_layer_test(
      lambda: layers.DensePredictionCell(MIXED, filters=4, projection_filters=3, crop_size=129,
                                         output_stride=8, weight_decay=1e-4, name="dpc"),
      x, expected_output_shape=(2, 9, 9, 3), expected_num_trainable_weights=24,
      expected_num_non_trainable_weights=16, expected_trainable_params=266,
      expected_non_trainable_params=62, expected_num_losses=6, tmp_dir=str(tmp_path))
  assert layer.cell == MIXED and layer.rate_multiplier == 2
  assert [l.rate for l in layer.branch_layers if hasattr(l, "depthwise")] == [(6, 42), (42, 42)]


def test_aspp_structure_and_harness(tmp_path):
  x = np.random.default_rng(2).normal(size=(2, 17, 17, 3)).astype("float32")
  layer = run_layer_test(
      lambda: layers.ASPP(filters=4, crop_size=129, output_stride=8, name="aspp"), x,
      expected_output_shape=(2, 17, 17, 4), expected_trainable_params=287,
      expected_non_trainable_params=66, expected_num_losses=6, tmp_dir=str(tmp_path))
  names = [l.name for l in layer.branch_layers]
  assert names == ["image_pooling", "aspp0", "aspp1", "aspp2", "aspp3"]
  assert [l.rate for l in layer.branch_layers[2:]] == [(12, 12), (24, 24), (36, 36)]
  assert layer.branch_layers[0].kernel == (17, 17)  # the whole crop: image-level pooling
  assert layer.concat_projection.conv.kernel.shape == (1, 1, 20, 4)


@pytest.mark.parametrize("make, params", [
    (lambda: layers.ConvBNReLU(4, kernel_size=3, rate=2), (3 * 3 * 3 * 4 + 8, 8)),
    (lambda: layers.SeparableConvBNReLU(4, rate=(3, 6)), (9 * 3 + 6 + 3 * 4 + 8, 6 + 8)),
    (lambda: layers.PyramidPooling((4, 2), filters=4, crop_size=(129, 161)), (3 * 4 + 8, 8)),
], ids=["conv", "separable", "pooling"])
def test_operator_layers_pass_the_layer_harness(tmp_path, make, params):
  x = np.random.default_rng(3).normal(size=(2, 9, 11, 3)).astype("float32")
  run_layer_test(make, x, expected_output_shape=(2, 9, 11, 4),
                 expected_trainable_params=params[0], expected_non_trainable_params=params[1],
                 expected_num_losses=1, tmp_dir=str(tmp_path))
