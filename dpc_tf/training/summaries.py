"""TensorBoard summaries (tf.summary event files) and colour renderings of label maps.

Only the chief of a multi-worker job writes; the others get a no-op writer, so callers
never branch on the task.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2


def writer(model_dir: str, name: str, enabled: bool = True) -> tf.summary.SummaryWriter:
  """An event writer for model_dir/name (e.g. "train", "eval"), or a no-op one."""
  if not enabled:
    return tf.summary.create_noop_writer()
  return tf.summary.create_file_writer(os.path.join(model_dir, name))


def colorize(labels: np.ndarray, palette: np.ndarray,
             ignore_colour: Sequence[int] = (255, 255, 255)) -> np.ndarray:
  """uint8 [..., 3] colours of class ids [...]; ids outside the palette (the ignore label)
  get ignore_colour."""
  labels = np.asarray(labels).astype(np.int64)
  palette = np.asarray(palette, np.uint8)
  out = np.empty(labels.shape + (3,), np.uint8)
  out[...] = np.asarray(ignore_colour, np.uint8)
  inside = (labels >= 0) & (labels < palette.shape[0])
  out[inside] = palette[labels[inside]]
  return out


def overlay(image: np.ndarray, labels: np.ndarray, palette: np.ndarray,
            alpha: float = 0.5) -> np.ndarray:
  """The image blended with the colours of its label map (uint8 [H, W, 3])."""
  colours = colorize(labels, palette).astype(np.float32)
  blended = (1.0 - alpha) * np.asarray(image, np.float32) + alpha * colours
  return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def comparison_strip(images: np.ndarray, labels: np.ndarray, predictions: np.ndarray,
                     palette: np.ndarray) -> np.ndarray:
  """uint8 [N, H, 3W, 3]: image | ground truth | prediction, one row per example."""
  images = np.clip(np.asarray(images), 0, 255).astype(np.uint8)
  labels = np.asarray(labels)
  if labels.ndim == 4:
    labels = labels[..., 0]
  truth = colorize(labels, palette)
  predicted = colorize(predictions, palette)
  return np.concatenate([images, truth, predicted], axis=2)


def _metadata(plugin: str) -> bytes:
  return summary_pb2.SummaryMetadata(
      plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin)).SerializeToString()


def write_scalars(step: int, values: dict) -> None:
  """Scalar summaries in TensorBoard's "scalars" format.

  tf.summary.scalar needs the tensorboard package, which TF 2.21 no longer installs; the
  low-level tf.summary.write with the plugin metadata writes the very same event records.
  """
  for name, value in values.items():
    if value is not None and np.isfinite(value):
      tf.summary.write(name, tf.constant(float(value), tf.float32), step=step,
                       metadata=_metadata("scalars"))


def write_images(step: int, name: str, images: np.ndarray) -> None:
  """Image summaries in TensorBoard's "images" format: [width, height, png, png, ...]."""
  images = np.asarray(images, np.uint8)
  encoded = [tf.io.encode_png(image) for image in images]
  tensor = tf.stack([tf.as_string(images.shape[2]), tf.as_string(images.shape[1])] + encoded)
  tf.summary.write(name, tensor, step=step, metadata=_metadata("images"))
