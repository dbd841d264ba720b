"""SavedModel export: a small tf.Module with one clean serving signature.

    serving_default(images: uint8 [N, H, W, 3], any N, H, W)
        -> {"labels": int32 [N, H, W], "probabilities": float32 [N, H, W, C]}

Preprocessing (cast, padding to the evaluation crop, scales, flip) happens inside, through
the same inference.Predictor that `evaluate` uses, so the SavedModel predicts exactly what
evaluation scored (both with batch norm folded into the convolutions; the SavedModel's
variables are the folded ones, the training checkpoint keeps the originals). The module also
carries the dataset's name, class names and palette as variables (`loaded.palette`,
`loaded.class_names`, `loaded.dataset`), which `dpc_tf.predict` uses for colour overlays. Loading needs only TensorFlow:
`tf.saved_model.load(dir).signatures["serving_default"](images=...)`.

The input signature is declared with an unknown shape and checked at run time: a loaded
signature does not enforce a declared static shape, and a rank-3 tensor fed to a
[None, None, None, 3] signature aborts the whole process inside a convolution kernel.
"""

from __future__ import annotations

import os
import shutil
from typing import Optional, Sequence

import keras
import tensorflow as tf

from dpc_tf import data
from dpc_tf.training import checkpointing, evaluation, inputs
from dpc_tf.training.config import EvalConfig, ExportConfig, TrainConfig
from dpc_tf.errors import DpcError
from dpc_tf.training.inference import Predictor
from dpc_tf.utils import files

SIGNATURE = "serving_default"


class SegmentationModule(tf.Module):
  """The exported object: model + inference settings + dataset metadata."""

  def __init__(self, model: keras.Model, spec: data.DatasetSpec, scales: Sequence[float],
               flip: bool, pad_to: Optional[Sequence[int]] = None, step: int = -1):
    super().__init__(name="dpc_tf_segmentation")
    self._predictor = Predictor(model, scales, flip, pad_to)
    self.model = self._predictor.model  # the batch-norm-folded copy the signature runs
    self.dataset = tf.Variable(spec.name, trainable=False, name="dataset")
    self.class_names = tf.Variable(list(spec.class_names), trainable=False, name="class_names")
    self.palette = tf.Variable(spec.palette_array(), trainable=False, name="palette")
    self.ignore_label = tf.Variable(spec.ignore_label, trainable=False, name="ignore_label")
    self.scales = tf.Variable(list(self._predictor.scales), trainable=False, name="scales")
    self.flip = tf.Variable(self._predictor.flip, trainable=False, name="flip")
    self.step = tf.Variable(int(step), dtype=tf.int64, trainable=False, name="step")

  @tf.function(input_signature=[tf.TensorSpec(None, tf.uint8, name="images")])
  def serve(self, images):
    shape = tf.shape(images)
    ok = tf.cond(tf.equal(tf.size(shape), 4), lambda: tf.equal(shape[-1], 3),
                 lambda: tf.constant(False))
    check = tf.debugging.Assert(
        ok, ["images must be a uint8 tensor [N, H, W, 3] (RGB); got shape", shape])
    with tf.control_dependencies([check]):
      images = tf.ensure_shape(tf.identity(images), [None, None, None, 3])
    labels, probabilities = self._predictor(tf.cast(images, tf.float32))
    return {"labels": labels, "probabilities": probabilities}


def export_saved_model(model: keras.Model, export_dir: str, spec: data.DatasetSpec,
                       scales: Sequence[float] = (1.0,), flip: bool = False,
                       pad_to: Optional[Sequence[int]] = None, step: int = -1) -> str:
  """Writes the SavedModel to export_dir, replacing any previous one only once complete."""
  module = SegmentationModule(model, spec, scales, flip, pad_to, step)
  export_dir = os.path.abspath(export_dir)
  parent = os.path.dirname(export_dir)
  staging = files.make_temp_dir(parent, f".{os.path.basename(export_dir)}.tmp-")
  try:
    tf.saved_model.save(module, staging, signatures={SIGNATURE: module.serve})
    if os.path.exists(export_dir):
      if not os.path.isfile(os.path.join(export_dir, "saved_model.pb")):
        raise DpcError(f"export_dir {export_dir} exists and is not a SavedModel; "
                        f"refusing to replace it")
      shutil.rmtree(export_dir)
    os.replace(staging, export_dir)
  finally:
    if os.path.exists(staging):
      shutil.rmtree(staging, ignore_errors=True)
  return export_dir


def export_settings(train: TrainConfig, eval_config: EvalConfig,
                    config: ExportConfig) -> tuple[tuple[float, ...], bool, Optional[tuple]]:
  """(scales, flip, pad_to) with ExportConfig's None meaning "as evaluation"."""
  scales = tuple(config.scales) if config.scales is not None else eval_config.scales
  flip = eval_config.flip if config.flip is None else bool(config.flip)
  if config.pad_to is None:
    pad_to = inputs.eval_crop(train, eval_config)
  elif not config.pad_to:
    pad_to = None
  else:
    pad_to = tuple(int(v) for v in config.pad_to)
  return scales, flip, pad_to


def export_checkpoint(train: TrainConfig, eval_config: EvalConfig, config: ExportConfig,
                      model_dir: str, export_dir: str, checkpoint: Optional[str] = None,
                      cell=None, model_overrides: Optional[dict] = None) -> dict:
  """Exports model_dir's newest (or the given) checkpoint; returns what was exported."""
  if os.path.exists(export_dir) and not os.path.isdir(export_dir):
    raise DpcError(f"--export_dir={export_dir} is a file, not a folder")
  parent = os.path.dirname(os.path.abspath(export_dir))
  files.writable_dir(parent, "export_dir's parent folder")
  path = checkpointing.require_checkpoint(model_dir, checkpoint)
  model = evaluation.build_eval_model(train, cell, model_overrides)
  step = checkpointing.restore_for_inference(model, path)
  spec = inputs.get_spec(train.dataset)
  scales, flip, pad_to = export_settings(train, eval_config, config)
  export_saved_model(model, export_dir, spec, scales, flip, pad_to, step)
  return {"export_dir": os.path.abspath(export_dir), "checkpoint": path, "step": step,
          "scales": list(scales), "flip": flip, "pad_to": None if pad_to is None else
          list(pad_to), "dataset": spec.name}
