"""The `folder` dataset: your own images and masks in a folder, as a DatasetSpec.

Layout (docs/CUSTOM_DATA.md):

  ROOT/classes.txt                      one class per line: `name` or `name r g b`
  ROOT/images/<split>/**/*.{jpg,jpeg,png}
  ROOT/labels/<split>/**/*.png          paired with its image by relative path minus extension

Split names are the folder names under images/. Labels are class indices (grayscale or
palette PNGs; the palette's *indices* count) or, when classes.txt gives a colour per class,
RGB colour-coded PNGs. `ignore_label` (255 by default) in an index label, or `ignore_color`
in an RGB one, marks unlabelled pixels; inside the project every ignored pixel is 255.

The dataset is configured by one gin binding, `folder_dataset.root = '/data/mine'`, and is
named "folder" (or "folder:/data/mine", root given in the name) wherever a dataset name is
expected. Everything else comes from the folder: classes, palette, the number of examples,
default crops (from the largest image) and a version that changes with the folder's
content (file names, sizes and modification times), so that caches derived from an edited
folder are not reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from typing import Optional, Sequence

import gin

from dpc_tf.data.folder_files import image_size
from dpc_tf.data.specs import IGNORE_LABEL, DatasetSpec, pascal_palette
from dpc_tf.errors import DpcError
from dpc_tf.utils.sizes import size_pair

NAME = "folder"
# Bump when what the builder writes for the same folder changes (it is in every cache key).
FOLDER_VERSION = "1.0.0"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
LABEL_EXTENSIONS = (".png",)
MAX_CROP = 513  # DeepLab's crop: the default training crop never exceeds it
LAYOUT = ("ROOT/classes.txt (one class name per line, optionally `name r g b`), "
          "ROOT/images/<split>/**/*.{jpg,jpeg,png}, ROOT/labels/<split>/**/*.png")
# The split a config asks for and the folder names users give it.
SPLIT_ALIASES = {"validation": ("val", "valid"), "val": ("validation", "valid"),
                 "valid": ("val", "validation")}
_SPLIT_NAME = re.compile(r"^\w+$")


@dataclasses.dataclass(frozen=True)
class FolderSettings:
  """The folder and how to read it (gin: folder_dataset.*).

  root: the dataset folder (LAYOUT).
  ignore_label: the value of unlabelled pixels in index labels (mapped to 255 inside).
  ignore_color: (r, g, b) of unlabelled pixels in RGB-coded labels (white by default; a
    colour classes.txt gives a class stays that class); None: no such colour.
  train_crop, eval_crop: (h, w); None: from the data (eval: the largest image rounded up
    to 16k+1; train: that, capped at 513).
  train_scales: the random-scale set; None: DeepLab's 0.5..2.0.
  """
  root: str
  ignore_label: int = IGNORE_LABEL
  ignore_color: Optional[tuple[int, int, int]] = (255, 255, 255)
  train_crop: Optional[tuple[int, int]] = None
  eval_crop: Optional[tuple[int, int]] = None
  train_scales: Optional[tuple[float, ...]] = None


@gin.configurable("folder_dataset", module="dpc_tf.data")
def folder_dataset(root: Optional[str] = None, ignore_label: int = IGNORE_LABEL,
                   ignore_color: Optional[Sequence[int]] = (255, 255, 255), train_crop=None,
                   eval_crop=None,
                   train_scales: Optional[Sequence[float]] = None) -> FolderSettings:
  """The folder dataset's settings as the gin bindings give them (see FolderSettings)."""
  if not root:
    raise DpcError("dataset 'folder' needs its root folder: bind folder_dataset.root = "
                   "'/path/to/ROOT' (e.g. --gin_bindings=\"folder_dataset.root = '/data/x'\")")
  if not isinstance(ignore_label, int) or not 0 <= ignore_label < 65536:
    raise DpcError(f"folder_dataset.ignore_label must be an int in [0, 65535], got "
                   f"{ignore_label!r}")
  if ignore_color is not None:
    ignore_color = tuple(ignore_color)
    if len(ignore_color) != 3 or not all(isinstance(c, int) and 0 <= c < 256
                                         for c in ignore_color):
      raise DpcError(f"folder_dataset.ignore_color must be (r, g, b) in 0..255, got "
                     f"{ignore_color!r}")
  if train_scales is not None:
    train_scales = tuple(float(s) for s in train_scales)
    if not train_scales or min(train_scales) <= 0:
      raise DpcError(f"folder_dataset.train_scales must be positive, got {train_scales!r}")
  return FolderSettings(os.path.abspath(os.path.expanduser(str(root))), ignore_label,
                        ignore_color, size_pair(train_crop, "folder_dataset.train_crop"),
                        size_pair(eval_crop, "folder_dataset.eval_crop"), train_scales)


def is_folder_name(name: str) -> bool:
  return name == NAME or name.startswith(NAME + ":")


def settings_for(name: str) -> FolderSettings:
  """"folder" -> the gin-bound settings; "folder:PATH" -> the same with root PATH."""
  if name == NAME:
    return folder_dataset()
  return folder_dataset(root=name[len(NAME) + 1:])


