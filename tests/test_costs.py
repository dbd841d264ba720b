import keras
import numpy as np
import pytest

from dpc_tf import costs, layers, search_space as ss


def _head_model(head, shape):
  inputs = keras.Input(shape)
  return keras.Model(inputs, head(inputs))


@pytest.mark.parametrize("channels, params, madds", [(2048, 814_080, 6_826_060_800),
                                                     (320, 356_160, 2_986_401_600)])
def test_released_cell_reproduces_table_1(channels, params, madds):
  # 1025x2049 at output stride 16 -> 65x129 features.
  head = layers.DensePredictionCell(ss.CITYSCAPES_CELL, crop_size=(1025, 2049))
  report = costs.model_costs(_head_model(head, (65, 129, channels)), (65, 129, channels),
                             {"head": head}, {"head": head.branch_layers})
  assert report["head"]["branch_params"] == params
  assert report["head"]["branch_madds"] == madds
  assert round(madds / 1e9, 2) in (6.83, 2.99)
  # Everything: + projection (5*256*256) + BN: gamma/beta trainable, mean/variance not, on
  # branch 0's depthwise (C channels), four other depthwise, five pointwise, the projection.
  bn_channels = channels + 4 * 256 + 5 * 256 + 256
  assert report["head"]["trainable_params"] == params + 5 * 256 * 256 + 2 * bn_channels
  assert report["head"]["non_trainable_params"] == 2 * bn_channels
  assert report["total"]["madds"] == madds + 5 * 256 * 256 * 65 * 129


def test_madds_follow_strides_and_dilations():
  inputs = keras.Input((16, 16, 3))
  conv = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)
  dw = keras.layers.DepthwiseConv2D(3, dilation_rate=4, padding="same", use_bias=False)
  dense = keras.layers.Dense(5)
  outputs = dense(dw(conv(inputs)))
  model = keras.Model(inputs, outputs)
  report = costs.model_costs(model, (16, 16, 3), {"conv": conv, "dw": dw, "dense": dense})
  assert report["conv"]["madds"] == 3 * 3 * 3 * 8 * 8 * 8
  assert report["dw"]["madds"] == 3 * 3 * 8 * 8 * 8  # dilation adds no work
  assert report["dense"]["madds"] == 8 * 5 * 8 * 8
  assert report["dense"]["trainable_params"] == 8 * 5 + 5
  assert report["total"]["madds"] == sum(report[p]["madds"] for p in ("conv", "dw", "dense"))
  # Tracing leaves the layers as they were.
  assert "call" not in vars(conv)
  assert model(np.zeros((1, 16, 16, 3), "float32")).shape == (1, 8, 8, 5)


def test_parts_must_cover_the_model():
  inputs = keras.Input((4, 4, 3))
  a, b = keras.layers.Conv2D(2, 1), keras.layers.Conv2D(2, 1)
  model = keras.Model(inputs, b(a(inputs)))
  with pytest.raises(ValueError, match="do not cover the model"):
    costs.model_costs(model, (4, 4, 3), {"a": a})
