"""Batch norm folded into convolutions: every conv -> BN block, through the layer harness."""

import keras
import numpy as np
import pytest

from dpc_tf.backbones.blocks import ConvBN, DepthwiseConvBN, XceptionSeparableConv
from dpc_tf.layers.conv_blocks import ConvBNReLU, SeparableConvBNReLU
from dpc_tf.layers.folding import FoldedTrainingError
from dpc_tf.testing import run_layer_test

INPUTS = np.random.default_rng(0).normal(0, 1, (2, 9, 9, 6)).astype(np.float32)
BLOCKS = {
    "conv_bn_relu": lambda: ConvBNReLU(5, 3, rate=2, name="b"),
    "separable_conv_bn_relu": lambda: SeparableConvBNReLU(5, rate=(1, 3), name="b"),
    "conv_bn_strided": lambda: ConvBN(5, 3, strides=2, activation="relu6", explicit_padding=True,
                                      name="b"),
    "depthwise_conv_bn": lambda: DepthwiseConvBN(3, rate=2, activation="relu6", name="b"),
    "xception_separable": lambda: XceptionSeparableConv(5, strides=2, name="b"),
    "xception_separable_inside": lambda: XceptionSeparableConv(5, rate=2, activation_inside=True,
                                                               name="b"),
}


def _trained_looking(make):
  """A built block with fixed kernels whose BNs hold non-trivial statistics (identity BNs
  would hide errors)."""
  block = make()
  block(INPUTS, training=False)
  rng = np.random.default_rng(1)
  for kernel in (w for w in block.weights if w.path.endswith("kernel")):
    kernel.assign(rng.normal(0, 0.3, kernel.shape))
  for bn in (l for l in block._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)):
    bn.gamma.assign(rng.uniform(0.5, 2.0, bn.gamma.shape))
    bn.beta.assign(rng.normal(0, 0.5, bn.beta.shape))
    bn.moving_mean.assign(rng.normal(0, 0.5, bn.moving_mean.shape))
    bn.moving_variance.assign(rng.uniform(0.2, 3.0, bn.moving_variance.shape))
  return block


def _folded(make):
  block = _trained_looking(make)
  block.fold_batch_norm()
  return block


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_folded_block_computes_the_unfolded_function(name):
  make = BLOCKS[name]
  expected = _trained_looking(make)(INPUTS, training=False).numpy()
  # The harness on the folded block: its serialized clone is unfolded (folding is no config
  # setting) and, given the folded weights, computes the same function: the folded BN is an
  # identity plus the folded bias.
  folded = run_layer_test(lambda: _folded(make), INPUTS, skip=("saving",), atol=1e-5)
  actual = folded(INPUTS, training=False).numpy()
  np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
  assert not np.allclose(expected, _trained_looking(make)(INPUTS, training=True).numpy(),
                         atol=1e-3)  # the statistics matter, so the comparison can fail
  with pytest.raises(FoldedTrainingError, match="folded"):
    folded(INPUTS, training=True)
