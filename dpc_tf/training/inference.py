"""Single- and multi-scale (+ flip) inference, shared by evaluation and the SavedModel.

Evaluation and export call the very same `Predictor`, so the exported model predicts what
`evaluate` scored (the TF1 release's exported graph padded and resized differently from
its own evaluation, and users saw the two disagree).

Multi-scale inference as released (REFERENCE.md section 5): for each scale s the image is
resized (bilinear, align corners) to scale_dimension(size, s), the model's logits are
resized back to the image size, turned into probabilities by a softmax and averaged over
every scale and, with flip, every left-right mirrored pass; the label is the argmax.

The Predictor runs a copy of the model with batch norm folded into the convolutions
(dpc_tf.models.fold_batch_norm: same outputs up to float rounding, a third less forward time
on CPU); the model it was given, and its checkpoints, keep their weights.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras
import tensorflow as tf

from dpc_tf.errors import DpcError
from dpc_tf.layers.common import resize_bilinear
from dpc_tf.models.folding import fold_batch_norm

IMAGE_PAD = 127.5  # DeepLab's mean pixel, as dpc_tf.data pads evaluation images.


def scaled_size(size: tf.Tensor, scale: float) -> tf.Tensor:
  """scale_dimension on a runtime size: int((dim - 1) * scale + 1)."""
  return tf.cast((tf.cast(size, tf.float32) - 1.0) * scale + 1.0, tf.int32)


class Predictor:
  """images float32 [B, H, W, 3] in 0..255 -> class probabilities float32 [B, H, W, C].

  Args:
    model: maps images in 0..255 to logits at the input size (dpc_tf.models.build_deeplab).
    scales: inference scales; (1.0,) is single-scale.
    flip: also run every scale on the left-right mirrored image.
    pad_to: (h, w) to pad smaller images to (bottom/right, mean pixel) before inference,
      cropping the result back; None never pads. Evaluation data arrive padded already.
    fold: predict with a batch-norm-folded copy of model (a snapshot of its weights now);
      False predicts with model itself.
  """

  def __init__(self, model: keras.Model, scales: Sequence[float] = (1.0,), flip: bool = False,
               pad_to: Optional[Sequence[int]] = None, fold: bool = True):
    self.model = fold_batch_norm(model) if fold else model
    self.scales = tuple(float(s) for s in scales)
    if not self.scales or min(self.scales) <= 0:
      raise DpcError(f"scales must be positive, got {scales!r}")
    self.flip = bool(flip)
    self.pad_to = None if not pad_to else (int(pad_to[0]), int(pad_to[1]))

  def _logits(self, images: tf.Tensor) -> tf.Tensor:
    return tf.cast(self.model(images, training=False), tf.float32)

  def _scale_probabilities(self, images: tf.Tensor, scale: float) -> tf.Tensor:
    size = tf.shape(images)[1:3]
    if scale == 1.0:
      scaled = images
    else:
      scaled = resize_bilinear(images, scaled_size(size, scale))
    passes = [scaled, tf.reverse(scaled, [2])] if self.flip else [scaled]
    total = None
    for index, batch in enumerate(passes):
      logits = self._logits(batch)
      if index == 1:
        logits = tf.reverse(logits, [2])
      if scale != 1.0:
        logits = resize_bilinear(logits, size)
      probabilities = tf.nn.softmax(logits, axis=-1)
      total = probabilities if total is None else total + probabilities
    return total

  def probabilities(self, images: tf.Tensor) -> tf.Tensor:
    images = tf.cast(images, tf.float32)
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    if self.pad_to is not None:
      pad_h = tf.maximum(self.pad_to[0] - height, 0)
      pad_w = tf.maximum(self.pad_to[1] - width, 0)
      images = tf.pad(images, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]],
                      constant_values=IMAGE_PAD)
    total = None
    for scale in self.scales:
      p = self._scale_probabilities(images, scale)
      total = p if total is None else total + p
    passes = len(self.scales) * (2 if self.flip else 1)
    probabilities = total / float(passes) if passes > 1 else total
    return probabilities[:, :height, :width, :]

  def __call__(self, images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(labels int32 [B, H, W], probabilities float32 [B, H, W, C])."""
    probabilities = self.probabilities(images)
    return tf.argmax(probabilities, axis=-1, output_type=tf.int32), probabilities
