"""DeepLab preprocessing: image and label stay aligned through scale, pad, crop and flip."""

import numpy as np
import pytest
import tensorflow as tf

from dpc_tf.data import preprocessing
from dpc_tf.data.specs import DEEPLAB_SCALES

BLOCK = 12
NUM_CODES = 40
# A colour per class; no colour is a blend of two others, so an exact colour match can only
# come from a pixel whose bilinear neighbours all lie in one block.
_rng = np.random.default_rng(0)
CODES = _rng.choice(np.arange(1, 255, 3), size=(NUM_CODES, 3)).astype(np.float32)


def _blocks(height: int, width: int):
  """Image of colour-coded 12x12 blocks and the label naming each block's colour."""
  rows, cols = np.mgrid[0:height, 0:width]
  label = ((rows // BLOCK) * 7 + (cols // BLOCK) * 3) % NUM_CODES  # differs left-right
  image = CODES[label]
  return {"image": tf.constant(image.astype(np.uint8)),
          "segmentation_mask": tf.constant(label[..., None].astype(np.uint8))}


def _check_aligned(image: np.ndarray, label: np.ndarray) -> float:
  """Asserts every exact colour match agrees with the label; returns the matched fraction."""
  label = label[..., 0]
  padded = label == 255
  assert np.all(image[padded] == preprocessing.IMAGE_PAD)
  assert not np.any(np.all(image[~padded] == preprocessing.IMAGE_PAD, axis=-1))
  distance = np.abs(image[:, :, None, :] - CODES[None, None]).max(-1)  # [h, w, codes]
  exact = distance.min(-1) < 1e-3
  code = distance.argmin(-1)
  mismatched = exact & ~padded & (code != label)
  assert not mismatched.any(), f"{mismatched.sum()} pixels whose colour and label disagree"
  return float(np.mean(exact[~padded])) if (~padded).any() else 1.0


def test_alignment_survives_every_transform():
  example = _blocks(96, 120)
  fractions, pad_seen = [], False
  for s in range(40):
    image, label = preprocessing.preprocess_train(example, (80, 88), DEEPLAB_SCALES,
                                                  tf.constant([s, 7]))
    assert image.shape == (80, 88, 3) and image.dtype == tf.float32
    assert label.shape == (80, 88, 1) and label.dtype == tf.int32
    fractions.append(_check_aligned(image.numpy(), label.numpy()))
    pad_seen |= bool((label.numpy() == 255).any())
  # Most labelled pixels sit inside a block: the check above had plenty to look at.
  assert np.mean(fractions) > 0.5
  assert pad_seen  # scale 0.5 makes 48x60 < 80x88: padding was exercised


def test_random_scale_draws_from_the_set_with_deepLab_sizes():
  example = _blocks(40, 60)
  sizes = set()
  for s in range(120):
    image, label = preprocessing.random_scale(
        tf.cast(example["image"], tf.float32), example["segmentation_mask"], (0.5, 1.0, 1.75),
        tf.constant([s, 1]))
    assert image.shape[:2] == label.shape[:2]
    sizes.add(tuple(image.shape[:2]))
  assert sizes == {(20, 30), (40, 60), (70, 105)}  # int(dim * scale)
  with pytest.raises(ValueError, match="positive"):
    preprocessing.random_scale(tf.zeros([4, 4, 3]), tf.zeros([4, 4, 1], tf.uint8), (0.0,),
                               tf.constant([0, 0]))


def _align_corners_coords(n_in: int, n_out: int) -> np.ndarray:
  return np.arange(n_out) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)


def test_scaled_image_and_label_sample_the_same_positions():
  """Both resizes use align_corners: checked against NumPy references, because a half-pixel
  convention on one side shifts the label by up to a pixel, too little for the block test."""
  rng = np.random.default_rng(1)
  image = rng.uniform(0, 255, (23, 31, 3)).astype(np.float32)
  label = rng.integers(0, 20, (23, 31, 1)).astype(np.uint8)
  for scale in (0.5, 1.75):
    got_image, got_label = preprocessing.random_scale(
        tf.constant(image), tf.constant(label), (scale,), tf.constant([0, 0]))
    h, w = int(23 * scale), int(31 * scale)
    ys, xs = _align_corners_coords(23, h), _align_corners_coords(31, w)
    nearest = label[np.floor(ys + 0.5).astype(int)][:, np.floor(xs + 0.5).astype(int)]
    np.testing.assert_array_equal(got_label.numpy(), nearest)
    y0 = np.minimum(np.floor(ys).astype(int), 21)
    x0 = np.minimum(np.floor(xs).astype(int), 29)
    wy, wx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = image[y0][:, x0] * (1 - wx) + image[y0][:, x0 + 1] * wx
    bottom = image[y0 + 1][:, x0] * (1 - wx) + image[y0 + 1][:, x0 + 1] * wx
    np.testing.assert_allclose(got_image.numpy(), top * (1 - wy) + bottom * wy, atol=1e-2)


def test_flip_happens_about_half_the_time_and_moves_both():
  image = tf.reshape(tf.range(2 * 3 * 3, dtype=tf.float32), [2, 3, 3])
  label = tf.constant(np.arange(6, dtype=np.uint8).reshape(2, 3, 1))
  flips = 0
  for s in range(200):
    flipped_image, flipped_label = preprocessing.random_flip(image, label, tf.constant([s, 3]))
    is_flipped = not np.array_equal(flipped_label.numpy(), label.numpy())
    expected = tf.reverse(image, [1]) if is_flipped else image
    np.testing.assert_array_equal(flipped_image.numpy(), expected.numpy())
    flips += is_flipped
  assert 70 < flips < 130


def test_eval_pads_bottom_right_with_mean_and_ignore():
  example = _blocks(40, 50)
  image, label = preprocessing.preprocess_eval(example, (64, 72))
  image, label = image.numpy(), label.numpy()
  np.testing.assert_array_equal(image[:40, :50], example["image"].numpy().astype(np.float32))
  np.testing.assert_array_equal(label[:40, :50], example["segmentation_mask"].numpy())
  assert np.all(image[40:] == 127.5) and np.all(image[:, 50:] == 127.5)
  assert np.all(label[40:] == 255) and np.all(label[:, 50:] == 255)


def test_eval_refuses_an_image_larger_than_the_crop():
  with pytest.raises(tf.errors.InvalidArgumentError, match="larger than the eval crop 32x72"):
    preprocessing.preprocess_eval(_blocks(40, 50), (32, 72), name="blocks")


def test_train_pads_small_images_before_cropping():
  image, label = preprocessing.preprocess_train(_blocks(30, 30), (64, 64), (1.0,),
                                                tf.constant([1, 2]))
  label = label.numpy()[..., 0]
  assert (label != 255).sum() == 900  # the whole 30x30 image, nothing cropped away
  rows, cols = np.nonzero(label != 255)
  assert rows.min() == 0 and rows.max() == 29  # padding is bottom/right only
  assert cols.max() - cols.min() == 29
