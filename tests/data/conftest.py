"""Dummy manual_dirs for the PASCAL builders, written into pytest's tmp dirs.

Each image gets a unique height so that a test can match what tfds yields (in its own
order) to what was written. Masks are palette ('P') PNGs like the released annotations and
SBD masks are .mat files with the GTcls.Segmentation struct layout.
"""

from __future__ import annotations

import os
import types

import numpy as np
import pytest
from PIL import Image
from scipy import io as sio

from dpc_tf.data.specs import pascal_palette


def write_jpeg(path: str, height: int, width: int, seed: int) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  rng = np.random.default_rng(seed)
  Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path, "JPEG")


def write_palette_png(path: str, mask: np.ndarray) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image = Image.fromarray(mask.astype(np.uint8), mode="P")
  palette = [c for colour in pascal_palette(256) for c in colour]
  image.putpalette(palette)
  image.save(path, "PNG")


def write_sbd_mat(path: str, mask: np.ndarray) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  present = np.unique(mask[mask < 255]).astype(np.uint8)
  sio.savemat(path, {"GTcls": {"Segmentation": mask.astype(np.uint8),
                               "Boundaries": np.zeros((1, 1), dtype=object),
                               "CategoriesPresent": present}})


def write_ids(path: str, ids) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write("\n".join(ids) + "\n")


