"""Backbone blocks: explicit padding, activations, serialization round trips."""

import numpy as np
import pytest
import tensorflow as tf

from dpc_tf.backbones import ConvBN, DepthwiseConvBN, XceptionSeparableConv, fixed_padding
from dpc_tf.errors import DpcError
from dpc_tf.testing import run_layer_test


def test_fixed_padding_is_symmetric_floor_ceil():
  x = tf.zeros((1, 6, 6, 1))
  assert fixed_padding(x, 3).shape == (1, 8, 8, 1)  # 1 + 1
  assert fixed_padding(x, 3, rate=2).shape == (1, 10, 10, 1)  # k_eff 5: 2 + 2
  assert fixed_padding(x, 4).shape == (1, 9, 9, 1)  # 3 = 1 + 2 (floor, ceil)
  padded = fixed_padding(tf.ones((1, 2, 2, 1)), 4).numpy()[0, :, :, 0]
  assert padded[0].sum() == 0 and padded[1, 1:3].sum() == 2 and padded[3:].sum() == 0


def test_strided_conv_pads_explicitly_not_same():
  """On an even input 'same' pads bottom/right only; the release pads both sides."""
  x = tf.random.stateless_uniform((1, 8, 8, 2), seed=(1, 2))
  layer = ConvBN(3, 3, strides=2, explicit_padding=True, bn_epsilon=0.0)
  y = layer(x, training=False)
  kernel = layer.conv.kernel
  manual = tf.nn.conv2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), kernel, 2, "VALID")
  np.testing.assert_allclose(y.numpy(), manual.numpy(), atol=1e-5)
  same = tf.nn.conv2d(x, kernel, 2, "SAME")
  assert y.shape == same.shape == (1, 4, 4, 3)
  assert not np.allclose(y.numpy(), same.numpy(), atol=1e-3)


def test_separable_conv_pre_activation_and_inside_activation():
  x = tf.random.stateless_normal((1, 5, 5, 4), seed=(3, 4))
  pre = XceptionSeparableConv(6, name="pre")
  inside = XceptionSeparableConv(6, activation_inside=True, name="inside")
  y_pre, y_inside = pre(x, training=False), inside(x, training=False)
  assert float(tf.reduce_min(y_pre)) < 0 <= float(tf.reduce_min(y_inside))
  # Pre-activation: the input's negative part is cut before the depthwise conv.
  np.testing.assert_allclose(pre(x).numpy(), pre(tf.nn.relu(x)).numpy(), atol=1e-6)


@pytest.mark.parametrize("make, shape, params", [
    (lambda: ConvBN(8, 3, strides=2, activation="relu", explicit_padding=True, sync_bn=False,
                    name="c"), (2, 9, 7, 3), (3 * 3 * 3 * 8 + 16, 16)),
    (lambda: ConvBN(8, 1, rate=1, activation="relu6", weight_decay=0.0, name="c1"),
     (2, 4, 4, 3), (3 * 8 + 16, 16)),
    (lambda: DepthwiseConvBN(3, strides=1, rate=2, activation=None, name="d"), (2, 9, 9, 5),
     (9 * 5 + 10, 10)),
    (lambda: XceptionSeparableConv(7, strides=2, activation_inside=False, name="s"),
     (2, 8, 6, 4), (9 * 4 + 8 + 4 * 7 + 14, 8 + 14)),
    (lambda: XceptionSeparableConv(7, rate=3, activation_inside=True, bn_momentum=0.9,
                                   name="s2"), (2, 8, 6, 4), (9 * 4 + 8 + 4 * 7 + 14, 8 + 14)),
], ids=["conv_strided", "conv_1x1", "depthwise", "separable", "separable_inside"])
def test_blocks_pass_the_layer_harness(tmp_path, make, shape, params):
  x = tf.random.stateless_uniform(shape, seed=(5, 6)).numpy()
  run_layer_test(make, x, expected_trainable_params=params[0],
                 expected_non_trainable_params=params[1], tmp_dir=str(tmp_path))


def test_bad_block_arguments():
  with pytest.raises(DpcError, match="unknown activation 'gelu'"):
    ConvBN(4, activation="gelu")
  with pytest.raises(DpcError, match="cannot have both stride 2 and rate 2"):
    DepthwiseConvBN(strides=2, rate=2, name="bad")
