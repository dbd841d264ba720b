"""Reading manually downloaded datasets: layout checks, palette PNGs, SBD .mat files.

Shared by the VOC 2012 + SBD and PASCAL-Person-Part builders. Every failure names the file
or folder that is missing or malformed and the layout that was expected, in one line, so
that a user with a half-extracted archive knows what to fix without reading the code.
"""

from __future__ import annotations

import io
from typing import Optional

import numpy as np
from etils import epath

from dpc_tf.data.specs import IGNORE_LABEL
from dpc_tf.errors import DpcError


class ManualDirError(DpcError):
  """A manual_dir lacks a file or folder, or holds one in an unexpected format."""


def manual_root(dl_manager, dataset: str, layout: str) -> epath.Path:
  """The builder's manual_dir, or a ManualDirError that names it and the expected layout."""
  try:
    return epath.Path(dl_manager.manual_dir)
  except (AssertionError, ValueError) as e:
    # tfds raises AssertionError when the folder is missing or empty; say what belongs there.
    where = getattr(dl_manager, "_manual_dir", None)
    raise ManualDirError(f"{dataset}: manual_dir {where} does not exist or is empty; "
                         f"expected layout: {layout}") from e


def require(path: epath.Path, dataset: str, layout: str, directory: bool = False) -> epath.Path:
  """Returns path if it exists (as a folder when directory=True), else raises ManualDirError."""
  ok = path.is_dir() if directory else path.exists()
  if not ok:
    kind = "folder" if directory else "file"
    raise ManualDirError(f"{dataset}: missing {kind} {path}; expected layout: {layout}")
  return path


def read_id_list(path: epath.Path, dataset: str, layout: str) -> list[str]:
  """Image ids, one per line (VOC ImageSets / SBD train.txt format); blank lines skipped."""
  require(path, dataset, layout)
  ids = [line.strip().split()[0] for line in path.read_text().splitlines() if line.strip()]
  if not ids:
    raise ManualDirError(f"{dataset}: id list {path} is empty; expected one image id per line")
  return ids


def _pil():
  try:
    from PIL import Image  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError("reading PASCAL palette PNGs needs Pillow (tf.io.decode_png turns "
                      "palette indices into colours): pip install pillow") from e
  return Image


def read_index_png(path: epath.Path) -> np.ndarray:
  """A label PNG as class indices uint8 [H, W, 1].

  PASCAL masks are palette ('P') PNGs whose *indices* are the class ids; decoders that apply
  the palette (tf.io.decode_png) return colours instead, so Pillow reads them. Grayscale
  ('L') PNGs, as in SegmentationClassAug, hold the ids directly.
  """
  if not path.exists():
    raise ManualDirError(f"missing label file {path}")
  image = _pil().open(io.BytesIO(path.read_bytes()))
  if image.mode not in ("P", "L"):
    raise ValueError(f"label {path} is a {image.mode!r} PNG; expected a palette ('P') or "
                     f"grayscale ('L') PNG holding class ids, not colours")
  return np.asarray(image, dtype=np.uint8)[..., None]


def image_size(path: epath.Path) -> tuple[int, int]:
  """(height, width) of an image from its header only."""
  if not path.exists():
    raise ManualDirError(f"missing image file {path}")
  with _pil().open(io.BytesIO(path.read_bytes())) as image:
    width, height = image.size
  return height, width


def read_sbd_mat(path: epath.Path) -> np.ndarray:
  """An SBD class annotation (cls/<id>.mat, struct GTcls with field Segmentation) as uint8
  [H, W, 1]. scipy is needed for this builder only, hence the lazy import."""
  try:
    from scipy import io as sio  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError("reading SBD .mat annotations needs scipy: pip install scipy "
                      "(or use VOCdevkit/VOC2012/SegmentationClassAug PNGs instead)") from e
  if not path.exists():
    raise ManualDirError(f"missing SBD annotation {path}")
  try:
    mat = sio.loadmat(io.BytesIO(path.read_bytes()), squeeze_me=True, struct_as_record=False)
    segmentation = mat["GTcls"].Segmentation
  except (KeyError, AttributeError, ValueError) as e:
    raise ValueError(f"SBD annotation {path} has no GTcls.Segmentation array "
                     f"(expected the cls/*.mat format of benchmark_RELEASE)") from e
  segmentation = np.asarray(segmentation)
  if segmentation.ndim != 2:
    raise ValueError(f"SBD annotation {path}: GTcls.Segmentation has shape "
                     f"{segmentation.shape}, expected [H, W]")
  return segmentation.astype(np.uint8)[..., None]


def check_mask(mask: np.ndarray, num_classes: int, path: epath.Path,
               image_path: Optional[epath.Path] = None) -> np.ndarray:
  """Raises if a mask holds a value that is neither a class id nor the ignore label, or if
  its size differs from its image's: both mean the annotation is not what we think it is."""
  values = np.unique(mask)
  bad = values[(values >= num_classes) & (values != IGNORE_LABEL)]
  if bad.size:
    raise ValueError(f"label {path} holds values {bad.tolist()}; expected class ids "
                     f"0..{num_classes - 1} or {IGNORE_LABEL}")
  if image_path is not None:
    size = image_size(image_path)
    if size != mask.shape[:2]:
      raise ValueError(f"label {path} is {mask.shape[0]}x{mask.shape[1]} but its image "
                       f"{image_path} is {size[0]}x{size[1]}")
  return mask
