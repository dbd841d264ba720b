"""pascal_person_part: splits from the id lists, part masks as ids, layout errors."""

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

import dpc_tf.data as data


def test_splits_and_masks(person_part_manual_dir, tmp_path):
  data_dir = str(tmp_path / "tfds")
  for split in ("train", "validation"):
    got = {ex["image"].shape[0]: ex for ex in data.load_split(
        "pascal_person_part", split, data_dir=data_dir,
        manual_dir=person_part_manual_dir.root).as_numpy_iterator()}
    expected = getattr(person_part_manual_dir, split)
    assert sorted(got) == sorted(expected)
    for height, example in got.items():
      assert example["image"].shape == (height, 20, 3)
      np.testing.assert_array_equal(example["segmentation_mask"][..., 0], expected[height])
      assert set(np.unique(example["segmentation_mask"])) <= set(range(7)) | {255}


def _prepare(manual_dir, tmp_path):
  builder = data.pascal_person_part.PascalPersonPart(data_dir=str(tmp_path / "tfds"))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))


def test_missing_folder_is_named(person_part_manual_dir, tmp_path):
  os.rename(os.path.join(person_part_manual_dir.root, "SegmentationPart"),
            os.path.join(person_part_manual_dir.root, "Masks"))
  with pytest.raises(data.ManualDirError,
                     match=r"missing folder .*SegmentationPart; expected layout: JPEGImages"):
    _prepare(person_part_manual_dir.root, tmp_path)


def test_missing_image_is_named(person_part_manual_dir, tmp_path):
  os.remove(os.path.join(person_part_manual_dir.root, "JPEGImages", "2008_000011.jpg"))
  with pytest.raises(data.ManualDirError, match=r"missing image file .*2008_000011\.jpg"):
    _prepare(person_part_manual_dir.root, tmp_path)


def test_value_outside_seven_parts_is_refused(person_part_manual_dir, writers, tmp_path):
  writers.palette_png(os.path.join(person_part_manual_dir.root, "SegmentationPart",
                                   "2008_000010.png"), np.full((30, 20), 9, np.uint8))
  with pytest.raises(ValueError, match=r"holds values \[9\]; expected class ids 0\.\.6"):
    _prepare(person_part_manual_dir.root, tmp_path)
