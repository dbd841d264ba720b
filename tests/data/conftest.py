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