# --- classes.txt ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ClassTable:
  names: tuple[str, ...]
  colours: Optional[tuple[tuple[int, int, int], ...]]  # None: no colour column


def read_classes(root: str) -> ClassTable:
  """classes.txt as a ClassTable; DpcError naming the file and line on any mistake.

  A line is `name` or `name r g b` (the name may hold spaces); `#` starts a comment line;
  trailing blank lines are dropped, a blank line between classes is an error (it would
  shift every later class index).
  """
  path = os.path.join(root, "classes.txt")
  if not os.path.isfile(path):
    raise DpcError(f"{path}: missing; expected one class name per line (line order = class "
                   f"index), optionally followed by r g b")
  with open(path, encoding="utf-8") as f:
    lines = [l.rstrip("\n").strip() for l in f]
  while lines and not lines[-1]:
    lines.pop()
  names, colours = [], []
  for number, line in enumerate(lines, 1):
    if line.startswith("#"):
      continue
    if not line:
      raise DpcError(f"{path} line {number}: empty line between classes (line order is "
                     f"the class index; remove it)")
    parts = line.split()
    tail = parts[-3:]
    if len(parts) >= 4 and all(re.fullmatch(r"\d+", p) for p in tail):
      rgb = tuple(int(p) for p in tail)
      if max(rgb) > 255:
        raise DpcError(f"{path} line {number}: colour {rgb} is not r g b in 0..255")
      names.append(" ".join(parts[:-3]))
      colours.append(rgb)
    else:
      names.append(" ".join(parts))
      colours.append(None)
  if not names:
    raise DpcError(f"{path}: no classes; expected one class name per line")
  given = [c is not None for c in colours]
  if any(given) and not all(given):
    missing = names[given.index(False)]
    raise DpcError(f"{path}: some classes have a colour and some do not (e.g. {missing!r}); "
                   f"give `name r g b` on every line or on none")
  if len(names) > 255:
    raise DpcError(f"{path}: {len(names)} classes; at most 255 are supported (label 255 is "
                   f"the ignore label inside)")
  if len(set(names)) != len(names):
    duplicate = next(n for n in names if names.count(n) > 1)
    raise DpcError(f"{path}: class name {duplicate!r} appears twice")
  if all(given):
    seen = {}
    for name, colour in zip(names, colours):
      if colour in seen:
        raise DpcError(f"{path}: classes {seen[colour]!r} and {name!r} share colour {colour}")
      seen[colour] = name
  return ClassTable(tuple(names), tuple(colours) if all(given) else None)


# --- the file listing ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Pair:
  key: str      # relative path without extension, "/"-separated: the example's id
  image: str
  label: str


@dataclasses.dataclass
class Listing:
  """Every file under images/ and labels/, paired; what cannot be paired is kept to report."""
  root: str
  splits: dict[str, list[Pair]]
  unpaired_images: list[str]
  unpaired_labels: list[str]
  stray: list[tuple[str, str]]   # (path, why it is not used)
  fingerprint: str               # hash of classes.txt and every file's name, size, mtime


def _walk(top: str) -> list[str]:
  """Files under top (relative, '/'-separated, sorted); hidden files and folders skipped."""
  found = []
  for folder, dirs, files in os.walk(top, followlinks=True):
    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    rel = os.path.relpath(folder, top)
    for name in files:
      if not name.startswith("."):
        found.append(name if rel == "." else f"{rel}/{name}".replace(os.sep, "/"))
  return sorted(found)


def list_folder(root: str) -> Listing:
  """Pairs images and labels per split by relative path minus extension."""
  if not os.path.isdir(root):
    raise DpcError(f"dataset folder {root} does not exist; expected layout: {LAYOUT}")
  images_dir, labels_dir = os.path.join(root, "images"), os.path.join(root, "labels")
  for folder in (images_dir, labels_dir):
    if not os.path.isdir(folder):
      raise DpcError(f"dataset folder {root} has no {os.path.basename(folder)}/ folder; "
                     f"expected layout: {LAYOUT}")
  digest = hashlib.sha256(FOLDER_VERSION.encode())
  classes = os.path.join(root, "classes.txt")
  if os.path.isfile(classes):
    with open(classes, "rb") as f:
      digest.update(f.read())
  split_names = sorted(set(_children(images_dir)) | set(_children(labels_dir)))
  splits, unpaired_images, unpaired_labels, stray = {}, [], [], []
  for top in (images_dir, labels_dir):
    for name in os.listdir(top):
      if not name.startswith(".") and os.path.isfile(os.path.join(top, name)):
        stray.append((os.path.join(top, name), "not inside a split folder (e.g. "
                      f"{os.path.basename(top)}/train/)"))
  for split in split_names:
    images = _by_key(os.path.join(images_dir, split), IMAGE_EXTENSIONS, stray, digest)
    labels = _by_key(os.path.join(labels_dir, split), LABEL_EXTENSIONS, stray, digest)
    pairs = [Pair(key, images[key], labels[key]) for key in sorted(images) if key in labels]
    unpaired_images += [images[k] for k in sorted(images) if k not in labels]
    unpaired_labels += [labels[k] for k in sorted(labels) if k not in images]
    splits[split] = pairs
  return Listing(root, splits, unpaired_images, unpaired_labels, stray, digest.hexdigest())


