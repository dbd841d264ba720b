"""Converts a released TF1 DeepLab checkpoint into a converted-weights folder.

All-or-nothing: every weight the requested model needs must be in the checkpoint with the
same shape, or ConversionError names the variable(s) and nothing is written. The folder is
written under a temporary name next to the destination, verified by loading it into the
model, then renamed into place.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
from typing import Optional

import numpy as np
import tensorflow as tf

from dpc_tf.backbones.registry import get_backbone
from dpc_tf.checkpoints import converted
from dpc_tf.checkpoints.tf1_names import tf1_mapping, weight_keys
from dpc_tf.errors import DpcError, one_line
from dpc_tf.utils import files
from dpc_tf.utils.files import write_json_atomic

_SLOT = re.compile(r"/(Momentum|Adam|Adam_1|RMSProp|RMSProp_1|Adagrad|Ftrl|Ftrl_1)$")
_OPTIMIZER_GLOBALS = {"beta1_power", "beta2_power", "learning_rate"}


class ConversionError(DpcError):
  """The checkpoint does not fit the requested model; one line naming the variables."""


def skip_reason(name: str) -> Optional[str]:
  """Why a checkpoint variable is deliberately not converted, or None."""
  if name == "global_step":
    return "training step counter"
  if _SLOT.search(name) or name in _OPTIMIZER_GLOBALS:
    return "optimizer state"
  if name.endswith("/ExponentialMovingAverage"):
    return "moving-average shadow variable"
  if re.match(r"^xception_\d+/logits/", name) or name.startswith("MobilenetV2/Logits/"):
    return "ImageNet classifier"
  if name.startswith("MobilenetV2/Conv_1/"):
    return "MobileNet-v2's 1280-channel conv (DeepLab stops at the 320-channel layer)"
  return None


@dataclasses.dataclass
class ConversionReport:
  output_dir: str
  converted: int
  skipped: dict
  unused: list
  parts: list


def _names(names, limit: int = 5) -> str:
  names = sorted(names)
  return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def _read_checkpoint(checkpoint: str):
  try:
    reader = tf.train.load_checkpoint(checkpoint)
  except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError) as e:
    raise ConversionError(f"cannot read checkpoint {checkpoint}: {one_line(e)}") from None
  return reader, reader.get_variable_to_shape_map()


def _check_destination(output_dir: str, overwrite: bool) -> None:
  if os.path.exists(output_dir) and not os.path.isdir(output_dir):
    raise ConversionError(f"--output_dir {output_dir} exists and is not a folder")
  if os.path.isdir(output_dir) and os.listdir(output_dir) and not overwrite:
    raise ConversionError(f"--output_dir {output_dir} exists and is not empty; pass "
                          f"--overwrite to replace it")


def _move_into_place(tmp: str, output_dir: str) -> None:
  """Renames the finished temporary folder onto output_dir (an empty folder is replaced by
  the rename itself; a full one is moved aside first and removed afterwards)."""
  backup = None
  if os.path.isdir(output_dir) and os.listdir(output_dir):
    backup = tempfile.mkdtemp(dir=os.path.dirname(output_dir),
                              prefix=f".{os.path.basename(output_dir)}.old-")
    os.rmdir(backup)
    os.rename(output_dir, backup)
  try:
    os.replace(tmp, output_dir)
  except OSError:
    if backup:
      os.rename(backup, output_dir)
    raise
  if backup:
    shutil.rmtree(backup, ignore_errors=True)


def convert_checkpoint(checkpoint: str, output_dir: str, num_classes: int,
                       backbone: str = "xception_71", head: str = "dpc", cell=None,
                       decoder_output_stride: Optional[int] = 4, depth_multiplier: float = 1.0,
                       backbone_only: bool = False, skip_logits: bool = False,
                       overwrite: bool = False) -> ConversionReport:
  """Converts `checkpoint` (a TF1 prefix) for build_deeplab(num_classes, backbone, head, cell,
  decoder_output_stride=..., depth_multiplier=...). backbone_only: take only the backbone
  (an ImageNet checkpoint); the heads stay fresh. skip_logits: everything but the logits."""
  from dpc_tf import models  # pylint: disable=import-outside-toplevel  (heavy: keras)
  output_dir = os.path.abspath(output_dir)
  _check_destination(output_dir, overwrite)
  reader, shapes = _read_checkpoint(checkpoint)
  cell_obj = models.resolve_cell(cell) if head == "dpc" else None
  build_args = dict(num_classes=num_classes, backbone=backbone, head=head,
                    cell=cell_obj.to_json() if cell_obj else None,
                    decoder_output_stride=decoder_output_stride,
                    depth_multiplier=depth_multiplier)
  model = models.build_deeplab(**{**build_args, "cell": cell_obj})
  parts = [l.name for l in model.layers if l.name in ("backbone", "head", "decoder", "logits")]
  if backbone_only:
    parts = ["backbone"]
  elif skip_logits:
    parts = [p for p in parts if p != "logits"]
  mapping = tf1_mapping(model, backbone, parts)
  keys = weight_keys(model)

  missing = [name for name in mapping.values() if name not in shapes]
  if missing:
    scopes = sorted({n.split("/")[0] for n in shapes
                     if n.startswith(("xception_", "MobilenetV2/"))})
    hint = (f" (its backbone scope is {', '.join(scopes)})"
            if scopes and get_backbone(backbone).tf1_scope not in scopes else "")
    raise ConversionError(f"checkpoint {checkpoint} lacks {len(missing)} variable(s) the "
                          f"{backbone}/{head} model needs: {_names(missing)}{hint}")
  mismatched = [f"{name} {shapes[name]} vs model {list(keys[key].shape)}"
                for key, name in mapping.items() if list(shapes[name]) != list(keys[key].shape)]
  if mismatched:
    raise ConversionError(f"shape mismatch in {len(mismatched)} variable(s): "
                          f"{'; '.join(sorted(mismatched)[:5])}")

  used = set(mapping.values())
  skipped = {n: skip_reason(n) for n in sorted(shapes) if n not in used and skip_reason(n)}
  if skip_logits:
    skipped.update({n: "--skip_logits" for n in shapes if n.startswith("logits/")})
  unused = sorted(n for n in shapes if n not in used and n not in skipped)
  arrays = {key: np.asarray(reader.get_tensor(name), np.float32) for key, name in mapping.items()}

  parent = os.path.dirname(output_dir)
  tmp = files.make_temp_dir(parent, f".{os.path.basename(output_dir)}.tmp-")
  try:
    converted.write_weights(os.path.join(tmp, converted.WEIGHTS_FILE), arrays, mapping)
    write_json_atomic(os.path.join(tmp, converted.CONFIG_FILE), {
        "format": converted.FORMAT, "version": converted.VERSION, "build_args": build_args,
        "parts": parts, "source": {"checkpoint": os.path.abspath(checkpoint),
                                   "backbone_only": backbone_only, "skip_logits": skip_logits}})
    write_json_atomic(os.path.join(tmp, converted.MAPPING_FILE),
                      {"weights": mapping, "skipped": skipped, "unused": unused})
    converted.load_converted_weights(model, tmp)  # proves the folder loads before it exists
    _move_into_place(tmp, output_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return ConversionReport(output_dir, len(mapping), skipped, unused, parts)
