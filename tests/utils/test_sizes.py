import pytest

from dpc_tf.errors import DpcError
from dpc_tf.utils.sizes import size_pair


def test_sizes_are_read_one_way():
  assert size_pair(None, "x") is None
  assert size_pair(65, "x") == (65, 65)
  assert size_pair([33, 65], "x") == (33, 65)
  for bad in (0, [1], [1, 2, 3], [33, 0], [33.0, 65], True, [True, 3]):
    with pytest.raises(DpcError, match=r"^train\.crop_size must be a positive int or \[h, w\]"):
      size_pair(bad, "train.crop_size")
