"""What the rest of the project needs to know about a dataset, without reading any of it.

A `DatasetSpec` carries the number of classes, the ignore label, names, colours, DeepLab's
default crops and the tfds builder that holds the data. Models, losses, metrics and the
search read it from here so that no module hard-codes "19" or "513".
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

IGNORE_LABEL = 255
# DeepLab's training scale augmentation: 0.5, 0.75, ..., 2.0 (REFERENCE.md section 5).
DEEPLAB_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """Static facts about one dataset.

  Attributes:
    name: the name `get_spec` knows it by (e.g. "cityscapes", "dpc_synthetic/tiny").
    num_classes: classes scored by mIOU (the ignore label is not one of them).
    ignore_label: label value that carries no loss and no score (255 everywhere here).
    class_names: one name per class id.
    palette: one (r, g, b) uint8 colour per class id, for visualising masks.
    train_crop: (h, w) of DeepLab's random training crop.
    eval_crop: (h, w) every evaluation image is padded to (bottom/right).
    tfds_name: the tfds builder (and config) that yields the data.
    train_scales: the random-scale set of the training preprocessing.
    num_examples: split -> number of examples with the full data (for steps per epoch).
  """
  name: str
  num_classes: int
  ignore_label: int
  class_names: tuple[str, ...]
  palette: tuple[tuple[int, int, int], ...]
  train_crop: tuple[int, int]
  eval_crop: tuple[int, int]
  tfds_name: str
  train_scales: tuple[float, ...] = DEEPLAB_SCALES
  num_examples: Mapping[str, int] = dataclasses.field(default_factory=dict)
  # Bumped whenever the examples change; keys of caches derived from the data include it.
  version: str = "1.0.0"

  def __post_init__(self):
    if len(self.class_names) != self.num_classes or len(self.palette) != self.num_classes:
      raise ValueError(f"spec {self.name!r}: {self.num_classes} classes but "
                       f"{len(self.class_names)} names and {len(self.palette)} colours")

  def palette_array(self) -> np.ndarray:
    """The palette as uint8 [num_classes, 3]."""
    return np.asarray(self.palette, dtype=np.uint8)


def pascal_palette(n: int) -> tuple[tuple[int, int, int], ...]:
  """PASCAL VOC's colour map: the bits of the class id spread over the channels' high bits.

  Computed rather than listed so that the VOC and Person-Part palettes match the PNG palettes
  of the released annotations exactly.
  """
  colours = []
  for label in range(n):
    rgb = [0, 0, 0]
    value = label
    for shift in range(7, -1, -1):
      for channel in range(3):
        rgb[channel] |= ((value >> channel) & 1) << shift
      value >>= 3
    colours.append(tuple(rgb))
  return tuple(colours)


CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle")
CITYSCAPES_PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32))
# Cityscapes labelId -> trainId for the 19 evaluated classes (REFERENCE.md section 7);
# every other labelId becomes the ignore label.
CITYSCAPES_LABEL_TO_TRAIN = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
    25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor")

PERSON_PART_CLASSES = (
    "background", "head", "torso", "upper arms", "lower arms", "upper legs", "lower legs")

# The synthetic generator's version (synthetic.py): bump it whenever its examples change.
SYNTHETIC_VERSION = "1.1.0"
SYNTHETIC_CLASSES = (
    "background", "small disc", "large disc", "red-framed square", "blue-framed square",
    "day diamond", "night diamond")
SYNTHETIC_PALETTE = (
    (0, 0, 0), (255, 200, 0), (0, 160, 255), (220, 40, 40), (40, 60, 220), (250, 250, 160),
    (90, 40, 140))


def _synthetic_spec(config_name: str, height: int, width: int, train: int,
                    validation: int) -> DatasetSpec:
  name = "dpc_synthetic" if config_name == "default" else f"dpc_synthetic/{config_name}"
  return DatasetSpec(
      name=name, num_classes=len(SYNTHETIC_CLASSES), ignore_label=IGNORE_LABEL,
      class_names=SYNTHETIC_CLASSES, palette=SYNTHETIC_PALETTE, train_crop=(height, width),
      eval_crop=(height, width), tfds_name=f"dpc_synthetic/{config_name}",
      # Object size is a class cue in the synthetic data, so scale augmentation must keep the
      # small and large size ranges apart (see synthetic.py).
      train_scales=(0.75, 0.875, 1.0, 1.125, 1.25),
      num_examples={"train": train, "validation": validation}, version=SYNTHETIC_VERSION)


def _build_specs() -> dict[str, DatasetSpec]:
  # Imported here: synthetic.py imports this module for the class list.
  from dpc_tf.data.synthetic import SYNTHETIC_CONFIGS  # pylint: disable=import-outside-toplevel
  specs = {
      "cityscapes": DatasetSpec(
          name="cityscapes", num_classes=19, ignore_label=IGNORE_LABEL,
          class_names=CITYSCAPES_CLASSES, palette=CITYSCAPES_PALETTE, train_crop=(769, 769),
          eval_crop=(1025, 2049), tfds_name="cityscapes/semantic_segmentation",
          num_examples={"train": 2975, "validation": 500}),
      "voc2012": DatasetSpec(
          name="voc2012", num_classes=21, ignore_label=IGNORE_LABEL, class_names=VOC_CLASSES,
          palette=pascal_palette(21), train_crop=(513, 513), eval_crop=(513, 513),
          tfds_name="voc2012_sbd", num_examples={"train": 10582, "validation": 1449}),
      "pascal_person_part": DatasetSpec(
          name="pascal_person_part", num_classes=7, ignore_label=IGNORE_LABEL,
          class_names=PERSON_PART_CLASSES, palette=pascal_palette(7), train_crop=(513, 513),
          eval_crop=(513, 513), tfds_name="pascal_person_part",
          num_examples={"train": 1716, "validation": 1817}),
  }
  for config in SYNTHETIC_CONFIGS:
    spec = _synthetic_spec(config.name, config.height, config.width, config.train_examples,
                           config.validation_examples)
    specs[spec.name] = spec
  return specs


_SPECS: dict[str, DatasetSpec] = {}


def dataset_names() -> Sequence[str]:
  """Every name `get_spec` accepts."""
  if not _SPECS:
    _SPECS.update(_build_specs())
  return tuple(_SPECS)


def get_spec(name: str) -> DatasetSpec:
  """The spec of a dataset by name; "dpc_synthetic/<config>" picks a synthetic config.

  "folder" (root from the gin binding folder_dataset.root) and "folder:PATH" are read from
  the folder each time (dpc_tf.data.folder): classes, palette, crops and a content version.
  """
  if name == "folder" or name.startswith("folder:"):
    from dpc_tf.data import folder  # pylint: disable=import-outside-toplevel
    return folder.folder_spec(name)
  if not _SPECS:
    _SPECS.update(_build_specs())
  if name == "dpc_synthetic/default":
    name = "dpc_synthetic"
  if name not in _SPECS:
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(_SPECS)}, folder "
                     f"(your own data: folder_dataset.root) or folder:PATH")
  return _SPECS[name]
