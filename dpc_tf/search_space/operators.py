"""The 81 DPC operators, each with a stable index 0..80.

Index order (never change it: indices are stored in search logs):
  0        1x1 conv
  1..64    3x3 atrous separable conv, rate (r_h, r_w) in row-major order over RATES x RATES
  65..80   average spatial pyramid pooling, grid (g_h, g_w) in row-major order over GRIDS x GRIDS
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Union

from dpc_tf.errors import DpcError

RATES = (1, 3, 6, 9, 12, 15, 18, 21)
GRIDS = (1, 2, 4, 8)


class CellError(DpcError):
  """A cell or operator description is invalid; the message names where and why."""


def _format_set(values) -> str:
  return "{" + ",".join(str(v) for v in values) + "}"


@dataclasses.dataclass(frozen=True)
class Conv1x1:
  """1x1 conv + BN + ReLU."""

  @property
  def index(self) -> int:
    return 0

  @property
  def text(self) -> str:
    return "conv1x1"

  def to_json(self) -> dict:
    return {"kernel": 1, "op": "conv"}


@dataclasses.dataclass(frozen=True)
class SeparableConv3x3:
  """3x3 atrous separable conv with rate (rate_h, rate_w), written for output stride 16."""
  rate_h: int
  rate_w: int

  def __post_init__(self):
    for axis, value in (("r_h", self.rate_h), ("r_w", self.rate_w)):
      if value not in RATES:
        raise CellError(f"rate {axis}={value!r} is not in {_format_set(RATES)}")

  @property
  def rate(self) -> tuple[int, int]:
    return (self.rate_h, self.rate_w)

  @property
  def index(self) -> int:
    return 1 + RATES.index(self.rate_h) * len(RATES) + RATES.index(self.rate_w)

  @property
  def text(self) -> str:
    return f"sep3x3@{self.rate_h}x{self.rate_w}"

  def to_json(self) -> dict:
    return {"kernel": 3, "rate": [self.rate_h, self.rate_w], "op": "conv"}


@dataclasses.dataclass(frozen=True)
class PyramidPooling:
  """Average spatial pyramid pooling with grid (grid_h, grid_w), then 1x1 conv and resize."""
  grid_h: int
  grid_w: int

  def __post_init__(self):
    for axis, value in (("g_h", self.grid_h), ("g_w", self.grid_w)):
      if value not in GRIDS:
        raise CellError(f"grid {axis}={value!r} is not in {_format_set(GRIDS)}")

  @property
  def grid(self) -> tuple[int, int]:
    return (self.grid_h, self.grid_w)

  @property
  def index(self) -> int:
    return 1 + len(RATES) ** 2 + GRIDS.index(self.grid_h) * len(GRIDS) + GRIDS.index(self.grid_w)

  @property
  def text(self) -> str:
    return f"pool@{self.grid_h}x{self.grid_w}"

  def to_json(self) -> dict:
    return {"grid_size": [self.grid_h, self.grid_w], "op": "pyramid_pooling"}


Operator = Union[Conv1x1, SeparableConv3x3, PyramidPooling]

ALL_OPERATORS: tuple[Operator, ...] = (
    (Conv1x1(),)
    + tuple(SeparableConv3x3(h, w) for h, w in itertools.product(RATES, RATES))
    + tuple(PyramidPooling(h, w) for h, w in itertools.product(GRIDS, GRIDS)))
NUM_OPERATORS = len(ALL_OPERATORS)
assert NUM_OPERATORS == 81 and all(op.index == i for i, op in enumerate(ALL_OPERATORS))


def operator_from_index(index: int) -> Operator:
  if not isinstance(index, int) or not 0 <= index < NUM_OPERATORS:
    raise CellError(f"operator index {index!r} is not in 0..{NUM_OPERATORS - 1}")
  return ALL_OPERATORS[index]


def _int_pair(value, key: str) -> tuple[int, int]:
  """Reads [a, b] (or a single int a, read as [a, a]) with type checks."""
  if isinstance(value, int) and not isinstance(value, bool):
    return (value, value)
  if (isinstance(value, (list, tuple)) and len(value) == 2
      and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
    return (value[0], value[1])
  raise CellError(f"'{key}' must be two integers [h, w], got {value!r}")


_OP_KEYS = {"conv": {"op", "kernel", "rate"}, "pyramid_pooling": {"op", "grid_size"}}
"""The keys each op takes (besides a branch's "input"): any other key is an error."""


def operator_from_json(obj: dict) -> Operator:
  """Parses the operator part of one released-format branch object, strictly: every key
  must belong to the op and every value have its exact type (`"kernel": true` or `3.0`, a
  pool with a rate, a conv with a grid are errors, not silently read or ignored)."""
  op = obj.get("op")
  if not isinstance(op, str) or op not in _OP_KEYS:
    raise CellError(f"unknown op {op!r} (expected 'conv' or 'pyramid_pooling')")
  foreign = sorted(set(obj) - _OP_KEYS[op] - {"input"})
  if foreign:
    raise CellError(f"{op} takes no {', '.join(repr(k) for k in foreign)} (its keys: "
                    f"{', '.join(sorted(_OP_KEYS[op]))}, input)")
  if op == "conv":
    kernel = obj.get("kernel")
    if not isinstance(kernel, int) or isinstance(kernel, bool):
      raise CellError(f"kernel must be the integer 1 or 3, got {kernel!r}")
    if kernel == 1:
      if "rate" in obj and _int_pair(obj["rate"], "rate") != (1, 1):
        raise CellError(f"a 1x1 conv takes no rate, got {obj['rate']!r}")
      return Conv1x1()
    if kernel == 3:
      if "rate" not in obj:
        raise CellError("a 3x3 conv needs 'rate': [r_h, r_w]")
      return SeparableConv3x3(*_int_pair(obj["rate"], "rate"))
    raise CellError(f"kernel {kernel!r} is not 1 or 3")
  if "grid_size" not in obj:
    raise CellError("pyramid_pooling needs 'grid_size': [g_h, g_w]")
  return PyramidPooling(*_int_pair(obj["grid_size"], "grid_size"))


def operator_from_text(text: str) -> Operator:
  """Parses the compact form: conv1x1, sep3x3@RHxRW, pool@GHxGW."""
  if text == "conv1x1":
    return Conv1x1()
  kind, sep, dims = text.partition("@")
  parts = dims.split("x")
  if sep and len(parts) == 2 and all(p.isdigit() for p in parts):
    h, w = int(parts[0]), int(parts[1])
    if kind == "sep3x3":
      return SeparableConv3x3(h, w)
    if kind == "pool":
      return PyramidPooling(h, w)
  raise CellError(f"unknown operator {text!r} (expected conv1x1, sep3x3@HxW or pool@HxW)")
