"""Reading one file of a folder dataset: image sizes, label PNGs as class ids, image bytes.

Labels are read with Pillow: palette PNGs hold class ids as palette *indices* (decoders that
apply the palette, like tf.io.decode_png, would return colours). A label that cannot be used
comes back with a (kind, message) naming the file; dpc_tf.data.folder_check collects them.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, TYPE_CHECKING

import numpy as np

from dpc_tf.data.specs import IGNORE_LABEL
from dpc_tf.errors import DpcError

if TYPE_CHECKING:
  from dpc_tf.data.folder import ClassTable, FolderSettings


def pil():
  try:
    from PIL import Image  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise DpcError("the folder dataset needs Pillow to read labels: pip install pillow") from e
  return Image


def image_size(path: str) -> tuple[int, int]:
  """(height, width) from the header only; OSError if the file is not a readable image."""
  with pil().open(path) as image:
    width, height = image.size
  return height, width


@dataclasses.dataclass
class LabelResult:
  ids: Optional[np.ndarray]   # uint8 [H, W]: class ids, 255 = ignored (or out of range)
  problem: Optional[tuple[str, str]] = None  # (kind, message) when the label is unusable
  counts: Optional[np.ndarray] = None  # pixels per class id, [num_classes]
  ignored: int = 0


def read_label(path: str, table: ClassTable, settings: FolderSettings) -> LabelResult:
  """A label PNG as class ids, or the reason it cannot be used (kinds as in folder_check)."""
  k = len(table.names)
  try:
    with pil().open(path) as image:
      image.load()
      mode = image.mode
      if mode in ("RGB", "RGBA"):
        raw = np.asarray(image.convert("RGB"))
      elif mode in ("P", "L", "I;16", "I;16B", "I;16L", "I"):
        raw = np.asarray(image)
      elif mode in ("LA", "PA"):   # the alpha channel carries no class
        raw = np.asarray(image.getchannel(0))
      elif mode == "1":            # two-class masks: 0 and 1, not 0 and 255
        raw = np.asarray(image).astype(np.uint8)
      else:
        return LabelResult(None, ("unreadable", f"label {path} is a {mode!r} image; expected "
                                  f"class indices (grey or palette PNG) or RGB colours"))
  except (OSError, ValueError, SyntaxError) as e:
    return LabelResult(None, ("unreadable", f"label {path} cannot be read: "
                              f"{' '.join(str(e).split())}"))
  if raw.ndim == 3:
    if table.colours is None:
      if (raw[..., 0] == raw[..., 1]).all() and (raw[..., 1] == raw[..., 2]).all():
        raw = raw[..., 0]   # grey ids saved as RGB: the same values in every channel
      else:
        return LabelResult(None, ("rgb_without_colours", f"label {path} is an RGB image but "
                                  f"classes.txt gives no colours (add `r g b` after each "
                                  f"class name, or save labels as class indices)"))
    else:
      return _colour_label(path, raw, table, settings)
  values = raw.astype(np.int64)
  ignored = values == settings.ignore_label
  valid = (values < k) & ~ignored
  ids = np.where(valid, values, IGNORE_LABEL).astype(np.uint8)
  bad = np.unique(values[~valid & ~ignored])
  counts = np.bincount(ids[valid].ravel(), minlength=k)[:k]
  if bad.size:
    shown = ", ".join(str(v) for v in bad[:8]) + (", ..." if bad.size > 8 else "")
    return LabelResult(ids, ("label_values", f"label {path} holds values {shown} outside "
                             f"[0, {k}) (classes.txt has {k} classes; ignore value "
                             f"{settings.ignore_label})"), counts, int(ignored.sum()))
  return LabelResult(ids, None, counts, int(ignored.sum()))


def _colour_label(path: str, raw: np.ndarray, table: ClassTable,
                  settings: FolderSettings) -> LabelResult:
  k = len(table.names)
  codes = (raw[..., 0].astype(np.int64) << 16) | (raw[..., 1].astype(np.int64) << 8) | raw[..., 2]
  table_codes = np.array([(r << 16) | (g << 8) | b for r, g, b in table.colours], np.int64)
  order = np.argsort(table_codes)
  sorted_codes = table_codes[order]
  where = np.clip(np.searchsorted(sorted_codes, codes), 0, k - 1)
  known = sorted_codes[where] == codes
  ignored = np.zeros(codes.shape, bool)
  if settings.ignore_color is not None:
    r, g, b = settings.ignore_color
    ignored = (codes == ((r << 16) | (g << 8) | b)) & ~known  # a class colour stays a class
  valid = known & ~ignored
  ids = np.where(valid, order[where], IGNORE_LABEL).astype(np.uint8)
  counts = np.bincount(ids[valid].ravel(), minlength=k)[:k]
  unknown = np.unique(codes[~known & ~ignored])
  if unknown.size:
    shown = ", ".join(f"({c >> 16},{(c >> 8) & 255},{c & 255})" for c in unknown[:5])
    more = f" and {unknown.size - 5} more" if unknown.size > 5 else ""
    return LabelResult(ids, ("unknown_colours", f"label {path} has colours {shown}{more} that "
                             f"are not in classes.txt (nor folder_dataset.ignore_color)"),
                       counts, int(ignored.sum()))
  return LabelResult(ids, None, counts, int(ignored.sum()))


def image_bytes_or_array(path: str):
  """What the tfds image feature stores: the file's own bytes for JPEG/PNG in L or RGB
  (no re-encoding, no quality loss), else an RGB array (palette, alpha, CMYK, 16-bit)."""
  with pil().open(path) as image:
    if image.format in ("JPEG", "PNG") and image.mode in ("L", "RGB"):
      with open(path, "rb") as f:
        return f.read()
    return np.asarray(image.convert("RGB"))


def decode_image(path: str) -> tuple[int, int]:
  """Decodes the whole image (truncated files fail here, not in the header); (h, w)."""
  with pil().open(path) as image:
    image.load()
    width, height = image.size
  return height, width
