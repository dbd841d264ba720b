"""build_input_pipeline on dpc_synthetic/tiny: shapes, defaults, determinism, gin, specs."""

import gin
import numpy as np
import pytest
import tensorflow as tf

import dpc_tf.data as data

TINY = "dpc_synthetic/tiny"


def _take(ds, n):
  return [(x.numpy(), y.numpy()) for x, y in ds.take(n)]


def test_training_batches():
  ds = data.build_input_pipeline(TINY, "train", batch_size=4, is_training=True, seed=1)
  assert ds.element_spec[0].shape == (4, 129, 129, 3)  # drop_remainder: static batch
  assert ds.element_spec[0].dtype == tf.float32 and ds.element_spec[1].dtype == tf.int32
  batches = _take(ds, 10)  # 40 > 32 examples: it repeats
  assert len(batches) == 10
  for images, labels in batches:
    assert labels.shape == (4, 129, 129, 1)
    assert 0.0 <= images.min() and images.max() <= 255.0
    assert set(np.unique(labels)) <= set(range(7)) | {255}


def test_crop_and_scales_override():
  ds = data.build_input_pipeline(TINY, "train", 2, crop_size=(65, 97), is_training=True,
                                 scales=(0.5,), seed=0)
  images, labels = _take(ds, 1)[0]
  assert images.shape == (2, 65, 97, 3)
  # 129 * 0.5 = 64 rows and columns of data, then padding: row 64 and column 64 on, or
  # (after the random horizontal flip) the first 97 - 64 = 33 columns.
  assert np.all(labels[:, 64:] == 255) and np.all(images[:, 64:] == 127.5)
  for label, image in zip(labels, images):
    flipped = not np.all(label[:, 64:] == 255)
    padding = np.s_[:, :33] if flipped else np.s_[:, 64:]
    data_part = np.s_[:64, 33:] if flipped else np.s_[:64, :64]
    assert np.all(label[padding] == 255) and np.all(image[padding] == 127.5)
    assert np.any(label[data_part] != 255)
  with pytest.raises(ValueError, match="crop_size"):
    data.build_input_pipeline(TINY, "train", 2, crop_size=(65, 0))


def test_eval_covers_every_example_once():
  ds = data.build_input_pipeline(TINY, "validation", batch_size=5)
  sizes = [images.shape[0] for images, _ in _take(ds, 100)]
  assert sizes == [5, 5, 5, 1]  # 16 examples, no repeat, last batch kept
  expected = data.load_split(TINY, "validation")
  first_images, first_labels = _take(ds, 1)[0]
  for i, example in enumerate(expected.take(5).as_numpy_iterator()):
    np.testing.assert_array_equal(first_images[i], example["image"].astype(np.float32))
    np.testing.assert_array_equal(first_labels[i], example["segmentation_mask"].astype(int))


def test_seeded_deterministic_pipelines_repeat_exactly():
  def run(seed):
    return _take(data.build_input_pipeline(TINY, "train", 3, is_training=True, seed=seed,
                                           deterministic=True), 4)
  first, again, other = run(7), run(7), run(8)
  for (x1, y1), (x2, y2) in zip(first, again):
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
  assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other))


def test_gin_wrapper():
  gin.clear_config()
  try:
    gin.parse_config("""
        train/dpc_tf.data.input_pipeline.name = 'dpc_synthetic/tiny'
        train/dpc_tf.data.input_pipeline.split = 'train'
        train/dpc_tf.data.input_pipeline.batch_size = 2
        train/dpc_tf.data.input_pipeline.is_training = True
        train/dpc_tf.data.input_pipeline.crop_size = 33
    """)
    with gin.config_scope("train"):
      ds = data.input_pipeline()
    assert ds.element_spec[0].shape == (2, 33, 33, 3)
  finally:
    gin.clear_config()


@pytest.mark.parametrize("name,classes,train_crop,eval_crop,tfds_name", [
    ("cityscapes", 19, (769, 769), (1025, 2049), "cityscapes/semantic_segmentation"),
    ("voc2012", 21, (513, 513), (513, 513), "voc2012_sbd"),
    ("pascal_person_part", 7, (513, 513), (513, 513), "pascal_person_part"),
    ("dpc_synthetic", 7, (257, 257), (257, 257), "dpc_synthetic/default"),
    ("dpc_synthetic/wide", 7, (257, 513), (257, 513), "dpc_synthetic/wide"),
])
def test_specs(name, classes, train_crop, eval_crop, tfds_name):
  spec = data.get_spec(name)
  assert (spec.num_classes, spec.ignore_label, spec.train_crop, spec.eval_crop,
          spec.tfds_name) == (classes, 255, train_crop, eval_crop, tfds_name)
  assert len(spec.class_names) == classes
  assert spec.palette_array().shape == (classes, 3)
  assert spec.palette_array().dtype == np.uint8
  assert len({tuple(c) for c in spec.palette}) == classes  # colours tell classes apart


def test_spec_details_and_errors():
  voc = data.get_spec("voc2012")
  # PASCAL's bit-spread colour map: the colours stored in the released palette PNGs.
  assert voc.palette[1] == (128, 0, 0) and voc.palette[15] == (192, 128, 128)
  assert voc.class_names[15] == "person" and voc.num_examples["train"] == 10582
  assert data.get_spec("cityscapes").palette[0] == (128, 64, 128)
  assert data.get_spec("cityscapes").train_scales == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
  assert data.get_spec("dpc_synthetic/default") is data.get_spec("dpc_synthetic")
  with pytest.raises(ValueError, match="unknown dataset 'coco'; known: cityscapes"):
    data.get_spec("coco")
