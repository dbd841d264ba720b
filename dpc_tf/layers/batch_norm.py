"""Batch norm whose training step is TensorFlow's fused kernel (the one norm layer, built by
common.batch_norm).

keras.layers.BatchNormalization trains through ops.moments and ops.batch_normalization: about
twenty small element-wise ops forward and backward per layer (means, squared differences, the
moments' Tile gradients, ...), half the ops of a proxy step. FusedBatchNormV3 does the same
forward in one kernel and its gradient in another: the released cell's proxy step took 0.87x
the time on 2 CPU cores (`python -m dpc_tf.benchmark training_kernels`, docs/BENCHMARKS.md).

Same numbers up to float summation order: the normalisation uses the batch's biased variance
as Keras does, and the moving statistics are updated exactly as Keras updates them (the fused
kernel reports the unbiased variance, which is scaled back to the biased one first).
Inference, synchronized (cross-replica) statistics, masks, renorm and layouts the kernel
does not take run Keras' own code unchanged, so a converted model's outputs are untouched.
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="dpc_tf")
class BatchNorm(keras.layers.BatchNormalization):
  """keras.layers.BatchNormalization with the fused kernel in training mode (same config)."""

  def _fusable(self, inputs, training, mask) -> bool:
    return (bool(training) and self.trainable and mask is None and not self.synchronized
            and not self.renorm and self.center and self.scale
            and keras.backend.backend() == "tensorflow"
            and len(inputs.shape) == 4 and self.axis in (-1, 3))

  def call(self, inputs, training=None, mask=None):
    if not self._fusable(inputs, training, mask):
      return super().call(inputs, training=training, mask=mask)
    x = tf.cast(inputs, tf.float32)  # as Keras: statistics in float32 whatever the policy
    empty = tf.constant([], tf.float32)
    y, mean, unbiased, _, _, _ = tf.raw_ops.FusedBatchNormV3(
        x=x, scale=tf.cast(self.gamma, tf.float32), offset=tf.cast(self.beta, tf.float32),
        mean=empty, variance=empty, epsilon=self.epsilon, exponential_avg_factor=1.0,
        data_format="NHWC", is_training=True)
    # The kernel's variance output is Bessel-corrected (n / (n - 1)); Keras' moving
    # variance averages the biased one, which the normalisation above also used.
    shape = tf.shape(x)
    n = tf.cast(shape[0] * shape[1] * shape[2], tf.float32)
    variance = unbiased * tf.math.divide_no_nan(n - 1.0, n)
    momentum = self.momentum
    self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
    self.moving_variance.assign(self.moving_variance * momentum + variance * (1.0 - momentum))
    return tf.cast(y, self.compute_dtype)
