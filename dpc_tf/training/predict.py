"""Running an exported SavedModel over image files: label maps and colour overlays.

For every image `<stem>.<ext>` matched, writes `<stem>.png` (class ids as pixel values,
uint8, uint16 beyond 256 classes) and `<stem>_overlay.png` (the image blended with the
palette colours of its labels). The palette is the dataset's, read from the SavedModel
(dpc_tf exports carry it) or from an explicit dataset name.
"""

from __future__ import annotations

import glob
import os
from typing import Optional

import numpy as np
import tensorflow as tf
from absl import logging

from dpc_tf.data import specs
from dpc_tf.training import export, summaries
from dpc_tf.errors import DpcError, one_line
from google.protobuf.message import DecodeError
from dpc_tf.utils.files import write_bytes_atomic


def _require_saved_model(saved_model: str) -> None:
  if not os.path.isfile(os.path.join(saved_model, "saved_model.pb")):
    raise DpcError(f"no SavedModel at {saved_model} (expected {saved_model}/saved_model.pb)")


def load(saved_model: str):
  """(serving signature, palette uint8 [C, 3] or None, the loaded object) of a SavedModel."""
  _require_saved_model(saved_model)
  try:
    loaded = tf.saved_model.load(saved_model)
  except (tf.errors.OpError, OSError, DecodeError) as e:
    raise DpcError(f"SavedModel {saved_model} cannot be loaded (corrupt or incomplete?): "
                   f"{one_line(e)}") from None
  if export.SIGNATURE not in loaded.signatures:
    raise DpcError(f"SavedModel {saved_model} has no {export.SIGNATURE!r} signature "
                    f"(it has {', '.join(loaded.signatures) or 'none'})")
  palette = getattr(loaded, "palette", None)
  palette = None if palette is None else palette.numpy().astype(np.uint8)
  return loaded.signatures[export.SIGNATURE], palette, loaded


def resolve_palette(saved_palette: Optional[np.ndarray], dataset: Optional[str],
                    num_classes: int) -> np.ndarray:
  """An explicit dataset's palette, else the SavedModel's, else PASCAL's colour map."""
  if dataset:
    try:
      return specs.get_spec(dataset).palette_array()
    except ValueError as e:
      raise DpcError(str(e)) from None
  if saved_palette is not None:
    return saved_palette
  return np.asarray(specs.pascal_palette(max(num_classes, 1)), np.uint8)


def read_image(path: str) -> np.ndarray:
  """uint8 [H, W, 3] (grey images are expanded, alpha dropped)."""
  try:
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
  except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as e:
    raise DpcError(f"cannot read image {path}: {' '.join(e.message.split())}") from None
  return image.numpy()


def predict_images(saved_model: str, pattern: str, output_dir: str,
                   dataset: Optional[str] = None, alpha: float = 0.5) -> list[str]:
  """Runs the SavedModel on every file matching `pattern`; returns the files written."""
  _require_saved_model(saved_model)
  paths = sorted(p for p in glob.glob(os.path.expanduser(pattern)) if os.path.isfile(p))
  if not paths:
    raise DpcError(f"no image file matches {pattern!r}")
  stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
  duplicates = sorted({s for s in stems if stems.count(s) > 1})
  if duplicates:
    raise DpcError(f"several images share the stem(s) {', '.join(duplicates)}: their "
                    f"outputs would overwrite each other; use a narrower --images pattern")
  serve, saved_palette, _ = load(saved_model)
  os.makedirs(output_dir, exist_ok=True)
  written = []
  palette = None
  for path, stem in zip(paths, stems):
    image = read_image(path)
    outputs = serve(images=tf.constant(image[None]))
    labels = outputs["labels"].numpy()[0]
    num_classes = int(outputs["probabilities"].shape[-1])
    if palette is None:
      palette = resolve_palette(saved_palette, dataset, num_classes)
    dtype = tf.uint8 if num_classes <= 256 else tf.uint16
    label_png = tf.io.encode_png(tf.cast(labels[..., None], dtype)).numpy()
    overlay_png = tf.io.encode_png(summaries.overlay(image, labels, palette, alpha)).numpy()
    for name, content in ((f"{stem}.png", label_png), (f"{stem}_overlay.png", overlay_png)):
      target = os.path.join(output_dir, name)
      write_bytes_atomic(target, content)
      written.append(target)
    logging.info("%s -> %s (%s)", path, os.path.join(output_dir, stem + ".png"),
                 ", ".join(f"{c}: {n}" for c, n in zip(*np.unique(labels, return_counts=True))))
  return written
