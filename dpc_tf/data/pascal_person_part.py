"""tfds builder `pascal_person_part`: PASCAL-Person-Part (7 classes over VOC 2010 images).

Not in tfds. The annotations are distributed as .mat part masks; the common converted
layout, expected here, has one PNG of part ids per image (palette or grayscale, values 0..6,
255 = ignore) and train/val id lists (1,716 / 1,817 images).
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from dpc_tf.data import manual
from dpc_tf.data.local_info import LocalDatasetInfo

_NUM_CLASSES = 7
LAYOUT = ("JPEGImages/*.jpg, SegmentationPart/*.png (ids 0..6, 255 ignore), "
          "ImageSets/{train,val}.txt")


class PascalPersonPart(tfds.core.GeneratorBasedBuilder):
  """PASCAL-Person-Part semantic part segmentation (7 classes, 255 = ignore)."""

  name = "pascal_person_part"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "train / val from converted PNG masks."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = "Place in manual_dir: " + LAYOUT

  def _info(self) -> tfds.core.DatasetInfo:
    return LocalDatasetInfo(
        builder=self,
        description="PASCAL-Person-Part: background, head, torso, upper/lower arms and legs.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            "segmentation_mask": tfds.features.Image(shape=(None, None, 1),
                                                     encoding_format="png"),
        }),
        supervised_keys=("image", "segmentation_mask"),
        homepage="http://roozbehm.info/pascal-parts/pascal-parts.html",
    )

  def _split_generators(self, dl_manager):
    root = manual.manual_root(dl_manager, self.name, LAYOUT)
    images = manual.require(root / "JPEGImages", self.name, LAYOUT, directory=True)
    masks = manual.require(root / "SegmentationPart", self.name, LAYOUT, directory=True)
    splits = {}
    for split, listing in (("train", "train.txt"), ("validation", "val.txt")):
      ids = manual.read_id_list(root / "ImageSets" / listing, self.name, LAYOUT)
      splits[split] = self._generate_examples(
          [(i, images / f"{i}.jpg", masks / f"{i}.png") for i in ids])
    return splits

  def _generate_examples(self, plan):
    for image_id, image_path, mask_path in plan:
      mask = manual.check_mask(manual.read_index_png(mask_path), _NUM_CLASSES, mask_path,
                               image_path)
      yield image_id, {"image": image_path, "segmentation_mask": mask}
