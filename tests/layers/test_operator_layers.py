"""Every one of the 81 operators as a Keras layer, on odd and even feature sizes."""

import numpy as np
import pytest
import tensorflow as tf

from dpc_tf import layers, search_space as ss
from dpc_tf.errors import DpcError
from dpc_tf.testing import check_output_shape


@pytest.fixture(scope="module")
def features():
  rng = np.random.default_rng(0)
  return {"odd": rng.normal(size=(2, 9, 13, 4)).astype("float32"),
          "even": rng.normal(size=(2, 8, 12, 4)).astype("float32")}


@pytest.mark.parametrize("op", ss.ALL_OPERATORS, ids=lambda o: o.text)
def test_every_operator_builds_with_the_right_shape(op, features):
  for x in features.values():
    layer = layers.operator_layer(op, "branch", filters=6, output_stride=8)
    y = layer(x, training=False).numpy()
    check_output_shape(layer, x, y, expected_output_shape=x.shape[:3] + (6,))
    assert np.all(np.isfinite(y)) and np.all(y >= 0)  # ends in ReLU


def test_output_stride_scales_dilation():
  layer = layers.operator_layer(ss.SeparableConv3x3(6, 21), "b", filters=4, output_stride=8)
  assert layer.depthwise.dilation_rate == (12, 42)
  assert layer.rate == (12, 42)


def test_separable_conv_is_depthwise_bn_relu_pointwise_bn_relu():
  layer = layers.SeparableConvBNReLU(3, rate=(1, 3), weight_decay=4e-5)
  x = np.random.default_rng(1).normal(size=(1, 7, 9, 2)).astype("float32")
  y = layer(x, training=False).numpy()
  dw = tf.nn.depthwise_conv2d(x, layer.depthwise.kernel, [1, 1, 1, 1], "SAME",
                              dilations=(1, 3))
  eps = layer.depthwise_bn.epsilon
  dw = tf.nn.relu(dw / np.sqrt(1 + eps))  # fresh BN: mean 0, variance 1, gamma 1, beta 0
  pw = tf.nn.relu(tf.nn.conv2d(dw, layer.pointwise.kernel, 1, "SAME") / np.sqrt(1 + eps))
  np.testing.assert_allclose(y, pw.numpy(), rtol=1e-5, atol=1e-5)
  assert layer.depthwise_bn.momentum == pytest.approx(0.9997)
  assert eps == pytest.approx(1e-5)
  # Slim L2 (wd * sum(w^2) / 2) on the pointwise kernel only, not the depthwise one.
  assert len(layer.losses) == 1
  expected = 4e-5 * np.sum(layer.pointwise.kernel.numpy() ** 2) / 2
  assert float(layer.losses[0]) == pytest.approx(expected, rel=1e-5)
  assert layer.depthwise.use_bias is False and layer.pointwise.use_bias is False


def test_pyramid_pooling_matches_a_numpy_reference_at_an_odd_crop():
  # Crop 129 at output stride 16 -> 9x9 features; grid 2 -> kernel int(128/32 + 1) = 5.
  assert layers.pooling_kernel((129, 129), 16, (2, 4)) == (5, 3)
  assert layers.pooling_kernel((769, 769), 16, 1) == (49, 49)
  assert layers.pooling_kernel((1025, 2049), 16, (1, 1)) == (65, 129)
  layer = layers.PyramidPooling((2, 4), filters=3, crop_size=129, output_stride=16)
  x = np.random.default_rng(2).normal(size=(1, 9, 9, 2)).astype("float32")
  y = layer(x, training=False).numpy()
  pooled = np.stack([[x[0, i:i + 5, j:j + 3].mean(axis=(0, 1)) for j in range(7)]
                     for i in range(5)])  # VALID stride-1: 5x7 outputs
  conv = np.maximum(pooled @ layer.conv.conv.kernel.numpy()[0, 0] / np.sqrt(1 + 1e-5), 0)
  # align_corners resize 5x7 -> 9x9: corners are preserved exactly.
  np.testing.assert_allclose(y[0, 0, 0], conv[0, 0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(y[0, -1, -1], conv[-1, -1], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(y[0, 2, 0], (conv[1, 0] + conv[1, 0]) / 2, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(y[0, 1, 0], (conv[0, 0] + conv[1, 0]) / 2, rtol=1e-5, atol=1e-6)


def test_pyramid_pooling_kernel_comes_from_the_crop_not_the_runtime_size():
  layer = layers.PyramidPooling(1, filters=2, crop_size=129, output_stride=16)
  x = np.random.default_rng(3).normal(size=(1, 12, 12, 2)).astype("float32")
  layer(x)
  assert layer.kernel == (9, 9)  # an overlapping 9x9 average over the 12x12 map, not global

  spec = tf.TensorSpec([None, None, None, 2])
  run = tf.function(lambda t: layer(t, training=False), input_signature=[spec])
  np.testing.assert_allclose(run(x).numpy(), layer(x).numpy(), rtol=1e-5, atol=1e-6)
  # Smaller than the kernel at inference: falls back to the mean instead of failing.
  small = run(x[:, :5, :7]).numpy()
  assert small.shape == (1, 5, 7, 2)
  np.testing.assert_allclose(small[0, 0, 0], small[0, -1, -1], rtol=1e-5)


def test_pyramid_pooling_without_crop_needs_a_static_size():
  layer = layers.PyramidPooling(2, filters=2)
  with pytest.raises(DpcError, match="needs crop_size when the feature size is not static"):
    layer.build((None, None, None, 4))


@pytest.mark.parametrize("size,rate", [((9, 9), (12, 18)), ((9, 17), (9, 3)), ((17, 9), (3, 21)),
                                       ((5, 5), (21, 21)), ((9, 9), (8, 6))])
@pytest.mark.parametrize("block", ["separable", "conv3x3"])
def test_rates_past_the_feature_size_skip_the_padding_taps_exactly(size, rate, block):
  # conv_blocks.atrous_conv: the trimmed kernel must give the full kernel's outputs and
  # gradients (the off-centre taps only ever read zero padding); (8, 6) on 9x9 trims nothing.
  from dpc_tf.layers import conv_blocks
  layer = (layers.SeparableConvBNReLU(5, rate=rate) if block == "separable"
           else layers.ConvBNReLU(5, kernel_size=3, rate=rate))
  conv = layer.depthwise if block == "separable" else layer.conv
  x = tf.constant(np.random.default_rng(4).normal(size=(2, *size, 3)).astype("float32"))
  layer(x)
  expected = tuple(r >= s for r, s in zip(rate, size))
  assert conv_blocks.padding_only_taps(conv, x.shape) == expected
  conv.kernel.assign(np.random.default_rng(5).normal(size=conv.kernel.shape))
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(x)
    trimmed = conv_blocks.atrous_conv(conv, x)
    full = conv(x)  # Keras' own dilated conv over the padded map
  np.testing.assert_allclose(trimmed.numpy(), full.numpy(), rtol=1e-5, atol=1e-5)
  for a, b in zip(tape.gradient(trimmed, [conv.kernel, x]), tape.gradient(full, [conv.kernel, x])):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)
  # Unknown sizes (a dynamic signature) run the full kernel and agree as well.
  spec = tf.TensorSpec([None, None, None, 3])
  dynamic = tf.function(lambda t: layer(t, training=False), input_signature=[spec])
  np.testing.assert_allclose(dynamic(x).numpy(), layer(x, training=False).numpy(),
                             rtol=1e-5, atol=1e-5)
