"""dpc_synthetic: determinism, the context cues the classes rest on, tfds == on the fly."""

import time

import numpy as np
import pytest

import dpc_tf.data as data
from dpc_tf.data import synthetic

TINY = synthetic.get_config("tiny")
DEFAULT = synthetic.get_config("default")


def test_deterministic_by_seed_split_and_index():
  a_image, a_mask = synthetic.generate_example(TINY, "train", 5)
  b_image, b_mask = synthetic.generate_example(TINY, "train", 5)
  np.testing.assert_array_equal(a_image, b_image)
  np.testing.assert_array_equal(a_mask, b_mask)
  assert a_image.shape == (129, 129, 3) and a_image.dtype == np.uint8
  assert a_mask.shape == (129, 129, 1) and a_mask.dtype == np.uint8
  other_index = synthetic.generate_example(TINY, "train", 6)[0]
  other_split = synthetic.generate_example(TINY, "validation", 5)[0]
  other_seed = synthetic.generate_example(
      synthetic.SyntheticConfig("s", 129, 129, 32, 16, seed=1), "train", 5)[0]
  for other in (other_index, other_split, other_seed):
    assert np.mean(other != a_image) > 0.5


def test_out_of_range_and_unknown_names():
  with pytest.raises(IndexError, match="tiny train has 32 examples; index 32"):
    synthetic.generate_example(TINY, "train", 32)
  with pytest.raises(ValueError, match="unknown dpc_synthetic config 'huge'"):
    synthetic.get_config("huge")
  with pytest.raises(ValueError, match="splits"):
    TINY.num_examples("test")


def _components(mask: np.ndarray, cls: int) -> list[int]:
  """Pixel counts of the objects of one class (objects never touch: a gap separates them)."""
  from scipy import ndimage  # pylint: disable=import-outside-toplevel
  labelled, count = ndimage.label(mask == cls)
  return [int((labelled == i).sum()) for i in range(1, count + 1)]


def test_classes_follow_their_context_cues():
  seen = set()
  small, large = [], []
  for index in range(48):
    image, mask = synthetic.generate_example(DEFAULT, "train", index)
    mask = mask[..., 0]
    classes = set(np.unique(mask).tolist())
    seen |= classes
    # Day and night diamonds never share an image: the scene decides, not the diamond.
    assert not {5, 6} <= classes
    # The scene cue: night images carry bright spots on the background, day images dark ones.
    background = image[mask == 0].astype(int).sum(-1)
    bright, dark = np.mean(background > 690), np.mean(background < 90)
    if 6 in classes:
      assert bright > 0.005 and dark < 0.001
    if 5 in classes:
      assert dark > 0.005 and bright < 0.001
    # The cue lies beyond a 40-pixel spot-free halo around each diamond (u = 1 here).
    if classes & {5, 6}:
      from scipy import ndimage  # pylint: disable=import-outside-toplevel
      distance = ndimage.distance_transform_cdt(~np.isin(mask, (5, 6)), metric="taxicab")
      spots = (image.astype(int).sum(-1) > 690) | (image.astype(int).sum(-1) < 90)
      assert not np.any(spots & (mask == 0) & (distance <= 35))
    # Framed squares: the frame colour decides the class.
    for cls in (3, 4):
      if cls in classes:
        p = image[mask == cls].astype(int)
        red = np.mean((p[:, 0] > 200) & (p[:, 1] < 70) & (p[:, 2] < 70))
        blue = np.mean((p[:, 2] > 200) & (p[:, 0] < 70) & (p[:, 1] < 70))
        frame, other = (red, blue) if cls == 3 else (blue, red)
        assert frame > 0.1 and other < 0.02
    small += _components(mask, 1)
    large += _components(mask, 2)
  assert seen == {0, 1, 2, 3, 4, 5, 6, 255}
  # Size decides between small and large discs (areas of radius <= 14 vs >= 30, minus the
  # ignore band): their ranges are far apart.
  assert max(small) < 700 < 2500 < min(large)


def test_default_generation_is_fast_enough_for_ci():
  # CPU time, not wall time: the machine running the tests may be shared.
  start = time.process_time()
  for index in range(16):
    synthetic.generate_example(DEFAULT, "validation", index)
  per_example = (time.process_time() - start) / 16
  total = per_example * (DEFAULT.train_examples + DEFAULT.validation_examples)
  assert total < 60, f"default config would take {total:.0f}s to generate"


def test_on_the_fly_matches_the_tfds_builder(tmp_path):
  on_the_fly = list(data.load_split("dpc_synthetic/tiny", "validation").as_numpy_iterator())
  stored = data.load_split("dpc_synthetic/tiny", "validation", data_dir=str(tmp_path))
  stored = {ex["image"].tobytes(): ex for ex in stored.as_numpy_iterator()}
  assert len(on_the_fly) == len(stored) == TINY.validation_examples
  for example in on_the_fly:
    twin = stored[example["image"].tobytes()]
    np.testing.assert_array_equal(example["segmentation_mask"], twin["segmentation_mask"])


def test_split_slices_pick_indices():
  got = list(data.load_split("dpc_synthetic/tiny", "train[4:7]").as_numpy_iterator())
  assert len(got) == 3
  for offset, example in enumerate(got):
    np.testing.assert_array_equal(example["image"],
                                  synthetic.generate_example(TINY, "train", 4 + offset)[0])
  with pytest.raises(ValueError, match="split 'test'"):
    data.load_split("dpc_synthetic/tiny", "test")