def mask_for(index: int, height: int, width: int, num_classes: int) -> np.ndarray:
  """A mask that identifies its example: class (index % K) on the left half, a 255 band."""
  mask = np.zeros((height, width), np.uint8)
  mask[:, : width // 2] = index % num_classes
  mask[:, width // 2] = 255
  mask[:, width // 2 + 1:] = (index + 1) % num_classes
  return mask


# VOC ids: VOC train a, b; VOC val c; SBD train b, c, d; SBD val e.
# train_aug = {a, b, d, e}: c is VOC val; b keeps VOC's own mask.
VOC_IDS = {"2007_000001": 0, "2007_000002": 1, "2007_000003": 2, "2008_000004": 3,
           "2008_000005": 4}


def voc_height(image_id: str) -> int:
  return 20 + 4 * VOC_IDS[image_id]


@pytest.fixture
def writers():
  """The file writers, for tests that break a layout on purpose."""
  return types.SimpleNamespace(jpeg=write_jpeg, palette_png=write_palette_png,
                               sbd_mat=write_sbd_mat, ids=write_ids)


@pytest.fixture
def voc_manual_dir(tmp_path):
  """VOCdevkit + SBD layout: namespace(root, train={height: mask}, validation={...})."""
  root = str(tmp_path / "manual")
  expected = {"train": {}, "validation": {}}
  voc = os.path.join(root, "VOCdevkit", "VOC2012")
  sbd = os.path.join(root, "benchmark_RELEASE", "dataset")
  a, b, c, d, e = VOC_IDS
  for image_id, index in VOC_IDS.items():
    h = voc_height(image_id)
    write_jpeg(os.path.join(voc, "JPEGImages", f"{image_id}.jpg"), h, 24, index)
    if image_id in (a, b, c):
      mask = mask_for(index, h, 24, 21)
      write_palette_png(os.path.join(voc, "SegmentationClass", f"{image_id}.png"), mask)
      expected["validation" if image_id == c else "train"][h] = mask
    if image_id in (b, c, d, e):
      # SBD has no ignore band; b's SBD mask differs from its VOC mask on purpose.
      mask = np.full((h, 24), 10 + index, np.uint8)
      mask[: h // 3, :5] = index
      write_sbd_mat(os.path.join(sbd, "cls", f"{image_id}.mat"), mask)
      if image_id in (d, e):
        expected["train"][h] = mask
  write_ids(os.path.join(voc, "ImageSets", "Segmentation", "train.txt"), [a, b])
  write_ids(os.path.join(voc, "ImageSets", "Segmentation", "val.txt"), [c])
  write_ids(os.path.join(sbd, "train.txt"), [b, c, d])
  write_ids(os.path.join(sbd, "val.txt"), [e])
  return types.SimpleNamespace(root=root, voc=voc, sbd=sbd, **expected)


PERSON_IDS = {"2008_000010": 0, "2008_000011": 1, "2008_000012": 2}


@pytest.fixture
def person_part_manual_dir(tmp_path):
  """namespace(root, train={height: mask}, validation={height: mask})."""
  root = str(tmp_path / "person_manual")
  expected = {"train": {}, "validation": {}}
  for image_id, index in PERSON_IDS.items():
    h = 30 + 5 * index
    mask = mask_for(index + 4, h, 20, 7)
    write_jpeg(os.path.join(root, "JPEGImages", f"{image_id}.jpg"), h, 20, index)
    write_palette_png(os.path.join(root, "SegmentationPart", f"{image_id}.png"), mask)
    expected["validation" if index == 2 else "train"][h] = mask
  write_ids(os.path.join(root, "ImageSets", "train.txt"), ["2008_000010", "2008_000011"])
  write_ids(os.path.join(root, "ImageSets", "val.txt"), ["2008_000012"])
  return types.SimpleNamespace(root=root, **expected)


# --- folder datasets (dpc_tf.data.folder) ----------------------------------------------------

FOLDER_CLASSES = ("background", "cat", "dog")
FOLDER_COLOURS = ((0, 0, 0), (200, 40, 40), (40, 40, 200))


def folder_mask(height: int, width: int, num_classes: int, ignore: int = 255) -> np.ndarray:
  """Vertical bands of every class left to right, and an ignored top row."""
  mask = (np.arange(width)[None, :] * num_classes // width).repeat(height, 0).astype(np.int64)
  mask[0, :] = ignore
  return mask


def write_folder(root, splits=None, kind: str = "index", classes=FOLDER_CLASSES,
                 colours=None, nested: bool = False, image_ext: str = ".png",
                 ignore: int = 255) -> str:
  """A folder dataset: splits = {split: [(h, w), ...]}; kind = index (grey PNG), palette,
  rgb (colour-coded; classes.txt gets colours) or grey_rgb (ids in all three channels)."""
  root = str(root)
  splits = splits or {"train": [(33, 33), (40, 48), (33, 65)], "val": [(33, 33), (48, 40)]}
  if kind == "rgb" and colours is None:
    colours = FOLDER_COLOURS
  os.makedirs(root, exist_ok=True)
  with open(os.path.join(root, "classes.txt"), "w") as f:
    for index, name in enumerate(classes):
      f.write(name + ("" if colours is None else " %d %d %d" % colours[index]) + "\n")
  for split, sizes in splits.items():
    for index, (h, w) in enumerate(sizes):
      rel = f"{'sub%d/' % (index % 2) if nested else ''}img_{index:03d}"
      image_path = os.path.join(root, "images", split, rel + image_ext)
      os.makedirs(os.path.dirname(image_path), exist_ok=True)
      rng = np.random.default_rng(index + 100 * len(split))
      Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(image_path)
      write_folder_label(os.path.join(root, "labels", split, rel + ".png"),
                         folder_mask(h, w, len(classes), ignore), kind, colours)
  return root


def write_folder_label(path: str, mask: np.ndarray, kind: str = "index", colours=None) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  if kind == "palette":
    write_palette_png(path, mask)
  elif kind == "rgb":
    table = np.zeros((256, 3), np.uint8)
    table[: len(colours)] = colours
    table[255] = (255, 255, 255)
    Image.fromarray(table[mask]).save(path)
  elif kind == "grey_rgb":
    Image.fromarray(np.repeat(mask.astype(np.uint8)[..., None], 3, -1)).save(path)
  elif kind == "index16":
    Image.fromarray(mask.astype(np.uint16)).save(path)
  else:
    Image.fromarray(mask.astype(np.uint8), mode="L").save(path)


@pytest.fixture
def folder_writer():
  """Writers of folder datasets: namespace(write=write_folder, label=write_folder_label,
  mask=folder_mask, classes=FOLDER_CLASSES, colours=FOLDER_COLOURS)."""
  return types.SimpleNamespace(write=write_folder, label=write_folder_label, mask=folder_mask,
                               classes=FOLDER_CLASSES, colours=FOLDER_COLOURS)
