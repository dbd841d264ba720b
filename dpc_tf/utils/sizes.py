"""The one reading of a size setting (crops, pooling grids): an int or [h, w]."""

from __future__ import annotations

from typing import Optional

from dpc_tf.errors import DpcError


def size_pair(value, what: str) -> Optional[tuple[int, int]]:
  """None stays None; n -> (n, n); [h, w] -> (h, w); positive ints only, else a DpcError
  naming the setting (`what`)."""
  if value is None:
    return None
  pair = (value, value) if isinstance(value, int) else tuple(value)
  if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                               for v in pair):
    raise DpcError(f"{what} must be a positive int or [h, w], got {value!r}")
  return pair
