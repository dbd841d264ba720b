"""tfds builder `voc2012_sbd`: PASCAL VOC 2012 segmentation with the SBD augmentation.

tfds's own `voc` builder has no masks, hence this one. Splits (REFERENCE.md section 7):
  train      = VOC train + SBD train + SBD val - VOC val  ("train_aug", 10,582 images)
  validation = VOC val (1,449 images)
A training id annotated by VOC itself uses VOC's mask (it has the 255 boundary band); the
others use SBD's. Instead of SBD, a `SegmentationClassAug` folder of grayscale id PNGs may
be given: train is then every id in it minus VOC val.
"""

from __future__ import annotations

import tensorflow_datasets as tfds
from etils import epath

from dpc_tf.data import manual
from dpc_tf.data.local_info import LocalDatasetInfo

_NUM_CLASSES = 21
LAYOUT = ("VOCdevkit/VOC2012/{JPEGImages/*.jpg, SegmentationClass/*.png, "
          "ImageSets/Segmentation/{train,val}.txt} plus either "
          "benchmark_RELEASE/dataset/{cls/*.mat, img/*.jpg, train.txt, val.txt} (SBD) or "
          "VOCdevkit/VOC2012/SegmentationClassAug/*.png")


class Voc2012Sbd(tfds.core.GeneratorBasedBuilder):
  """PASCAL VOC 2012 + SBD semantic segmentation (21 classes, 255 = ignore)."""

  name = "voc2012_sbd"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "train_aug / val."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Extract VOCtrainval_11-May-2012.tar (giving VOCdevkit/VOC2012/) and SBD's "
      "benchmark.tgz (giving benchmark_RELEASE/) into manual_dir. Expected layout: " + LAYOUT)

  def _info(self) -> tfds.core.DatasetInfo:
    return LocalDatasetInfo(
        builder=self,
        description="PASCAL VOC 2012 segmentation, train_aug (with SBD) and val.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            "segmentation_mask": tfds.features.Image(shape=(None, None, 1),
                                                     encoding_format="png"),
        }),
        supervised_keys=("image", "segmentation_mask"),
        homepage="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/",
    )

  def _split_generators(self, dl_manager):
    root = manual.manual_root(dl_manager, self.name, LAYOUT)
    train, validation = plan_splits(root)
    return {"train": self._generate_examples(train),
            "validation": self._generate_examples(validation)}

  def _generate_examples(self, plan):
    for image_id, image_path, kind, label_path in plan:
      mask = manual.read_sbd_mat(label_path) if kind == "mat" else \
          manual.read_index_png(label_path)
      manual.check_mask(mask, _NUM_CLASSES, label_path, image_path)
      yield image_id, {"image": image_path, "segmentation_mask": mask}


def plan_splits(root: epath.Path):
  """(train, validation) lists of (id, image path, "png" | "mat", label path).

  Checks the layout up front so that a wrong manual_dir fails before any example is written.
  """
  name = Voc2012Sbd.name
  voc = manual.require(root / "VOCdevkit" / "VOC2012", name, LAYOUT, directory=True)
  images = manual.require(voc / "JPEGImages", name, LAYOUT, directory=True)
  sets = voc / "ImageSets" / "Segmentation"
  voc_train = manual.read_id_list(sets / "train.txt", name, LAYOUT)
  voc_val = manual.read_id_list(sets / "val.txt", name, LAYOUT)
  classes = voc / "SegmentationClass"
  aug = voc / "SegmentationClassAug"
  sbd = root / "benchmark_RELEASE" / "dataset"

  if sbd.is_dir():
    manual.require(sbd / "cls", name, LAYOUT, directory=True)
    sbd_ids = (manual.read_id_list(sbd / "train.txt", name, LAYOUT)
               + manual.read_id_list(sbd / "val.txt", name, LAYOUT))
    manual.require(classes, name, LAYOUT, directory=True)
    own = set(voc_train)

    def label(image_id):
      if image_id in own:
        return "png", classes / f"{image_id}.png"
      return "mat", sbd / "cls" / f"{image_id}.mat"

    val_masks = classes
    train_ids = sorted((own | set(sbd_ids)) - set(voc_val))
  elif aug.is_dir():
    def label(image_id):
      return "png", aug / f"{image_id}.png"

    val_masks = classes if classes.is_dir() else aug
    train_ids = sorted({p.stem for p in aug.glob("*.png")} - set(voc_val))
    if not train_ids:
      raise manual.ManualDirError(f"{name}: {aug} holds no training masks (*.png not in "
                                  f"val.txt); expected layout: {LAYOUT}")
  else:
    raise manual.ManualDirError(f"{name}: found neither {sbd} nor {aug}; expected layout: "
                                f"{LAYOUT}")

  def image(image_id):
    path = images / f"{image_id}.jpg"
    # SBD images are VOC 2011 images, so normally in JPEGImages; SBD's img/ is the fallback.
    if not path.exists() and (sbd / "img" / f"{image_id}.jpg").exists():
      return sbd / "img" / f"{image_id}.jpg"
    return path

  train = [(i, image(i), *label(i)) for i in train_ids]
  validation = [(i, images / f"{i}.jpg", "png", val_masks / f"{i}.png") for i in voc_val]
  return train, validation
