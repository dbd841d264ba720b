"""DeepLab's training and evaluation preprocessing as tf.data-traceable functions.

Training (REFERENCE.md section 5): random scale from a discrete set (bilinear image, nearest
label, both align_corners=True so that they sample the same positions), pad bottom/right to
the crop (127.5 image, 255 label), random crop, random left-right flip. Evaluation: pad to
the eval crop. Every random decision uses a stateless op on a per-example seed, so a seeded
pipeline gives the same crops whatever the map parallelism.
"""

from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf

from dpc_tf.data.specs import IGNORE_LABEL

IMAGE_PAD = 127.5  # DeepLab's mean pixel: padded image regions look "neutral" to the model.


def random_scale(image: tf.Tensor, label: tf.Tensor, scales: Sequence[float],
                 seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """Resizes both by one scale drawn uniformly from `scales` (size = int(dim * scale))."""
  scales = tuple(float(s) for s in scales)
  if not scales or min(scales) <= 0:
    raise ValueError(f"scales must be positive, got {scales}")
  if scales == (1.0,):
    return image, label
  index = tf.random.stateless_uniform([], seed, 0, len(scales), dtype=tf.int32)
  scale = tf.gather(tf.constant(scales, tf.float32), index)
  size = tf.cast(tf.cast(tf.shape(image)[:2], tf.float32) * scale, tf.int32)
  image = tf.raw_ops.ResizeBilinear(images=image[None], size=size, align_corners=True,
                                    half_pixel_centers=False)[0]
  label = tf.raw_ops.ResizeNearestNeighbor(images=label[None], size=size, align_corners=True,
                                           half_pixel_centers=False)[0]
  return image, label


def pad_to_size(image: tf.Tensor, label: tf.Tensor, height: int, width: int,
                ignore_label: int = IGNORE_LABEL) -> tuple[tf.Tensor, tf.Tensor]:
  """Pads bottom/right up to at least (height, width): image with 127.5, label with ignore."""
  shape = tf.shape(image)
  pad_h = tf.maximum(height - shape[0], 0)
  pad_w = tf.maximum(width - shape[1], 0)
  paddings = [[0, pad_h], [0, pad_w], [0, 0]]
  image = tf.pad(image, paddings, constant_values=IMAGE_PAD)
  label = tf.pad(label, paddings, constant_values=tf.cast(ignore_label, label.dtype))
  return image, label


def random_crop(image: tf.Tensor, label: tf.Tensor, height: int, width: int,
                seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """The same random (height, width) window of both; they must be at least that large."""
  shape = tf.shape(image)
  limits = tf.cast(shape[:2] - [height, width] + 1, tf.float32)
  offsets = tf.cast(tf.random.stateless_uniform([2], seed) * limits, tf.int32)
  offsets = tf.minimum(offsets, shape[:2] - [height, width])  # guards u * limit == limit
  image = tf.slice(image, [offsets[0], offsets[1], 0], [height, width, -1])
  label = tf.slice(label, [offsets[0], offsets[1], 0], [height, width, -1])
  return image, label


def random_flip(image: tf.Tensor, label: tf.Tensor,
                seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """Flips both left-right with probability 1/2."""
  flip = tf.random.stateless_uniform([], seed) < 0.5
  return tf.cond(flip, lambda: (tf.reverse(image, [1]), tf.reverse(label, [1])),
                 lambda: (image, label))


def preprocess_train(example: dict, crop: tuple[int, int], scales: Sequence[float],
                     seed: tf.Tensor,
                     ignore_label: int = IGNORE_LABEL) -> tuple[tf.Tensor, tf.Tensor]:
  """One training example -> (image float32 [h, w, 3] in 0..255, label int32 [h, w, 1]).

  Args:
    example: {"image": uint8 [H, W, 3], "segmentation_mask": uint8 [H, W, 1]}.
    crop: (h, w) of the output.
    scales: the random-scale set.
    seed: int32/int64 [2], the stateless seed of this example.
  """
  height, width = crop
  seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
  image = tf.cast(example["image"], tf.float32)
  label = example["segmentation_mask"]
  image, label = random_scale(image, label, scales, seeds[0])
  image, label = pad_to_size(image, label, height, width, ignore_label)
  image, label = random_crop(image, label, height, width, seeds[1])
  image, label = random_flip(image, label, seeds[2])
  image.set_shape((height, width, 3))
  label.set_shape((height, width, 1))
  return image, tf.cast(label, tf.int32)


def preprocess_eval(example: dict, crop: tuple[int, int], ignore_label: int = IGNORE_LABEL,
                    name: Optional[str] = None) -> tuple[tf.Tensor, tf.Tensor]:
  """One evaluation example padded bottom/right to `crop`; fails if the image is larger
  (DeepLab evaluates whole images: a larger one needs a larger eval crop, not a crop)."""
  height, width = crop
  image = tf.cast(example["image"], tf.float32)
  label = example["segmentation_mask"]
  shape = tf.shape(image)
  with tf.control_dependencies([tf.debugging.assert_less_equal(
      shape[:2], tf.constant([height, width]),
      message=f"{name or 'dataset'}: an image is larger than the eval crop "
              f"{height}x{width}; pass a larger crop_size")]):
    image, label = pad_to_size(image, label, height, width, ignore_label)
  image.set_shape((height, width, 3))
  label.set_shape((height, width, 1))
  return image, tf.cast(label, tf.int32)
