"""The training-only kernels: fused batch norm (layers/batch_norm.py) and 1x1 convs as matmuls
(conv_blocks.pointwise_conv) give Keras' numbers when training and Keras' very ops otherwise."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from dpc_tf.layers import common
from dpc_tf.layers.batch_norm import BatchNorm
from dpc_tf.layers.conv_blocks import ConvBNReLU, SeparableConvBNReLU, pointwise_conv
from dpc_tf.testing import run_layer_test


def _train_once(bn, x, upstream):
  """(outputs, input/gamma/beta gradients, moving mean, moving variance) after one step."""
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = bn(x, training=True)
    loss = tf.reduce_sum(y * upstream)
  grads = tape.gradient(loss, [x, bn.gamma, bn.beta])
  return [y.numpy()] + [g.numpy() for g in grads] + [bn.moving_mean.numpy(),
                                                     bn.moving_variance.numpy()]


def _pair(shape, momentum=0.9, epsilon=1e-5, seed=0):
  rng = np.random.default_rng(seed)
  x = tf.constant(rng.normal(1.0, 3.0, size=shape).astype("float32"))
  upstream = tf.constant(rng.normal(size=shape).astype("float32"))
  results = []
  for cls in (keras.layers.BatchNormalization, BatchNorm):
    bn = cls(momentum=momentum, epsilon=epsilon)
    bn.build(shape)
    bn.gamma.assign(np.linspace(0.5, 2.0, shape[-1]))
    bn.beta.assign(np.linspace(-1.0, 1.0, shape[-1]))
    bn.moving_variance.assign(np.linspace(0.5, 1.5, shape[-1]))
    results.append(_train_once(bn, x, upstream))
  return results


# (8, 17, 17, 64): a proxy branch; (2, 1, 1, 5): image pooling at batch 2 (n = 2, the
# smallest Bessel factor); (1, 1, 1, 3): n = 1, where the unbiased variance is undefined.
@pytest.mark.parametrize("shape", [(8, 17, 17, 64), (3, 9, 13, 6), (2, 1, 1, 5), (1, 1, 1, 3)])
def test_fused_batch_norm_trains_as_keras_does(shape):
  keras_result, fused_result = _pair(shape)
  names = ["outputs", "input gradient", "gamma gradient", "beta gradient", "moving mean",
           "moving variance"]
  for name, expected, actual in zip(names, keras_result, fused_result):
    assert np.all(np.isfinite(actual)), name
    scale = max(np.max(np.abs(expected)), 1.0)  # n = 2: input gradients are float noise
    np.testing.assert_allclose(actual, expected, rtol=0, atol=2e-5 * scale, err_msg=name)


def test_fused_batch_norm_moving_variance_is_the_biased_one():
  # n = 2 values 0 and 2 per channel: biased variance 1 (unbiased would be 2).
  bn = BatchNorm(momentum=0.0, epsilon=1e-5)
  x = tf.constant(np.array([0.0, 2.0], "float32").reshape(2, 1, 1, 1))
  bn(x, training=True)
  np.testing.assert_allclose(bn.moving_mean.numpy(), [1.0], rtol=1e-6)
  np.testing.assert_allclose(bn.moving_variance.numpy(), [1.0], rtol=1e-6)


def _ops(fn, *args) -> set:
  return {op.type for op in tf.function(fn).get_concrete_function(*args).graph.get_operations()}


def test_inference_and_unsupported_cases_run_keras_own_code():
  x = tf.constant(np.random.default_rng(2).normal(size=(2, 5, 5, 4)).astype("float32"))
  bn = BatchNorm()
  bn.build(x.shape)
  reference = keras.layers.BatchNormalization()
  reference.build(x.shape)
  assert "FusedBatchNormV3" not in _ops(lambda t: bn(t, training=False), x)
  assert "FusedBatchNormV3" in _ops(lambda t: bn(t, training=True), x)
  np.testing.assert_array_equal(bn(x, training=False).numpy(),
                                reference(x, training=False).numpy())
  frozen = BatchNorm()
  frozen.build(x.shape)
  frozen.trainable = False  # fine-tune_batch_norm=False: inference statistics
  assert "FusedBatchNormV3" not in _ops(lambda t: frozen(t, training=True), x)
  synced = BatchNorm(synchronized=True)
  synced.build(x.shape)
  assert "FusedBatchNormV3" not in _ops(lambda t: synced(t, training=True), x)
  flat = BatchNorm()
  flat.build((2, 4))
  assert "FusedBatchNormV3" not in _ops(lambda t: flat(t, training=True), tf.ones((2, 4)))


def test_the_factory_makes_it_and_it_round_trips():
  layer = run_layer_test(lambda: common.batch_norm("bn", momentum=0.9), np.ones((2, 3, 3, 4),
                         "float32"), expected_num_trainable_weights=2,
                         expected_num_non_trainable_weights=2)
  assert isinstance(layer, BatchNorm) and layer.momentum == 0.9


@pytest.mark.parametrize("make", [lambda: ConvBNReLU(6, kernel_size=1),
                                  lambda: SeparableConvBNReLU(6, rate=(1, 3))],
                         ids=["conv_bn_relu", "separable"])
def test_pointwise_convs_train_as_the_conv_and_infer_through_it(make):
  x = tf.constant(np.random.default_rng(3).normal(size=(2, 7, 9, 5)).astype("float32"))
  layer = make()
  layer(x, training=False)
  conv = layer.conv if isinstance(layer, ConvBNReLU) else layer.pointwise
  mid = tf.constant(np.random.default_rng(4).normal(size=(2, 7, 9, 5)).astype("float32"))
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(mid)
    as_matmul = pointwise_conv(conv, mid, training=True)
    as_conv = conv(mid)
  np.testing.assert_allclose(as_matmul.numpy(), as_conv.numpy(), rtol=1e-5, atol=1e-5)
  for target in (mid, conv.kernel):
    np.testing.assert_allclose(tape.gradient(as_matmul, target).numpy(),
                               tape.gradient(as_conv, target).numpy(), rtol=1e-5, atol=1e-5)
  # Training runs the matmul, inference the Conv2D op itself.
  assert "Conv2D" not in _ops(lambda t: pointwise_conv(conv, t, training=True), mid)
  assert "Conv2D" in _ops(lambda t: pointwise_conv(conv, t, training=False), mid)
  np.testing.assert_array_equal(pointwise_conv(conv, mid, training=False).numpy(),
                                conv(mid).numpy())
  # The kernel's L2 loss is the layer's, whichever way the conv ran.
  layer(x, training=True)
  assert len(layer.losses) == 1
  np.testing.assert_allclose(float(layer.losses[0]),
                             float(conv.kernel_regularizer(conv.kernel)), rtol=1e-6)


def test_strided_and_wider_convs_are_left_to_the_conv():
  strided = keras.layers.Conv2D(3, 1, strides=2, use_bias=False)
  wide = keras.layers.Conv2D(3, 3, padding="same", use_bias=False)
  biased = keras.layers.Conv2D(3, 1, use_bias=True)
  x = tf.ones((1, 6, 6, 2))
  for conv in (strided, wide, biased):
    conv.build(x.shape)
    assert "Conv2D" in _ops(lambda t, c=conv: pointwise_conv(c, t, training=True), x)
  depthwise = keras.layers.DepthwiseConv2D(1, use_bias=False)
  depthwise.build(x.shape)
  assert "DepthwiseConv2dNative" in _ops(lambda t: pointwise_conv(depthwise, t, training=True),
                                         x)