def _children(folder: str) -> list[str]:
  return [d for d in os.listdir(folder)
          if not d.startswith(".") and os.path.isdir(os.path.join(folder, d))]


def _by_key(folder: str, extensions: tuple[str, ...], stray: list, digest) -> dict[str, str]:
  files = {}
  if not os.path.isdir(folder):
    return files
  for rel in _walk(folder):
    path = os.path.join(folder, rel)
    stem, ext = os.path.splitext(rel)
    if ext.lower() not in extensions:
      kind = "a label must be a PNG" if extensions == LABEL_EXTENSIONS else \
          "not a .jpg, .jpeg or .png image"
      stray.append((path, kind))
      continue
    if stem in files:
      stray.append((path, f"has the same name as {files[stem]} (pairs go by name without "
                    f"extension)"))
      continue
    files[stem] = path
    stat = os.stat(path)
    where = os.path.relpath(path, os.path.dirname(os.path.dirname(folder)))
    digest.update(f"{where}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
  return files


def resolve_split(listing: Listing, split: str) -> str:
  """A requested split (optionally sliced) as this folder names it: 'validation[:8]' ->
  'val[:8]' when the folder has val/ but no validation/."""
  match = re.match(r"^(\w+)(.*)$", split)
  if not match:
    raise DpcError(f"split {split!r}: expected a split folder name, optionally sliced "
                   f"('train[:100]')")
  base, rest = match.groups()
  if base not in listing.splits:
    alias = next((a for a in SPLIT_ALIASES.get(base, ()) if a in listing.splits), None)
    if alias is None:
      raise DpcError(f"dataset folder {listing.root} has no split {base!r} (its splits: "
                     f"{', '.join(listing.splits) or 'none'}; a split is a folder "
                     f"images/<split>/)")
    base = alias
  return base + rest


# --- the spec --------------------------------------------------------------------------------

_SIZES: dict[str, tuple[int, int]] = {}   # fingerprint -> largest (h, w)


def _largest_image(listing: Listing) -> tuple[int, int]:
  if listing.fingerprint not in _SIZES:
    height = width = 1
    for pairs in listing.splits.values():
      for pair in pairs:
        try:
          h, w = image_size(pair.image)
        except (OSError, ValueError, SyntaxError):
          continue  # reported by the checks
        height, width = max(height, h), max(width, w)
    _SIZES[listing.fingerprint] = (height, width)
  return _SIZES[listing.fingerprint]


def _round_up(size: int) -> int:
  """The smallest 16k + 1 >= size (DeepLab's crop sizes: 513, 769, 1025)."""
  return 16 * max(1, -(-(size - 1) // 16)) + 1


def settings_digest(settings: FolderSettings) -> str:
  """What changes the written examples besides the files (part of the version)."""
  return f"{settings.ignore_label}/{settings.ignore_color}"


def folder_spec(name: str) -> DatasetSpec:
  """The DatasetSpec of a folder dataset ("folder" or "folder:PATH")."""
  settings = settings_for(name)
  table = read_classes(settings.root)
  listing = list_folder(settings.root)
  if not any(listing.splits.values()):
    raise DpcError(f"dataset folder {settings.root} holds no image/label pair; expected "
                   f"layout: {LAYOUT}")
  largest = _largest_image(listing)
  eval_crop = settings.eval_crop or (_round_up(largest[0]), _round_up(largest[1]))
  train_crop = settings.train_crop or (min(eval_crop[0], MAX_CROP),
                                       min(eval_crop[1], MAX_CROP))
  version_hash = hashlib.sha256(
      f"{listing.fingerprint}/{settings_digest(settings)}".encode()).hexdigest()[:16]
  palette = table.colours or pascal_palette(len(table.names))
  extra = {} if settings.train_scales is None else {"train_scales": settings.train_scales}
  return DatasetSpec(
      name=name, num_classes=len(table.names), ignore_label=IGNORE_LABEL,
      class_names=table.names, palette=tuple(palette), train_crop=train_crop,
      eval_crop=eval_crop,
      tfds_name=f"folder_dataset/{builder_config_name(settings.root, version_hash)}",
      num_examples={split: len(pairs) for split, pairs in listing.splits.items()},
      version=f"{FOLDER_VERSION}+{version_hash}", **extra)


def builder_config_name(root: str, version_hash: str) -> str:
  slug = re.sub(r"[^a-z0-9_]", "_", os.path.basename(os.path.normpath(root)).lower())[:32]
  return f"{slug or 'root'}_{version_hash}"


def valid_split_name(split: str) -> bool:
  return bool(_SPLIT_NAME.match(split))
