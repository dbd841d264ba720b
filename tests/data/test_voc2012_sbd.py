"""voc2012_sbd: split composition, palette PNG and SBD .mat reading, layout errors."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image

import dpc_tf.data as data


def _by_height(dataset):
  """{height: (image, mask)}: the dummy examples have unique heights."""
  out = {}
  for example in dataset.as_numpy_iterator():
    image, mask = example["image"], example["segmentation_mask"]
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert mask.dtype == np.uint8 and mask.shape == image.shape[:2] + (1,)
    out[image.shape[0]] = (image, mask)
  return out


def test_train_aug_and_val_with_sbd(voc_manual_dir, tmp_path):
  data_dir = str(tmp_path / "tfds")
  train = _by_height(data.load_split("voc2012", "train", data_dir=data_dir,
                                     manual_dir=voc_manual_dir.root))
  validation = _by_height(data.load_split("voc2012", "validation", data_dir=data_dir,
                                          manual_dir=voc_manual_dir.root))
  # VOC train + SBD train + SBD val - VOC val = {a, b, d, e}; VOC val = {c}.
  assert sorted(train) == sorted(voc_manual_dir.train) and len(train) == 4
  assert sorted(validation) == sorted(voc_manual_dir.validation) and len(validation) == 1
  for split, got in (("train", train), ("validation", validation)):
    for height, (_, mask) in got.items():
      # Palette indices (including the 255 band) come back as ids, never as colours, and b
      # uses VOC's own mask rather than its SBD .mat.
      np.testing.assert_array_equal(mask[..., 0], getattr(voc_manual_dir, split)[height])
  assert 255 in validation[28][1]


def test_segmentation_class_aug_instead_of_sbd(voc_manual_dir, writers, tmp_path):
  shutil.rmtree(os.path.join(voc_manual_dir.root, "benchmark_RELEASE"))
  aug = os.path.join(voc_manual_dir.voc, "SegmentationClassAug")
  expected = {}
  for image_id, height in (("2007_000001", 20), ("2008_000004", 32), ("2007_000003", 28)):
    mask = np.full((height, 24), 5, np.uint8)
    os.makedirs(aug, exist_ok=True)
    Image.fromarray(mask, mode="L").save(os.path.join(aug, f"{image_id}.png"))  # grayscale
    expected[height] = mask
  train = _by_height(data.load_split("voc2012", "train", data_dir=str(tmp_path / "tfds"),
                                     manual_dir=voc_manual_dir.root))
  assert sorted(train) == [20, 32]  # every Aug id minus VOC val
  for height, (_, mask) in train.items():
    np.testing.assert_array_equal(mask[..., 0], expected[height])


def _prepare(manual_dir, tmp_path):
  builder = data.voc2012_sbd.Voc2012Sbd(data_dir=str(tmp_path / "tfds"))
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))


def test_missing_sbd_and_aug_names_both(voc_manual_dir, tmp_path):
  shutil.rmtree(os.path.join(voc_manual_dir.root, "benchmark_RELEASE"))
  with pytest.raises(data.ManualDirError, match="benchmark_RELEASE.*SegmentationClassAug"):
    _prepare(voc_manual_dir.root, tmp_path)


def test_missing_id_list_is_named(voc_manual_dir, tmp_path):
  os.remove(os.path.join(voc_manual_dir.voc, "ImageSets", "Segmentation", "val.txt"))
  with pytest.raises(data.ManualDirError, match=r"missing file .*Segmentation/val\.txt; "
                                                r"expected layout: VOCdevkit"):
    _prepare(voc_manual_dir.root, tmp_path)


def test_empty_or_absent_manual_dir(tmp_path):
  with pytest.raises(data.ManualDirError, match="does not exist or is empty; expected layout"):
    _prepare(str(tmp_path / "nowhere"), tmp_path)


def test_missing_mat_file_is_named(voc_manual_dir, tmp_path):
  os.remove(os.path.join(voc_manual_dir.sbd, "cls", "2008_000005.mat"))
  with pytest.raises(data.ManualDirError, match=r"2008_000005\.mat"):
    _prepare(voc_manual_dir.root, tmp_path)


def test_colour_mask_is_refused(voc_manual_dir, tmp_path):
  path = os.path.join(voc_manual_dir.voc, "SegmentationClass", "2007_000001.png")
  Image.open(path).convert("RGB").save(path)
  with pytest.raises(ValueError, match=r"2007_000001\.png is a 'RGB' PNG"):
    _prepare(voc_manual_dir.root, tmp_path)


def test_out_of_range_class_is_refused(voc_manual_dir, writers, tmp_path):
  writers.sbd_mat(os.path.join(voc_manual_dir.sbd, "cls", "2008_000004.mat"),
                  np.full((32, 24), 40, np.uint8))
  with pytest.raises(ValueError, match=r"2008_000004\.mat holds values \[40\]"):
    _prepare(voc_manual_dir.root, tmp_path)


def test_mask_and_image_size_must_match(voc_manual_dir, writers, tmp_path):
  writers.sbd_mat(os.path.join(voc_manual_dir.sbd, "cls", "2008_000004.mat"),
                  np.zeros((10, 24), np.uint8))
  with pytest.raises(ValueError, match=r"is 10x24 but its image .*2008_000004\.jpg is 32x24"):
    _prepare(voc_manual_dir.root, tmp_path)


def test_mat_without_gtcls_is_refused(voc_manual_dir, tmp_path):
  from scipy import io as sio  # pylint: disable=import-outside-toplevel
  sio.savemat(os.path.join(voc_manual_dir.sbd, "cls", "2008_000004.mat"),
              {"GTinst": {"Segmentation": np.zeros((32, 24), np.uint8)}})
  with pytest.raises(ValueError, match="no GTcls.Segmentation"):
    _prepare(voc_manual_dir.root, tmp_path)
