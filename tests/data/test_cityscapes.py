"""Cityscapes: labelId -> trainId mapping inside the pipeline, on mocked tfds data."""

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

import dpc_tf.data as data
from dpc_tf.data.specs import CITYSCAPES_LABEL_TO_TRAIN


def _reference(label_ids: np.ndarray) -> np.ndarray:
  out = np.full_like(label_ids, 255)
  for label_id, train_id in CITYSCAPES_LABEL_TO_TRAIN.items():
    out[label_ids == label_id] = train_id
  return out


def test_every_label_id_maps_as_documented():
  ids = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
  got = data.labelids_to_trainids(tf.constant(ids)).numpy()
  np.testing.assert_array_equal(got, _reference(ids))
  assert got.dtype == np.uint8
  # Spot checks straight from REFERENCE.md section 7.
  assert got.ravel()[7] == 0 and got.ravel()[26] == 13 and got.ravel()[33] == 18
  assert got.ravel()[0] == 255 and got.ravel()[6] == 255 and got.ravel()[34] == 255
  assert sorted(set(got.ravel()) - {255}) == list(range(19))


def _fake_examples(num):
  rng = np.random.default_rng(0)
  return [{"image_id": f"city_{i}",
           "image_left": rng.integers(0, 256, (64, 128, 3), dtype=np.uint8),
           "segmentation_label": rng.integers(0, 40, (64, 128, 1), dtype=np.uint8)}
          for i in range(num)]


def test_load_split_renames_and_maps(tmp_path):
  examples = _fake_examples(3)

  def as_dataset(self, *args, **kwargs):
    del self, args, kwargs
    return tf.data.Dataset.from_tensor_slices(
        {k: np.stack([e[k] for e in examples]) for k in examples[0]})

  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    got = list(data.load_split("cityscapes", "train",
                               data_dir=str(tmp_path)).as_numpy_iterator())
  assert len(got) == 3
  for example, fake in zip(got, examples):
    assert set(example) == {"image", "segmentation_mask"}
    np.testing.assert_array_equal(example["image"], fake["image_left"])
    np.testing.assert_array_equal(example["segmentation_mask"],
                                  _reference(fake["segmentation_label"]))


def test_eval_pipeline_on_mocked_full_size_data(tmp_path):
  """tfds' own random mock (encoded 1024x2048 PNGs, SkipDecoding honoured) -> 1025x2049."""
  with tfds.testing.mock_data(num_examples=1, max_value=35):
    batches = list(data.build_input_pipeline("cityscapes", "validation", batch_size=1,
                                             data_dir=str(tmp_path)))
  assert len(batches) == 1
  images, labels = batches[0]
  assert images.shape == (1, 1025, 2049, 3) and images.dtype == tf.float32
  assert labels.shape == (1, 1025, 2049, 1) and labels.dtype == tf.int32
  labels = labels.numpy()
  assert set(np.unique(labels)) <= set(range(19)) | {255}
  assert (labels[0, :1024, :2048] != 255).mean() > 0.2  # ids 7..33 of 0..35 are mapped
  assert np.all(labels[0, 1024, :] == 255) and np.all(labels[0, :, 2048] == 255)
  assert np.all(images.numpy()[0, 1024, :] == 127.5)
